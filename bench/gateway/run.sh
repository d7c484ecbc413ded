#!/usr/bin/env bash
# Gateway benchmark: the same load straight to the mock LLM, through `downshift serve` (auth on,
# every call logged and encrypted), and — when LiteLLM is installed — through the LiteLLM proxy,
# in one run, on this machine.
#   bench/gateway/run.sh                      # 10 s per phase, 1000 req/s open loop, 32 connections
#   DURATION=5 RATE=1000 CONNS=32 bench/gateway/run.sh
#   WITH_LITELLM=1 bench/gateway/run.sh       # also install (first time) and measure LiteLLM's proxy
#   JOURNAL=0 bench/gateway/run.sh            # the gateway without its crash journal ([store] journal = false)
#   CONFIG=gw.toml bench/gateway/run.sh       # the gateway with a config file (e.g. other [store] batch settings)
#   STORE=postgres PG_URL=postgres://… bench/gateway/run.sh  # log into PostgreSQL (an empty database) instead of SQLite
#   SKIP_BUILD=1 bench/gateway/run.sh         # use the release binaries already built
#   BIN=/path/to/downshift SKIP_BUILD=1 bench/gateway/run.sh   # measure another build (LG: the load generator)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${DURATION:-10}
RATE=${RATE:-1000}
CONNS=${CONNS:-32}
LITELLM_RATE=${LITELLM_RATE:-50}   # LiteLLM saturates near 100 req/s per worker
VENV=bench/gateway/.venv

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "building (release)…" >&2
  cargo build --release -q -p downshift-cli
  cargo build --release -q -p downshift-gateway --example loadgen
fi
BIN=${BIN:-target/release/downshift}
LG=${LG:-target/release/examples/loadgen}
BODY=bench/gateway/request.json

if [ "${WITH_LITELLM:-0}" = 1 ] && [ ! -x "$VENV/bin/litellm" ]; then
  echo "installing LiteLLM into $VENV…" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'litellm[proxy]'
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

source scripts/lib.sh
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # user + system, in clock ticks
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export DOWNSHIFT_LOG=warn
"$BIN" mock-llm --listen 127.0.0.1:0 >"$work/mock.out" 2>"$work/mock.err" &
MOCK_PID=$!; pids+=($MOCK_PID)
MOCK=$(wait_addr "$work/mock.out")
KEY=dsk_benchmark_admin_key_0123456789
GW_ARGS=()
if [ "${JOURNAL:-1}" = 0 ]; then
  printf '[store]\njournal = false\n' >"$work/gw.toml"
  GW_ARGS=(--config "$work/gw.toml")
elif [ -n "${CONFIG:-}" ]; then
  GW_ARGS=(--config "$CONFIG")
fi
STORE_ARGS=()
if [ "${STORE:-sqlite}" = postgres ]; then
  STORE_ARGS=(--store-url "${PG_URL:?STORE=postgres needs PG_URL=postgres://user:password@host/database, an empty database}")
fi
DOWNSHIFT_ADMIN_KEY=$KEY "$BIN" serve --listen 127.0.0.1:0 --upstream "http://$MOCK" \
  --data-dir "$work/data" "${GW_ARGS[@]}" "${STORE_ARGS[@]}" >"$work/gw.out" 2>"$work/gw.err" &
GW_PID=$!; pids+=($GW_PID)
GW=$(wait_addr "$work/gw.out")

# run NAME URL PID-OR-- KEY mode-args… : load, plus the CPU the server process used meanwhile
run() {
  local name=$1 url=$2 pid=$3 key=$4; shift 4
  local before=0 after=0 mbefore mafter
  [ "$pid" != - ] && before=$(cpu_ticks "$pid")
  mbefore=$(cpu_ticks "$MOCK_PID")
  "$LG" --url "$url" --body "$BODY" --header "authorization: Bearer $key" --duration "$DURATION" "$@" >"$work/$name.json"
  [ "$pid" != - ] && after=$(cpu_ticks "$pid")
  mafter=$(cpu_ticks "$MOCK_PID")
  echo "{\"server_ticks\": $((after - before)), \"mock_ticks\": $((mafter - mbefore))}" >"$work/$name.cpu.json"
}
echo "saturation, $CONNS connections, ${DURATION}s each…" >&2
run direct_sat "http://$MOCK/v1/chat/completions" - "$KEY" --connections "$CONNS"
run gw_sat "http://$GW/v1/chat/completions" "$GW_PID" "$KEY" --connections "$CONNS"
echo "open loop at $RATE req/s, ${DURATION}s each…" >&2
run direct_rate "http://$MOCK/v1/chat/completions" - "$KEY" --rate "$RATE"
run gw_rate "http://$GW/v1/chat/completions" "$GW_PID" "$KEY" --rate "$RATE"
curl -s "http://$GW/metrics" >"$work/metrics.txt"

if [ -x "$VENV/bin/litellm" ]; then
  echo "LiteLLM proxy (1 worker, no database, no callbacks)…" >&2
  LPORT=$(free_port)
  cat >"$work/litellm.yaml" <<YAML
model_list:
  - model_name: gpt-4o-2024-08-06
    litellm_params:
      model: openai/gpt-4o-2024-08-06
      api_base: http://$MOCK/v1
      api_key: sk-mock
litellm_settings:
  telemetry: false
