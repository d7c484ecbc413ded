"""Loads an adapter written by downshift-train with Hugging Face `peft` on its base and
compares the logits (and those of the merged model) with the ones downshift computed (reference.safetensors from
`examples/peft_fixture.rs`). Needs torch, transformers, peft.

usage: python peft_check.py MODEL_DIR ADAPTER_DIR
"""
import sys

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def main() -> None:
    model_dir, adapter_dir = sys.argv[1:3]
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref = load_file(f"{adapter_dir}/reference.safetensors")
    ids = ref["ids"].long()
    with torch.no_grad():
        plain = base(input_ids=ids).logits
    model = PeftModel.from_pretrained(base, adapter_dir)
    model.eval()
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
    d_base = (plain - ref["base_logits"]).abs().max().item()
    d_adapted = (adapted - ref["logits"]).abs().max().item()
    effect = (adapted - plain).abs().max().item()
    merged = AutoModelForCausalLM.from_pretrained(f"{adapter_dir}/merged", dtype=torch.float32)
    with torch.no_grad():
        d_merged = (merged(input_ids=ids).logits - ref["logits"]).abs().max().item()
    print(f"{model_dir}: base diff {d_base:.2e}, adapted diff {d_adapted:.2e}, "
          f"merged diff {d_merged:.2e}, adapter effect {effect:.2e}")
    if d_adapted > 1e-4 or d_merged > 1e-4 or effect < 1e-3:
        sys.exit(1)


if __name__ == "__main__":
    main()
