#!/usr/bin/env bash
# Fault suite for the gateway (issue 23): kill -9 under load, an admin read loop, a held write
# lock, idle / half-header connection floods, and descriptor exhaustion. Loopback only, bounded
# in time (about 2 minutes); prints one table.
#   bench/faults/run.sh
#   TRIALS=3 RATE=800 bench/faults/run.sh
#   SKIP_BUILD=1 bench/faults/run.sh          # use the release binaries already built
#   BIN=/path/to/downshift LG=/path/to/loadgen SKIP_BUILD=1 bench/faults/run.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/../.."
TRIALS=${TRIALS:-3}
RATE=${RATE:-800}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "building (release)…" >&2
  cargo build --release -q -p downshift-cli
  cargo build --release -q -p downshift-gateway --example loadgen
fi
BIN=${BIN:-$PWD/target/release/downshift}
LG=${LG:-$PWD/target/release/examples/loadgen}
BODY=$PWD/bench/gateway/request.json
HELP=$PWD/bench/faults/faults.py

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
source scripts/lib.sh
export DOWNSHIFT_LOG=error

"$BIN" mock-llm --listen 127.0.0.1:0 >"$work/mock.out" 2>"$work/mock.err" &
pids+=($!)
MOCK=$(wait_addr "$work/mock.out")

# start_gw DATA [CONFIG] : starts the gateway, sets GW (address) and GW_PID
start_gw() {
  local data=$1 cfg=${2:-}
  local args=(serve --listen 127.0.0.1:0 --upstream "http://$MOCK" --data-dir "$data" --no-auth)
  [ -n "$cfg" ] && args+=(--config "$cfg")
  : >"$work/gw.out"
  "$BIN" "${args[@]}" >"$work/gw.out" 2>>"$work/gw.err" &
  GW_PID=$!; pids+=($GW_PID)
  GW=$(wait_addr "$work/gw.out")
}
stop_gw() { kill -TERM "$GW_PID" 2>/dev/null || true; wait "$GW_PID" 2>/dev/null || true; }

results=$work/results.jsonl
: >"$results"

# 1. kill -9 under load: every call answered with a 200 must be in the log after a restart.
for t in $(seq 1 "$TRIALS"); do
  echo "kill -9 trial $t/$TRIALS at $RATE req/s…" >&2
  data=$work/kill$t
  start_gw "$data"
  "$LG" --url "http://$GW/v1/chat/completions" --body "$BODY" --rate "$RATE" --duration 4 \
    --warmup 0 --ids "$work/ids$t.txt" >"$work/kill$t.json" &
  LG_PID=$!
  sleep "$(python3 -c "import random; print(1.5 + random.random())")"
  kill -9 "$GW_PID"; wait "$GW_PID" 2>/dev/null || true
  wait "$LG_PID" || true
  start_gw "$data"; stop_gw          # the restart replays the journal
  "$BIN" calls list --json --limit 100000000 --data-dir "$data" >"$work/logged$t.jsonl"
  python3 "$HELP" compare-ids "$work/ids$t.txt" "$work/logged$t.jsonl" "$t" >>"$results"
done

# 2. admin read loop: /v1 p99 before and while a client reads /admin/calls in a loop.
echo "admin read loop…" >&2
start_gw "$work/admin"
"$LG" --url "http://$GW/v1/chat/completions" --body "$BODY" --rate 500 --duration 5 >"$work/admin_before.json"
python3 "$HELP" admin-loop "$GW" 7 >"$work/admin_loop.json" &
AL=$!
sleep 0.5
"$LG" --url "http://$GW/v1/chat/completions" --body "$BODY" --rate 500 --duration 5 >"$work/admin_during.json"
wait "$AL" || true
python3 "$HELP" pair admin_read_loop "$work/admin_before.json" "$work/admin_during.json" >>"$results"
stop_gw

# 3. held write lock: another process holds SQLite's write lock for 3 s while /v1 traffic
#    flows and an admin reads a raw payload (audited: that read alone must fail, with a 503).
echo "held write lock…" >&2
start_gw "$work/lock"
"$LG" --url "http://$GW/v1/chat/completions" --body "$BODY" --rate 200 --duration 1 >/dev/null
python3 "$HELP" hold-lock "$work/lock/downshift.sqlite" 3 "$GW" >"$work/lock_admin.json" &
HL=$!
sleep 0.2
"$LG" --url "http://$GW/v1/chat/completions" --body "$BODY" --rate 200 --duration 2.6 --warmup 0 >"$work/lock_during.json"
wait "$HL" || true
python3 "$HELP" lock "$work/lock_during.json" "$work/lock_admin.json" >>"$results"
stop_gw

# 4. idle and half-header floods with the default timeouts (idle 20 s, head 10 s) and with
#    short ones; a real request is timed while the flood is open.
echo "connection floods…" >&2
start_gw "$work/flood"
python3 "$HELP" flood "$GW" 200 50 30 default >>"$results"
stop_gw
cat >"$work/short.toml" <<'TOML'
[server]
header_read_timeout_ms = 2000
idle_timeout_ms = 3000
TOML
start_gw "$work/flood2" "$work/short.toml"
python3 "$HELP" flood "$GW" 200 50 10 short >>"$results"
stop_gw

# 5. descriptor exhaustion: the gateway under ulimit -n 1024, 1,100 idle connections.
echo "1,100 idle connections under ulimit -n 1024…" >&2
(
  ulimit -n 1024
  exec "$BIN" serve --listen 127.0.0.1:0 --upstream "http://$MOCK" --data-dir "$work/fd" --no-auth
) >"$work/gw.out" 2>>"$work/gw.err" &
GW_PID=$!; pids+=($GW_PID)
GW=$(wait_addr "$work/gw.out")
python3 "$HELP" exhaust "$GW" 1100 >>"$results"
stop_gw

python3 "$HELP" table "$results"
