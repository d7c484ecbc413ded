#!/usr/bin/env python3
"""Loads an adapter written by downshift-train with Hugging Face `peft` on the same base (the
GGUF dequantized to f32 by transformers) and checks that it gives downshift's greedy output.

DOWNSHIFT.json is what `train_bench adapter` printed: per prompt, the prompt ids downshift
rendered (chat template applied), its greedy ids with the adapter reloaded from ADAPTER_DIR onto
the dequantized base (f32 KV cache), their log-probabilities, the base model's greedy ids and
those of the quantized serving path. Here, per prompt:

* the prompt is rendered with transformers' own tokenizer and chat template (from the GGUF) and
  must give the same ids;
* `PeftModel.from_pretrained(base, ADAPTER_DIR)` decodes greedily (stopping at the same
  end-of-generation ids) and must give the same tokens: match / MISMATCH;
* with the adapter disabled it must give downshift's base output (so the base is the same);
* informational: the max |log-prob difference| of downshift's tokens (teacher-forced), the
  smallest top-1/top-2 logit margin on PEFT's path (a divergence at a margin ~1e-5 would be a
  floating-point near-tie), and whether the quantized serving path gives the same text.

The adapter must change the output of at least one prompt (else the check would be vacuous).
Exit status 1 on any mismatch.

usage: peft_load.py MODEL.gguf ADAPTER_DIR DOWNSHIFT.json [--threads N]
"""
import argparse
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def greedy(model, ids, max_tokens, eog):
    """Greedy decode with the KV cache; returns (tokens without the final EOG, stopped, min margin)."""
    out, past, x = [], None, torch.tensor([ids])
    margin = float("inf")
    stopped = False
    with torch.no_grad():
        for _ in range(max_tokens):
            o = model(input_ids=x, past_key_values=past, use_cache=True)
            past = o.past_key_values
            top = torch.topk(o.logits[0, -1].float(), 2)
            t = int(top.indices[0])
            margin = min(margin, float(top.values[0] - top.values[1]))
            if t in eog:
                stopped = True
                break
            out.append(t)
            x = torch.tensor([[t]])
    return out, stopped, margin


def logprobs_of(model, prompt, gen):
    """Log-probabilities of `gen` after `prompt` (teacher-forced, one forward pass)."""
    if not gen:
        return []
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + gen])).logits[0].float()
    lp = torch.log_softmax(logits[len(prompt) - 1:-1], dim=-1)
    return [float(lp[i, t]) for i, t in enumerate(gen)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("adapter")
    ap.add_argument("downshift")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ref = json.load(open(args.downshift))
    d, f = os.path.split(os.path.abspath(args.model))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    base = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, args.adapter)
    model.eval()
    eog = set(ref["eog_ids"])
    n_max = ref["max_tokens"]
    matched, base_matched, changed = 0, 0, 0
    for i, r in enumerate(ref["results"]):
        ids = tok.apply_chat_template([{"role": "user", "content": r["prompt"]}],
                                      add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "input_ids") or isinstance(ids, dict):
            ids = ids["input_ids"]
        ids = list(ids)
        same_prompt = ids == r["prompt_ids"]
        got, stopped, margin = greedy(model, ids, n_max, eog)
        with model.disable_adapter():
            got_base, _, _ = greedy(model, ids, n_max, eog)
        want_stopped = r["finish"] == "Stop"
        ok = same_prompt and got == r["ids"] and stopped == want_stopped
        base_ok = got_base == r["base_ids"]
        lp = logprobs_of(model, ids, r["ids"])
        d_lp = max((abs(a - b) for a, b in zip(lp, r["logprobs"])), default=0.0)
        changed += r["ids"] != r["base_ids"]
        text = tok.decode(got, skip_special_tokens=True)
        print(f"prompt {i + 1}: {'match' if ok else 'MISMATCH'} ({len(got)} tokens"
              f"{', stopped' if stopped else ''}; max |d logprob| {d_lp:.1e}; min top-2 margin "
              f"{margin:.2f}; base {'match' if base_ok else 'MISMATCH'}; quantized serving path "
              f"{'same' if r['quantized_ids'] == r['ids'] else 'differs'})")
        print(f"    {r['prompt']!r}")
        print(f"    peft:      {text!r}")
        if not ok:
            print(f"    downshift: {r['text']!r}")
            if not same_prompt:
                print(f"    prompt ids differ: transformers {ids} vs downshift {r['prompt_ids']}")
            else:
                k = next((j for j, (a, b) in enumerate(zip(got, r["ids"])) if a != b),
                         min(len(got), len(r["ids"])))
                print(f"    first difference at generated token {k}")
        print(f"    base:      {tok.decode(got_base, skip_special_tokens=True)!r}")
        matched += ok
        base_matched += base_ok
    n = len(ref["results"])
    print(f"\n{matched}/{n} prompts: PEFT's greedy output with the downshift adapter equals "
          f"downshift's (f32 base on both sides); base without adapter: {base_matched}/{n}; "
          f"the adapter changes the output of {changed}/{n} prompts")
    if changed == 0:
        print("the adapter changes no output: the check proves nothing", file=sys.stderr)
        sys.exit(1)
    if matched < n or base_matched < n:
        sys.exit(1)


if __name__ == "__main__":
    main()
