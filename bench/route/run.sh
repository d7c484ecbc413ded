#!/usr/bin/env bash
# Routing overhead (issue 7, acceptance 2): what classifying each request into its discovered
# task and looking up the task's policy adds to the gateway. In one run, on this machine: the
# same BFCL trading request at a fixed rate straight to the mock LLM, through the gateway with
# routing off (`route.enabled = false`), and through the gateway with routing on (every
# discovered task has a policy, so every request is classified and looked up; the policies are
# `off`, so the LLM answers and only the routing decision differs). Rounds alternate the two
# gateways so drift on the shared machine hits both alike.
#   bench/route/run.sh                   # 3 rounds × 8 s at 500 req/s
#   ROUNDS=5 DURATION=10 RATE=800 bench/route/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
RATE=${RATE:-500}

echo "building (release)…" >&2
cargo build --release -q --workspace --bins
cargo build --release -q -p downshift-gateway --example loadgen
scripts/fetch.sh bfcl >/dev/null
BIN=target/release/downshift
LG=target/release/examples/loadgen

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
source scripts/lib.sh
export DOWNSHIFT_LOG=warn

# The multi-turn agent traffic: imported, discovered; every task gets a policy.
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
body = None
with open(f"{work}/traffic.jsonl", "w") as out:
    for line in open("data/bfcl/bfcl.jsonl"):
        v = json.loads(line)
        if v["metadata"].get("bfcl_category") != "multi_turn_base":
            continue
        out.write(line)
        tools = v["request"].get("tools") or []
        if body is None and tools and all("trading system" in t["function"]["description"] for t in tools):
            body = v["request"]
json.dump(body, open(f"{work}/body.json", "w"))
PY
"$BIN" import "$work/traffic.jsonl" --data-dir "$work/on" >/dev/null
"$BIN" discover --embedder hashed --data-dir "$work/on" >/dev/null
TASKS=$("$BIN" tasks list --json --data-dir "$work/on" | python3 -c 'import json,sys; print(" ".join(json.loads(l)["id"] for l in sys.stdin if l.strip()))')
for t in $TASKS; do "$BIN" promote "$t" --mode off --data-dir "$work/on" >/dev/null 2>&1; done
cp -r "$work/on" "$work/off"
printf '[route]\nenabled = false\n' >"$work/off.toml"
printf '[route]\nenabled = true\n' >"$work/on.toml"

"$BIN" mock-llm --listen 127.0.0.1:0 --replay "$work/traffic.jsonl" >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
MOCK=$(wait_addr "$work/mock.out")
for side in off on; do
  "$BIN" serve --config "$work/$side.toml" --listen 127.0.0.1:0 --upstream "http://$MOCK" --no-auth \
    --data-dir "$work/$side" >"$work/gw_$side.out" 2>"$work/gw_$side.err" &
  pids+=($!)
done
GW_OFF=$(wait_addr "$work/gw_off.out")
GW_ON=$(wait_addr "$work/gw_on.out")
wait_router "$GW_ON"
# The routed gateway must place the request in a task, or the benchmark measures nothing.
TASK=$(curl -s -D - -o /dev/null -H 'content-type: application/json' --data @"$work/body.json" \
  "http://$GW_ON/v1/chat/completions" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-downshift-task"{print $2}')
[ -n "$TASK" ] || { echo "the routed gateway did not classify the request" >&2; exit 1; }

echo "$ROUNDS rounds × ${DURATION}s at $RATE req/s (request of task $TASK)…" >&2
for i in $(seq 1 "$ROUNDS"); do
  "$LG" --url "http://$MOCK/v1/chat/completions" --body "$work/body.json" --duration "$DURATION" --rate "$RATE" >"$work/direct_$i.json"
  "$LG" --url "http://$GW_OFF/v1/chat/completions" --body "$work/body.json" --duration "$DURATION" --rate "$RATE" >"$work/off_$i.json"
  "$LG" --url "http://$GW_ON/v1/chat/completions" --body "$work/body.json" --duration "$DURATION" --rate "$RATE" >"$work/on_$i.json"
done
curl -s "http://$GW_ON/metrics" >"$work/metrics.txt"

python3 - "$work" "$ROUNDS" "$RATE" "$TASK" <<'PY'
import json, os, sys, statistics
work, rounds, rate, task = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
load = lambda n: json.load(open(os.path.join(work, n + ".json")))
res = {s: [load(f"{s}_{i}") for i in range(1, rounds + 1)] for s in ["direct", "off", "on"]}
for s, rs in res.items():
    for r in rs:
        if r["errors"]:
            print(f"warning: {s}: {r['errors']} errors, first: {r['first_error']}", file=sys.stderr)
med = lambda s, k: statistics.median(r[k] for r in res[s])
metrics = open(os.path.join(work, "metrics.txt")).read().splitlines()
def hist(name):
    b = [(float("inf") if (le := l.split('le="')[1].split('"')[0]) == "+Inf" else float(le), float(l.split()[1]))
         for l in metrics if l.startswith(name + "_bucket{le=\"")]
    s = next(float(l.split()[1]) for l in metrics if l.startswith(name + "_sum"))
    c = next(float(l.split()[1]) for l in metrics if l.startswith(name + "_count"))
    q = lambda x: next((le for le, n in b if c and n >= x * c), float("nan"))
    return s / max(c, 1), q(0.5), q(0.99), c
mean, p50, p99, n = hist("downshift_route_decision_seconds")
ms = lambda us: f"{us/1000:.3f}"
print(f"\n| median of {rounds} rounds, {rate} req/s | direct to mock | gateway, routing off | gateway, routing on | routing on − off |")
print("|---|---|---|---|---|")
for k, label in [("p50_us", "p50 latency (ms)"), ("p99_us", "p99 latency (ms)")]:
    print(f"| {label} | {ms(med('direct', k))} | {ms(med('off', k))} | {ms(med('on', k))} | {(med('on', k) - med('off', k))/1000:+.3f} |")
print(f"| throughput (req/s) | {med('direct', 'rps'):.0f} | {med('off', 'rps'):.0f} | {med('on', 'rps'):.0f} | |")
print(f"\nInside the routed gateway, classify + policy lookup over {n:.0f} requests: mean {mean*1e6:.1f} µs, "
      f"p50 ≤ {p50*1e6:g} µs, p99 ≤ {p99*1e6:g} µs (histogram bucket bounds).")
added = med('on', 'p99_us') - med('off', 'p99_us')
ok = p99 * 1e3 < 0.2
print(f"Target: classification and policy lookup add < 0.2 ms p99 → {'met' if ok else 'NOT met'} "
      f"(in-gateway p99 ≤ {p99*1e3:g} ms; end-to-end p99 difference {added/1000:+.3f} ms, which also carries scheduling noise).")
PY