YAML
  # Auth on with a master key (as downshift runs with keys); local cost map and no telemetry,
  # so nothing leaves loopback.
  LLKEY=sk-bench-0123456789abcdef0123456789abcdef
  LITELLM_MASTER_KEY=$LLKEY LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False LITELLM_LOG=ERROR \
    "$VENV/bin/litellm" --config "$work/litellm.yaml" --host 127.0.0.1 --port "$LPORT" --num_workers 1 \
    >"$work/litellm.out" 2>&1 &
  LL_PID=$!; pids+=($LL_PID)
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$LPORT/health/liveliness" && break
    kill -0 "$LL_PID" 2>/dev/null || { echo "LiteLLM did not start:" >&2; tail -20 "$work/litellm.out" >&2; exit 1; }
    sleep 0.1
  done
  run ll_sat "http://127.0.0.1:$LPORT/v1/chat/completions" "$LL_PID" "$LLKEY" --connections "$CONNS"
  run ll_rate "http://127.0.0.1:$LPORT/v1/chat/completions" "$LL_PID" "$LLKEY" --rate "$LITELLM_RATE"
  run direct_llrate "http://$MOCK/v1/chat/completions" - "$KEY" --rate "$LITELLM_RATE"
fi
sleep 2   # the writer folds the journal into the store within about a second
LOGGED=$("$BIN" calls list --json --limit 100000000 --data-dir "$work/data" "${STORE_ARGS[@]}" | wc -l)

python3 - "$work" "$LOGGED" "$RATE" "$CONNS" "$DURATION" "$LITELLM_RATE" <<'PY'
import json, sys, os
work, logged, rate, conns, dur, llrate = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def load(n):
    p = os.path.join(work, n + ".json")
    if not os.path.exists(p):
        return None
    d = json.load(open(p))
    d.update(json.load(open(os.path.join(work, n + ".cpu.json"))))
    return d
r = {n: load(n) for n in ["direct_sat", "gw_sat", "direct_rate", "gw_rate", "ll_sat", "ll_rate", "direct_llrate"]}
metrics = open(os.path.join(work, "metrics.txt")).read().splitlines()
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
def metric(name):
    return next((float(l.split()[1]) for l in metrics if l.startswith(name + " ")), float("nan"))
def hist_quantile(name, q):
    buckets = [(float("inf") if (le := l.split('le="')[1].split('"')[0]) == "+Inf" else float(le), float(l.split()[1]))
               for l in metrics if l.startswith(name + "_bucket{le=\"")]
    total = buckets[-1][1] if buckets else 0
    return next((le for le, c in buckets if total and c >= q * total), float("nan"))
ms = lambda us: f"{us/1000:.3f}"
sms = lambda us: f"{us/1000:+.3f}"
cpu = lambda d: f"{d['server_ticks'] * tick_us / max(d['requests'], 1):.0f}"
for k, v in r.items():
    if v and v["errors"]:
        print(f"warning: {k}: {v['errors']} errors, first: {v['first_error']}", file=sys.stderr)
d, g, dr, gr = r["direct_sat"], r["gw_sat"], r["direct_rate"], r["gw_rate"]
ll, llr, dll = r["ll_sat"], r["ll_rate"], r["direct_llrate"]
sat_ratio = g["rps"] / d["rps"]
add50, add99 = gr["p50_us"] - dr["p50_us"], gr["p99_us"] - dr["p99_us"]
print(f"\n| measure | direct to mock | through downshift | downshift vs direct |" + (" through LiteLLM | LiteLLM vs direct |" if ll else ""))
print("|---|---|---|---|" + ("---|---|" if ll else ""))
row = lambda *c: print("| " + " | ".join(c) + " |")
row(f"saturation throughput, {conns} connections (req/s)", f"{d['rps']:.0f}", f"{g['rps']:.0f}", f"{sat_ratio:.2f}×",
    *([f"{ll['rps']:.0f}", f"{ll['rps']/d['rps']:.3f}×"] if ll else []))
row("server CPU per request at saturation (µs)", "", cpu(g), "", *([cpu(ll), ""] if ll else []))
row(f"open loop {rate} req/s: p50 / p99 latency (ms)", f"{ms(dr['p50_us'])} / {ms(dr['p99_us'])}", f"{ms(gr['p50_us'])} / {ms(gr['p99_us'])}",
    f"{sms(add50)} / {sms(add99)}", *(["", ""] if ll else []))
if ll:
    row(f"open loop {llrate} req/s: p50 / p99 latency (ms)", f"{ms(dll['p50_us'])} / {ms(dll['p99_us'])}", "", "",
        f"{ms(llr['p50_us'])} / {ms(llr['p99_us'])}", f"{sms(llr['p50_us']-dll['p50_us'])} / {sms(llr['p99_us']-dll['p99_us'])}")
row("added latency measured inside the gateway, p50 / p99 (ms, histogram bucket bound)", "",
    f"{hist_quantile('downshift_gateway_overhead_seconds', 0.5)*1000:g} / {hist_quantile('downshift_gateway_overhead_seconds', 0.99)*1000:g}", "",
    *(["", ""] if ll else []))
sent = sum(r[k]["requests"] + r[k]["errors"] for k in ["gw_sat", "gw_rate"])
print(f"\nLogging on in downshift: {logged} calls in its log (the {sent} measured plus warm-up), "
      f"{metric('downshift_log_records_spilled_total'):.0f} spilled, {metric('downshift_log_records_lost_total'):.0f} lost"
      + ("; LiteLLM ran without a database or logging callbacks." if ll else "."))
jw, jr = metric('downshift_log_journal_writes_total'), metric('downshift_log_journal_records_total')
if jw > 0:
    print(f"Journal: {jr:.0f} records in {jw:.0f} writes ({jr/jw:.1f} records per write).")
print(f"Targets: added p99 ≤ 1 ms at {rate} req/s → {'met' if add99 <= 1000 else 'NOT met'} ({sms(add99)} ms); "
      f"saturation ≥ 0.5× direct → {'met' if sat_ratio >= 0.5 else 'NOT met'} ({sat_ratio:.2f}×).")
PY
