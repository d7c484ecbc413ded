#!/usr/bin/env bash
# PEFT compatibility check: downshift trains a small adapter (QLoRA on the GGUF, a high learning
# rate so that it changes the answers) and writes it in PEFT format; `peft` loads it with
# PeftModel.from_pretrained on the same base dequantized to f32 and must decode the test prompts
# (chat template applied) greedily to the same tokens as downshift on that base.
# Usage: bench/train/peft_load.sh [--steps N] [--lr X] [--threads T] [--max-tokens M]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
STEPS=12 LR=1e-3 THREADS=2 MAXTOK=32
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --lr) LR="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --max-tokens) MAXTOK="$2"; shift 2 ;;
    *) echo "usage: bench/train/peft_load.sh [--steps N] [--lr X] [--threads T] [--max-tokens M]" >&2; exit 2 ;;
  esac
done
source bench/train/setup.sh
OUT=bench/out/train/peft-load
rm -rf "$OUT" && mkdir -p "$OUT"
echo "downshift: training the adapter ($STEPS updates, lr $LR) and decoding the prompts..." >&2
"$BENCH" adapter "$MODEL" "$OUT/adapter" bench/train/prompts.json \
  --steps "$STEPS" --lr "$LR" --threads "$THREADS" --max-tokens "$MAXTOK" > "$OUT/downshift.json"
OMP_NUM_THREADS="$THREADS" "$PY" bench/train/peft_load.py "$MODEL" "$OUT/adapter" "$OUT/downshift.json" \
  --threads "$THREADS"
