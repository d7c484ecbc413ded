#!/usr/bin/env bash
# One-command benchmark: LoRA training with downshift-train vs PyTorch + PEFT on CPU, side by side
# (same model, base, LoRA config, data, batch, sequence length and thread count): PEFT in f32
# and with bf16 autocast, downshift at its default precision and in f32, plus downshift's QLoRA
# run on the quantized base as an extra row. Prints a markdown table; --json prints one object.
# Usage: bench/train/run.sh [--steps N] [--warmup W] [--threads T] [--rounds R] [--batch B] [--seq-len L]
#                           [--no-qlora] [--omp-passive] [--json]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
STEPS=3 WARMUP=1 THREADS=2 ROUNDS=1 BATCH=4 SEQ=256 EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --rounds) ROUNDS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --seq-len) SEQ="$2"; shift 2 ;;
    --no-qlora) EXTRA+=(--no-qlora); shift ;;
    --omp-passive) EXTRA+=(--omp-passive); shift ;;
    --json) EXTRA+=(--json); shift ;;
    *) echo "usage: bench/train/run.sh [--steps N] [--warmup W] [--threads T] [--rounds R] [--batch B] [--seq-len L] [--no-qlora] [--omp-passive] [--json]" >&2; exit 2 ;;
  esac
done
source bench/train/setup.sh
DATA="bench/out/train/data-${BATCH}x${SEQ}-$((STEPS + WARMUP)).json"
TEXT=data/bfcl/bfcl.jsonl
[ -f "$TEXT" ] || { [ -x scripts/fetch.sh ] && scripts/fetch.sh bfcl || true; }
"$BENCH" data "$MODEL" "$DATA" --text "$TEXT" --examples $((BATCH * (STEPS + WARMUP))) \
  --seq-len "$SEQ" --batch "$BATCH" >/dev/null
"$PY" bench/train/bench.py --model "$MODEL" --data "$DATA" --downshift "$BENCH" \
  --steps "$STEPS" --warmup "$WARMUP" --threads "$THREADS" --rounds "$ROUNDS" --batch "$BATCH" \
  --json-out bench/out/train/bench.json "${EXTRA[@]}"
