#!/usr/bin/env bash
# Times every web UI page against a call log of N calls (default 100,000): the BFCL calls
# imported and discovered, then N more built from them (bench/ui/gen.py) spread over 30 days,
# a quarter tagged as specialist answers and 3% as fallbacks. Prints, per page, the first
# (cold) request and min / median / p95 / max of the next REPEAT (default 30) requests, in ms,
# measured by curl on loopback; then the overview after an import of older calls (which starts
# a background reload of its call summary), how long that reload takes, and the overview after it. Needs: the downshift binary (DOWNSHIFT_BIN, default
# $CARGO_TARGET_DIR/release/downshift), python3, curl, data/bfcl (scripts/fetch.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-100000}
REPEAT=${REPEAT:-30}
BIN=${DOWNSHIFT_BIN:-${CARGO_TARGET_DIR:-target}/release/downshift}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export DOWNSHIFT_LOG=warn
data="$work/data"
python3 bench/ui/gen.py data/bfcl/bfcl.jsonl "$N" > "$work/calls.jsonl"
"$BIN" import data/bfcl/bfcl.jsonl --data-dir "$data" >/dev/null
"$BIN" discover --embedder hashed --data-dir "$data" >/dev/null
t0=$(date +%s)
"$BIN" import "$work/calls.jsonl" --data-dir "$data"
echo "import of $N calls: $(( $(date +%s) - t0 )) s"
task=$("$BIN" tasks list --json --data-dir "$data" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[0])["id"])')

# The gateway (its upstream is the mock; no LLM call is made).
"$BIN" mock-llm --listen 127.0.0.1:0 > "$work/mock.out" &
pids+=($!)
key=dsk_benchuiadminkey0123456789abcdefghijklmnop
for _ in $(seq 100); do grep -q "listening on" "$work/mock.out" 2>/dev/null && break; sleep 0.1; done
mock=$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$work/mock.out")
DOWNSHIFT_ADMIN_KEY=$key "$BIN" serve --listen 127.0.0.1:0 --data-dir "$data" --upstream "http://$mock" > "$work/gw.out" &
pids+=($!)
for _ in $(seq 3000); do grep -q "listening on" "$work/gw.out" 2>/dev/null && break; sleep 0.1; done
gw=$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$work/gw.out")
echo "calls in the log: $("$BIN" calls list --json --limit 1000000 --data-dir "$data" | wc -l)"

time_page() {
    local path=$1
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -b "downshift_ui=$key" "http://$gw$path"
}
printf '%-40s %6s %8s %8s %8s %8s %8s\n' page status cold_ms min_ms med_ms p95_ms max_ms
for page in /ui "/ui?days=7" /ui/tasks "/ui/tasks/$task" /ui/calls "/ui/calls?route=specialist&limit=200" /ui/training; do
    first=$(time_page "$page")
    status=${first%% *}
    cold=$(python3 -c "print(round(${first#* } * 1000, 1))")
    for _ in $(seq "$REPEAT"); do time_page "$page"; done | python3 -c '
import sys
t = sorted(float(l.split()[1]) * 1000 for l in sys.stdin)
p95 = t[max(0, -(-len(t) * 95 // 100) - 1)]
print(f"{t[0]:8.1f} {t[len(t) // 2]:8.1f} {p95:8.1f} {t[-1]:8.1f}")' > "$work/t"
    label=${page/$task/TASK}
    printf '%-40s %6s %8s %s\n' "$label" "$status" "$cold" "$(cat "$work/t")"
done

# An import of older calls: the overview's next request answers from the summary it holds (and
# says how many calls it lacks) while the whole log is read again in the background.
python3 bench/ui/gen.py data/bfcl/bfcl.jsonl 1000 8 > "$work/more.jsonl"
"$BIN" import "$work/more.jsonl" --data-dir "$data" >/dev/null
printf '%-40s %s\n' "/ui after importing 1,000 older calls" "$(time_page /ui | awk '{printf "%s %.1f ms", $1, $2 * 1000}')"
t0=$(date +%s%N)
while curl -s -b "downshift_ui=$key" "http://$gw/ui" | grep -q 'id="reloading"'; do sleep 0.1; done
printf '%-40s %s ms\n' "background reload done within" "$(( ($(date +%s%N) - t0) / 1000000 ))"
printf '%-40s %s\n' "/ui after the reload" "$(time_page /ui | awk '{printf "%s %.1f ms", $1, $2 * 1000}')"
