#!/usr/bin/env bash
# Gateway benchmark: the same load straight to the mock LLM and through `downshift serve`
# (auth on, every call logged and encrypted), in one run, on this machine.
#   bench/gateway/run.sh            # defaults: 10 s per phase, 1000 req/s open loop, 32 connections
#   DURATION=5 RATE=1000 CONNS=32 bench/gateway/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
RATE=${RATE:-1000}
CONNS=${CONNS:-32}

echo "building (release)…" >&2
cargo build --release -q -p downshift-cli
cargo build --release -q -p downshift-gateway --example loadgen
BIN=target/release/downshift
LG=target/release/examples/loadgen
BODY=bench/gateway/request.json

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_addr() { # file → host:port from its "listening on http://" line
  for _ in $(seq 1 200); do
    if grep -q 'listening on http://' "$1" 2>/dev/null; then
      grep -o 'listening on http://[^ ]*' "$1" | head -1 | sed 's|listening on http://||'; return 0
    fi
    sleep 0.05
  done
  echo "server did not start: $(cat "$1")" >&2; exit 1
}

export DOWNSHIFT_LOG=warn
"$BIN" mock-llm --listen 127.0.0.1:0 >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
MOCK=$(wait_addr "$work/mock.out")
KEY=dsk_benchmark_admin_key_0123456789
DOWNSHIFT_ADMIN_KEY=$KEY "$BIN" serve --listen 127.0.0.1:0 --upstream "http://$MOCK" \
  --data-dir "$work/data" >"$work/gw.out" 2>"$work/gw.err" &
pids+=($!)
GW=$(wait_addr "$work/gw.out")

run() { # name url mode-args…
  local name=$1 url=$2; shift 2
  "$LG" --url "$url" --body "$BODY" --header "authorization: Bearer $KEY" --duration "$DURATION" "$@" >"$work/$name.json"
}
echo "saturation, $CONNS connections, ${DURATION}s each…" >&2
run direct_sat "http://$MOCK/v1/chat/completions" --connections "$CONNS"
run gw_sat "http://$GW/v1/chat/completions" --connections "$CONNS"
echo "open loop at $RATE req/s, ${DURATION}s each…" >&2
run direct_rate "http://$MOCK/v1/chat/completions" --rate "$RATE"
run gw_rate "http://$GW/v1/chat/completions" --rate "$RATE"
curl -s "http://$GW/metrics" >"$work/metrics.txt"
sleep 0.5
LOGGED=$("$BIN" calls list --json --limit 100000000 --data-dir "$work/data" | wc -l)

python3 - "$work" "$LOGGED" "$RATE" "$CONNS" "$DURATION" <<'PY'
import json, sys, os, platform
work, logged, rate, conns, dur = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
r = {n: json.load(open(os.path.join(work, n + ".json"))) for n in ["direct_sat", "gw_sat", "direct_rate", "gw_rate"]}
metrics = open(os.path.join(work, "metrics.txt")).read().splitlines()
def metric(name):
    for l in metrics:
        if l.startswith(name + " "):
            return float(l.split()[1])
    return float("nan")
def hist_quantile(name, q):
    buckets = []
    for l in metrics:
        if l.startswith(name + "_bucket{le=\""):
            le = l.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(l.split()[1])))
    total = buckets[-1][1] if buckets else 0
    for le, c in buckets:
        if total and c >= q * total:
            return le
    return float("nan")
ms = lambda us: f"{us/1000:.3f}"
for k, v in r.items():
    if v["errors"]:
        print(f"warning: {k}: {v['errors']} errors, first: {v['first_error']}", file=sys.stderr)
sat_ratio = r["gw_sat"]["rps"] / r["direct_sat"]["rps"]
add50 = r["gw_rate"]["p50_us"] - r["direct_rate"]["p50_us"]
add99 = r["gw_rate"]["p99_us"] - r["direct_rate"]["p99_us"]
print(f"\n## Gateway benchmark ({platform.node()}, {os.cpu_count()} cores; load generator, mock and gateway share them)\n")
print(f"| measure | direct to mock | through downshift | downshift vs direct |")
print(f"|---|---|---|---|")
print(f"| saturation throughput, {conns} connections (req/s) | {r['direct_sat']['rps']:.0f} | {r['gw_sat']['rps']:.0f} | {sat_ratio:.2f}× |")
print(f"| saturation p50 / p99 latency (ms) | {ms(r['direct_sat']['p50_us'])} / {ms(r['direct_sat']['p99_us'])} | {ms(r['gw_sat']['p50_us'])} / {ms(r['gw_sat']['p99_us'])} | |")
print(f"| open loop {rate} req/s: achieved (req/s) | {r['direct_rate']['rps']:.0f} | {r['gw_rate']['rps']:.0f} | |")
print(f"| open loop {rate} req/s: p50 latency (ms) | {ms(r['direct_rate']['p50_us'])} | {ms(r['gw_rate']['p50_us'])} | +{ms(add50)} |")
print(f"| open loop {rate} req/s: p99 latency (ms) | {ms(r['direct_rate']['p99_us'])} | {ms(r['gw_rate']['p99_us'])} | +{ms(add99)} |")
print(f"| gateway-measured added latency p50 / p99 (ms, histogram bucket bound) | | {hist_quantile('downshift_gateway_overhead_seconds', 0.5)*1000:g} / {hist_quantile('downshift_gateway_overhead_seconds', 0.99)*1000:g} | |")
sent = sum(r[k]["requests"] + r[k]["errors"] for k in ["gw_sat", "gw_rate"])
print(f"\nLogging on: {logged} calls in the log (the measured {sent} plus warm-up), "
      f"{metric('downshift_log_records_spilled_total'):.0f} spilled, {metric('downshift_log_records_lost_total'):.0f} lost. "
      f"Targets: added p99 ≤ 1 ms at {rate} req/s → {'met' if add99 <= 1000 else 'NOT met'}; "
      f"saturation ≥ 0.5× direct → {'met' if sat_ratio >= 0.5 else 'NOT met'}.")
PY
