#!/usr/bin/env bash
# Gemma 3 270M beside SmolLM2-135M on one of the demo's tasks: the support desk's intent router
# (the `support:intent` calls of data/demo/traffic.jsonl: a system prompt naming six labels, a
# customer message in one of several languages, the label as the answer). Both bases are
# trained by `downshift train` with the same settings through their quantized GGUF weights
# (QLoRA) and scored by `downshift eval` on the same held-out split (exact match), with the
# base's zero-shot score beside it.
#
#   bench/train/gemma.sh [--steps N] [--threads N] [--limit N]     (DOWNSHIFT_BIN=path: use that binary)
#
# Writes bench/out/gemma/{smollm2,gemma3}/{train,eval}.json and prints one table row per base.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
STEPS=60 THREADS="$(nproc)" LIMIT=60
while [ $# -gt 0 ]; do
    case "$1" in
    --steps) STEPS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --limit) LIMIT="$2"; shift 2 ;;
    *) echo "usage: bench/train/gemma.sh [--steps N] [--threads N] [--limit N]" >&2; exit 2 ;;
    esac
done
scripts/fetch.sh demo smollm2 gemma3 >/dev/null
# DOWNSHIFT_BIN: a downshift binary already built (else a release build here)
if [ -n "${DOWNSHIFT_BIN:-}" ]; then
    DS="$DOWNSHIFT_BIN"
else
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
    cargo build --release -q --workspace
    DS="$CARGO_TARGET_DIR/release/downshift"
fi
MODELS="${DOWNSHIFT_MODELS_DIR:-$ROOT/models}"
WORK="$ROOT/bench/out/gemma"
rm -rf "$WORK" && mkdir -p "$WORK"
python3 - "$WORK/intent.jsonl" <<'PY'
import json, sys
n = 0
with open(sys.argv[1], "w") as out:
    for line in open("data/demo/traffic.jsonl"):
        if json.loads(line)["metadata"].get("job") == "support:intent":
            out.write(line)
            n += 1
print(f"{n} support:intent calls", file=sys.stderr)
PY
"$DS" import "$WORK/intent.jsonl" --data-dir "$WORK/data" >/dev/null
"$DS" curate --name intent --data-dir "$WORK/data" --json >"$WORK/curate.json"
for base in smollm2:smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
    gemma3:gemma-3-270m/gemma-3-270m-q4_k_m.gguf; do
    name="${base%%:*}" model="$MODELS/${base#*:}"
    mkdir -p "$WORK/$name"
    start=$(date +%s.%N)
    "$DS" train --dataset intent --base "$model" --threads "$THREADS" --max-steps "$STEPS" \
        --out "$WORK/$name/adapter" --data-dir "$WORK/data" --json >"$WORK/$name/train.json"
    end=$(date +%s.%N)
    echo "$start $end" >"$WORK/$name/train.time"
    "$DS" eval --adapter "$WORK/$name/adapter" --limit "$LIMIT" --max-tokens 8 --threads "$THREADS" \
        --data-dir "$WORK/data" --json >"$WORK/$name/eval.json"
done
python3 - "$WORK" <<'PY'
import json, os, sys
work = sys.argv[1]
print("| base | exact match, specialist | exact match, base zero-shot | answer p50 ms (specialist) | train wall s | s/update | train tokens/s | best val loss |")
print("|---|---|---|---|---|---|---|---|")
for name in ("smollm2", "gemma3"):
    t = json.load(open(os.path.join(work, name, "train.json")))
    e = json.load(open(os.path.join(work, name, "eval.json")))
    s, f = map(float, open(os.path.join(work, name, "train.time")).read().split())
    print(f"| {name} | {e['exact_match']:.3f} ({e['examples']} ex.) | {e['base_exact_match']:.3f} | "
          f"{e['specialist']['latency_p50_ms']:.0f} | {f - s:.0f} | {(f - s) / t['steps']:.2f} | "
          f"{t['tokens_per_s']:.1f} | {t['best_val_loss']:.3f} |")
PY
