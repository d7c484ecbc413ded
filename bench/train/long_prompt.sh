#!/usr/bin/env bash
# Acceptance 5 of the training issue: with default settings, training SmolLM2-135M on a task of
# 400 calls whose system prompt and tools are ~4k tokens must finish in under 20 minutes on
# this machine. Prompt pruning (tool schemas and the system prompt's constant text) is what
# makes that possible.
#
# The calls: 400 BFCL multi-turn turns (their tool schemas are 2–3k tokens), each given the
# same ~1.6k-token agent system prompt followed by a per-call line (the date), as an agent
# framework would send. They are imported, curated into a dataset, and `downshift train` runs
# with its defaults (3 epochs, batch 4, r = 16 on all projections, QLoRA on the Q4_1 GGUF).
#
#   bench/train/long_prompt.sh [--threads N]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
THREADS="$(nproc)"
[ "${1:-}" = "--threads" ] && THREADS="$2"
scripts/fetch.sh bfcl smollm2 >/dev/null
cargo build --release -q -p downshift-cli
DS="$ROOT/target/release/downshift"
MODEL="$ROOT/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
WORK="$ROOT/bench/out/long_prompt"
rm -rf "$WORK" && mkdir -p "$WORK"
python3 - "$WORK/calls.jsonl" <<'EOF'
import json, sys
rules = [
    "Always confirm the user's intent before taking an irreversible action.",
    "Prefer the most specific tool available for the request, and never invent tool names.",
    "Pass arguments exactly as the user gave them; convert units only when a tool demands it.",
    "If a required argument is missing, use the value established earlier in the session.",
    "Never reveal credentials, tokens or internal identifiers to the user.",
    "When several independent actions are requested, call the tools in the order given.",
    "Dates are written as YYYY-MM-DD and times as HH:MM in 24-hour format.",
    "Monetary amounts are plain numbers without currency symbols.",
]
policy = "You are the operations agent of a large travel, finance and vehicle services company.\n"
for section in range(12):
    policy += f"\nSection {section + 1}. Operating policy.\n"
    for i, r in enumerate(rules):
        policy += f"{section + 1}.{i + 1} {r}\n"
n = 0
with open(sys.argv[1], "w") as out:
    for line in open("data/bfcl/bfcl.jsonl"):
        v = json.loads(line)
        if v["metadata"].get("bfcl_category") != "multi_turn_base":
            continue
        day = 1 + n % 28
        v["request"]["messages"].insert(
            0, {"role": "system", "content": policy + f"\nToday is 2026-03-{day:02d}."})
        v["metadata"]["id"] = f"long-{n:04d}"
        out.write(json.dumps(v) + "\n")
        n += 1
        if n == 400:
            break
print(f"{n} calls; system prompt {len(policy)} characters")
EOF
"$DS" import "$WORK/calls.jsonl" --data-dir "$WORK/data" >/dev/null
"$DS" curate --name long --data-dir "$WORK/data" --json >/dev/null
# prompt size before pruning, in SmolLM2 tokens (first call)
python3 - "$WORK/calls.jsonl" > "$WORK/first_prompt.txt" <<'EOF'
import json, sys
v = json.loads(open(sys.argv[1]).readline())
print(v["request"]["messages"][0]["content"] + json.dumps(v["request"]["tools"]))
EOF
TOKENS="$("$DS" tokenize --model "$MODEL" --raw < <(python3 -c 'import json,sys; print(json.dumps(open(sys.argv[1]).read()))' "$WORK/first_prompt.txt") | python3 -c 'import json,sys; print(len(json.loads(sys.stdin.read())))')"
echo "system prompt + tools of the first call: $TOKENS tokens"
START=$(date +%s)
"$DS" train --dataset long --base "$MODEL" --threads "$THREADS" --out "$WORK/adapter" \
    --data-dir "$WORK/data" --json | tee "$WORK/train.json"
END=$(date +%s)
echo "wall time: $((END - START)) s (target: < 1200 s)"
