#!/usr/bin/env python3
"""Tiny random `transformers` models and their reference logits, for downshift-slm's
architecture parity test (crates/slm/tests/arch_parity.rs).

For each architecture the crate implements, builds a model from a config written here (no Hub
access), initialises it from a fixed seed at scales that give logits of order 1-10 (so a
tolerance of 1e-4 means something), saves it the way `save_pretrained` does and runs it in
float32 with eager attention on fixed token ids. Writes, per architecture,

  crates/slm/tests/fixtures/arch/<name>/config.json         as transformers writes it
  crates/slm/tests/fixtures/arch/<name>/model.safetensors   float32 weights
  crates/slm/tests/fixtures/arch/<name>/reference.safetensors
      ids.<i>     int64 [len]         token ids of sequence i
      logits.<i>  float32 [len, vocab] transformers' logits at every position
      metadata: the script, architecture and versions of torch and transformers

Usage: python3 bench/slm/make_arch_fixtures.py
(creates bench/slm/.venv-hf with torch and transformers from PyPI on first run, a few GB
as PyPI's Linux torch wheel brings the CUDA libraries, and re-runs itself there; everything
runs on the CPU; the output is byte-for-byte deterministic for fixed versions).
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VENV = os.path.join(HERE, ".venv-hf")
OUT = os.path.join(ROOT, "crates/slm/tests/fixtures/arch")
REQUIREMENTS = ["torch==2.15.0", "transformers==5.24.0", "safetensors==0.8.0", "numpy==2.4.6"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", *REQUIREMENTS])
    os.execv(py, [py, os.path.abspath(__file__), *sys.argv[1:]])


ensure_venv()

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM, Qwen2Config,
    Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM,
)

VOCAB = 384
# sequence lengths of the fixed inputs: two of equal length (a batch for forward_train),
# a short one and a longer one (more rotary angles, more cache reuse)
LENGTHS = [16, 16, 7, 40]


def common(**kw):
    base = dict(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        bos_token_id=1, eos_token_id=2, pad_token_id=None, attn_implementation="eager",
    )
    base.update(kw)
    return base


def architectures():
    return {
        # Llama 2 shaped: untied head, GQA 2:1, theta 10k
        "llama": (LlamaForCausalLM, LlamaConfig(**common(
            rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False))),
        # Llama 3.x rotary scaling; original context 64 so that the 8 frequencies of a 16-dim
        # head fall in all three bands (unscaled, smoothed, divided by the factor)
        "llama3_rope": (LlamaForCausalLM, LlamaConfig(**common(
            rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64}))),
        # SmolLM2 shaped: tied embeddings, 3 heads sharing 1 kv head (3:1 like SmolLM2-135M),
        # head_dim 32, theta 100k
        "smollm2": (LlamaForCausalLM, LlamaConfig(**common(
            hidden_size=96, intermediate_size=160, num_attention_heads=3, num_key_value_heads=1,
            rms_norm_eps=1e-5, rope_theta=100000.0, tie_word_embeddings=True))),
        # Qwen2: q/k/v biases, untied head, theta 1M
        "qwen2": (Qwen2ForCausalLM, Qwen2Config(**common(
            rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
            use_sliding_window=False))),
        # Qwen2.5-0.5B shaped: tied head, 4 query heads on 1 kv head
        "qwen2_tied": (Qwen2ForCausalLM, Qwen2Config(**common(
            num_key_value_heads=1, rms_norm_eps=1e-6, rope_theta=1000000.0,
            tie_word_embeddings=True, use_sliding_window=False))),
        # Qwen3: per-head q/k RMS norm before the rotary embedding, no biases, and
        # head_dim 128 (as in Qwen3) != hidden / heads: q is 256 wide on a 64-wide residual
        # stream; 2 heads on 1 kv head
        "qwen3": (Qwen3ForCausalLM, Qwen3Config(**common(
            num_attention_heads=2, num_key_value_heads=1, head_dim=128, rms_norm_eps=1e-6,
            rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False))),
        # Gemma 3 (text): embeddings scaled by sqrt(hidden), (1 + w) RMS norms before and
        # after attention and feed-forward, q/k head norms, GeGLU (tanh), attention scale
        # 1/sqrt(query_pre_attn_scalar) != 1/sqrt(head_dim); sliding-window layers (window 5,
        # so it bites on these inputs) with their own rotary base, a global layer with linear
        # rotary scaling (like the 4B+ models); 2 heads of 64 on 1 kv head
        "gemma3": (Gemma3ForCausalLM, Gemma3TextConfig(**common(
            num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
            query_pre_attn_scalar=48, rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True, sliding_window=5,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            }))),
    }


def init_(model, seed):
    """Weights at scales that keep activations of order 1: projections ~ N(0, 1/fan_in),
    embeddings ~ N(0, 0.5²), norm weights ~ 1 + N(0, 0.1²) (Gemma stores them minus 1),
    biases ~ N(0, 0.1²)."""
    g = torch.Generator().manual_seed(seed)
    norm_base = 0.0 if model.config.model_type.startswith("gemma") else 1.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(norm_base + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(1234)
    inputs = [torch.randint(0, VOCAB, (n,), generator=g) for n in LENGTHS]
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for seed, (name, (cls, cfg)) in enumerate(architectures().items()):
        torch.manual_seed(seed)
        model = cls(cfg).eval().to(torch.float32)
        init_(model, 100 + seed)
        d = os.path.join(OUT, name)
        model.save_pretrained(d, safe_serialization=True)
        for extra in os.listdir(d):
            if extra not in ("config.json", "model.safetensors"):
                os.remove(os.path.join(d, extra))
        ref = {}
        worst64 = 0.0
        m64 = cls(cfg).eval().to(torch.float64)
        m64.load_state_dict(model.state_dict())
        with torch.no_grad():
            for i, ids in enumerate(inputs):
                logits = model(ids.unsqueeze(0)).logits[0].float().contiguous()
                l64 = m64(ids.unsqueeze(0)).logits[0]
                worst64 = max(worst64, (logits.double() - l64).abs().max().item())
                ref[f"ids.{i}"] = ids.to(torch.int64).contiguous()
                ref[f"logits.{i}"] = logits
        # one key: safetensors writes metadata in hash order, which would make the bytes vary
        meta = {"made_by": f"bench/slm/make_arch_fixtures.py {name}: torch {torch.__version__}, "
                           f"transformers {transformers.__version__}"}
        save_file(ref, os.path.join(d, "reference.safetensors"), metadata=meta)
        spread = torch.cat([ref[f"logits.{i}"].flatten() for i in range(len(inputs))]).std()
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{name:12} logits std {spread:.3f}  float32 vs float64 transformers "
              f"{worst64:.2e}  {size / 1024:.0f} KiB")
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main()
