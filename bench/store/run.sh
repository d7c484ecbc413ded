#!/usr/bin/env bash
# Store benchmark: N logged calls (default 1,000,000: the BFCL development data replicated with
# varied values, bench/curate/gen_calls.py) imported into SQLite and into PostgreSQL, then
# `calls list` (a page, and every call), `curate` and `discover` on each; wall time and peak
# memory (max RSS) of every command. Prints a Markdown table.
#   PG_URL=postgres://user:password@127.0.0.1/postgres bench/store/run.sh
#   N=100000 STORES=postgres PG_URL=… SKIP_BUILD=1 bench/store/run.sh
#   CALLS=FILE …     # import FILE (N calls, made once: called_tools.py, then gen_calls.py) instead
#   TOOLS=called …   # each request keeps only the tools its answer calls (~2 KB per call
#                    # instead of ~6.7 KB: 1M full BFCL calls need ~7 GB of JSONL plus as much
#                    # again per store)
# PG_URL names a server where the user may create databases: the run creates its own database
# (downshift_bench_<pid>) and drops it at the end.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000}
STORES=${STORES:-sqlite postgres}
: "${PG_URL:?set PG_URL=postgres://user:password@host/postgres (a server where the user may create databases)}"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release -q -p downshift-cli
fi
[ -s data/bfcl/bfcl.jsonl ] || scripts/fetch.sh bfcl >/dev/null
BIN=${BIN:-target/release/downshift}
work=$(mktemp -d)
db=downshift_bench_$$
base=${PG_URL%/*}
cleanup() {
  psql -q "$PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
psql -q "$PG_URL" -c "CREATE DATABASE $db"
export DOWNSHIFT_LOG=warn DOWNSHIFT_KEY_FILE=$work/keys.json
src=data/bfcl/bfcl.jsonl
if [ -n "${CALLS:-}" ]; then
  ln -s "$(realpath "$CALLS")" "$work/calls.jsonl"
elif [ "${TOOLS:-all}" = called ]; then
  src=$work/bfcl-called.jsonl
  python3 bench/store/called_tools.py data/bfcl/bfcl.jsonl "$src"
fi
[ -e "$work/calls.jsonl" ] || python3 bench/curate/gen_calls.py "$src" "$work/calls.jsonl" "$N"
echo "$(du -mL "$work/calls.jsonl" | cut -f1) MB of JSONL; load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# measure STORE STEP CMD…: wall seconds and max RSS (KiB) of CMD into $work/results
measure() {
  local store=$1 step=$2; shift 2
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" >"$work/out" 2>"$work/err" \
    || { echo "$store $step failed:" >&2; tail -5 "$work/err" >&2; exit 1; }
  echo "$store|$step|$(cat "$work/time")|$(cut -d' ' -f1 /proc/loadavg)" >>"$work/results"
  case $step in import|curate*|discover*) echo "$store $step: $(tail -c 600 "$work/out")" >&2 ;; esac
}
for store in $STORES; do
  if [ "$store" = postgres ]; then
    args=(--data-dir "$work/pg" --store-url "$base/$db")
  else
    args=(--data-dir "$work/sqlite")
  fi
  echo "$store: import $N calls…" >&2
  measure "$store" import "$BIN" import "$work/calls.jsonl" --json "${args[@]}"
  echo "$store: calls list, curate, discover…" >&2
  measure "$store" "calls list (newest 100)" "$BIN" calls list --limit 100 "${args[@]}"
  measure "$store" "calls list --json (every call)" "$BIN" calls list --json --limit 100000000 "${args[@]}"
  measure "$store" "curate (whole log)" "$BIN" curate --name bench --json "${args[@]}"
  measure "$store" "discover --embedder hashed" "$BIN" discover --embedder hashed --json "${args[@]}"
done

python3 - "$work/results" "$N" <<'PY'
import sys
rows, n = [l.rstrip("\n").split("|") for l in open(sys.argv[1])], int(sys.argv[2])
stores = list(dict.fromkeys(r[0] for r in rows))
steps = list(dict.fromkeys(r[1] for r in rows))
cell = {(r[0], r[1]): r[2].split() for r in rows}
load = {(r[0], r[1]): r[3] for r in rows}
print(f"\n{n:,} calls; wall time (s) / peak memory (MiB) per command (1-minute load average at its end)\n")
print("| step | " + " | ".join(stores) + " |")
print("|---|" + "---|" * len(stores))
for s in steps:
    vals = []
    for st in stores:
        t = cell.get((st, s))
        vals.append(f"{float(t[0]):.1f} s / {int(t[1]) / 1024:.0f} MiB (load {load[(st, s)]})" if t else "")
    print(f"| {s} | " + " | ".join(vals) + " |")
PY
