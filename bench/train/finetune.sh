#!/usr/bin/env bash
# A real fine-tune, end to end through the CLI: the BFCL calls of one API class are imported,
# discovered as one task (one task per tool family), and SmolLM2-135M-Instruct is trained on
# that task's train split (QLoRA through its Q4_1 weights); `eval` then scores the specialist and
# the base zero-shot on the held-out test split (never trained on), writing every answer to
# predictions.jsonl.
#
#   bench/train/finetune.sh [--api CLASS] [--source base|agent] [--epochs N] [--lr LR]
#                           [--threads N] [--work DIR] [--no-base]
#                           [-- extra train options]
#
# --api: the BFCL API class whose calls make the task (TradingBot, VehicleControlAPI,
#   GorillaFileSystem, TravelAPI, ...; default TradingBot). --source: `agent` (the default) takes
#   the agent-transcript steps whose gold call is that API's (data/bfcl/agent.jsonl: the request
#   holds the conversation so far, tool results included), `base` the multi_turn_base turns whose
#   only API is that one (data/bfcl/bfcl.jsonl: the request holds the current user turn).
# Prints the train summary and the eval JSON; the work folder (default bench/out/finetune; --work
# gives another, so two runs can share the machine) is kept. --no-base skips the base model's
# zero-shot score (slow: it reads the full prompts, tool schemas included).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
EPOCHS=8
LR=1e-3
THREADS="$(nproc)"
API=TradingBot
SOURCE=agent
EXTRA=()
EVAL_EXTRA=()
WORK="$ROOT/bench/out/finetune"
while [ $# -gt 0 ]; do
    case "$1" in
        --api) API="$2"; shift 2 ;;
        --source) SOURCE="$2"; shift 2 ;;
        --epochs) EPOCHS="$2"; shift 2 ;;
        --lr) LR="$2"; shift 2 ;;
        --threads) THREADS="$2"; shift 2 ;;
        --no-base) EVAL_EXTRA=(--no-base); shift ;;
        --work) WORK="$(realpath -m "$2")"; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "usage: $0 [--api CLASS] [--source base|agent] [--epochs N] [--lr LR] [--threads N] [--work DIR] [--no-base] [-- train options]" >&2; exit 2 ;;
    esac
done
scripts/fetch.sh bfcl smollm2 >/dev/null
cargo build --release -q -p downshift-cli
DS="$ROOT/target/release/downshift"
MODEL="$ROOT/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
rm -rf "$WORK" && mkdir -p "$WORK"
python3 - "$WORK/calls.jsonl" "$API" "$SOURCE" <<'EOF'
import json, sys
out_path, api, source = sys.argv[1:4]
n = 0
with open(out_path, "w") as out:
    if source == "agent":
        for line in open("data/bfcl/agent.jsonl"):
            if json.loads(line)["metadata"].get("api_class") == api:
                out.write(line)
                n += 1
    elif source == "base":
        for line in open("data/bfcl/bfcl.jsonl"):
            meta = json.loads(line)["metadata"]
            if meta.get("bfcl_category") == "multi_turn_base" and meta.get("involved_classes") == api:
                out.write(line)
                n += 1
    else:
        sys.exit(f"--source is base or agent, not {source!r}")
if n < 40:
    sys.exit(f"{api} ({source}): {n} calls; a task needs more (is the API class spelled right?)")
print(f"{api} ({source}): {n} calls", file=sys.stderr)
EOF
printf '[discover]\nmin_split_share = 1.0\n' > "$WORK/downshift.toml"
"$DS" import "$WORK/calls.jsonl" --data-dir "$WORK/data" >/dev/null
"$DS" --config "$WORK/downshift.toml" discover --embedder hashed --data-dir "$WORK/data" >/dev/null
TASK="$("$DS" tasks list --json --data-dir "$WORK/data" | python3 -c '
import json, sys
tasks = [json.loads(l) for l in sys.stdin if l.strip()]
print(max(tasks, key=lambda t: t["calls"])["id"])')"
echo "task: $TASK"
"$DS" train --task "$TASK" --base "$MODEL" --epochs "$EPOCHS" --lr "$LR" --threads "$THREADS" \
    --out "$WORK/adapter" --data-dir "$WORK/data" --json "${EXTRA[@]}" | tee "$WORK/train.json"
"$DS" eval --adapter "$WORK/adapter" --threads "$THREADS" --data-dir "$WORK/data" --json \
    --predictions "$WORK/predictions.jsonl" "${EVAL_EXTRA[@]}" \
    | tee "$WORK/eval.json"
python3 - "$WORK/train.json" "$WORK/eval.json" <<'EOF'
import json, sys
t, e = (json.load(open(p)) for p in sys.argv[1:3])
pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"
print()
print("| model | held-out exact match (tool name + arguments) | schema valid | examples |")
print("|---|---|---|---|")
print(f"| SmolLM2-135M-Instruct zero-shot | {pct(e.get('base_exact_match'))} | {pct(e.get('base_schema_valid'))} | {e['examples']} |")
print(f"| specialist ({t['steps']} updates, {t['seconds']:.0f} s, {t['tokens_per_s']:.0f} tok/s) | {pct(e['exact_match'])} | {pct(e['schema_valid'])} | {e['examples']} |")
EOF
