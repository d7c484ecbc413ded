#!/usr/bin/env python3
"""Tiny random `transformers` models and their reference logits, for downshift-slm's
architecture parity test (crates/slm/tests/arch_parity.rs).

For each architecture the crate implements, builds a model from a config written here (no Hub
access), initialises it from a fixed seed at scales that give logits of order 1-10 (so a
tolerance of 1e-4 means something), saves it the way `save_pretrained` does and runs it in
float32 with eager attention on fixed token ids. Writes, per architecture,

  crates/slm/tests/fixtures/arch/<name>/config.json         as transformers writes it
  crates/slm/tests/fixtures/arch/<name>/weights.json        how to regenerate every weight:
      {"tensors": [{"name", "shape", "scale", "offset"}]}; no weight file is committed: the
      values come from a portable generator (`portable_values` here, its twin
      `downshift_slm::testing` in Rust), so the test rebuilds model.safetensors bit for bit
  crates/slm/tests/fixtures/arch/<name>/reference.json      token ids of each sequence, vocab,
      and what made it (the script, versions of torch and transformers)
  crates/slm/tests/fixtures/arch/<name>/reference.f32       transformers' float32 logits at
      every position of every sequence, little-endian, sequence after sequence

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


MASK64 = (1 << 64) - 1


def portable_values(name, count, scale, offset):
    """`count` float32 values of unit variance, times `scale`, plus `offset`: splitmix64 seeded
    by the FNV-1a hash of the tensor name, uniform on [-sqrt 3, sqrt 3]. Only exactly rounded
    IEEE operations, so Rust (`downshift_slm::testing::portable_values`) gets the same bits."""
    import numpy as np
    state = 0xCBF29CE484222325
    for b in name.encode():
        state = ((state ^ b) * 0x100000001B3) & MASK64
    out = np.empty(count, dtype=np.float64)
    root3 = 3.0 ** 0.5
    for i in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        u = (z >> 11) * (1.0 / (1 << 53))
        out[i] = offset + scale * ((2.0 * u - 1.0) * root3)
    return out.astype(np.float32)


def init_(model, prefix):
    """Weights at scales that keep activations of order 1: projections of spread 1/sqrt(fan_in),
    embeddings 0.5, norm weights 1 ± 0.1 (Gemma stores them minus 1), biases 0.1. Returns the
    manifest the Rust side regenerates them from."""
    norm_base = 0.0 if model.config.model_type.startswith("gemma") else 1.0
    tensors = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                scale, offset = 0.1, norm_base
            elif name.endswith(".bias"):
                scale, offset = 0.1, 0.0
            elif "embed_tokens" in name:
                scale, offset = 0.5, 0.0
            else:
                scale, offset = 1.0 / p.shape[1] ** 0.5, 0.0
            v = portable_values(f"{prefix}/{name}", p.numel(), scale, offset)
            p.copy_(torch.from_numpy(v).reshape(p.shape))
            tensors.append({"name": name, "shape": list(p.shape), "scale": scale, "offset": offset})
    return {"seed_prefix": prefix, "tensors": tensors}


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
        manifest = init_(model, name)
        d = os.path.join(OUT, name)
        model.save_pretrained(d, safe_serialization=True)
        # the tensors save_pretrained keeps (tied weights are written once) are the ones to
        # regenerate; the weights themselves are not committed
        from safetensors import safe_open
        with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
            saved = set(f.keys())
        manifest["tensors"] = [t for t in manifest["tensors"] if t["name"] in saved]
        assert {t["name"] for t in manifest["tensors"]} == saved, name
        for extra in os.listdir(d):
            if extra != "config.json":
                os.remove(os.path.join(d, extra))
        with open(os.path.join(d, "weights.json"), "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
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
        meta = {"made_by": f"bench/slm/make_arch_fixtures.py {name}: torch {torch.__version__}, "
                           f"transformers {transformers.__version__}",
                "vocab": VOCAB,
                "sequences": [ref[f"ids.{i}"].tolist() for i in range(len(inputs))]}
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump(meta, f)
            f.write("\n")
        with open(os.path.join(d, "reference.f32"), "wb") as f:
            for i in range(len(inputs)):
                f.write(ref[f"logits.{i}"].numpy().astype("<f4").tobytes())
        spread = torch.cat([ref[f"logits.{i}"].flatten() for i in range(len(inputs))]).std()
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{name:12} logits std {spread:.3f}  float32 vs float64 transformers "
              f"{worst64:.2e}  {size / 1024:.0f} KiB")
    print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main()
