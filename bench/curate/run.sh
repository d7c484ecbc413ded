#!/usr/bin/env bash
# Curation benchmark: N logged calls (default 100,000: the BFCL development data replicated with
# varied values) are imported into a fresh data directory and curated into a snapshot —
# filters, PII scrubbing with per-episode pseudonyms, exact and near-duplicate removal,
# encrypted snapshot write. Prints the timings and the curation report.
#   bench/curate/run.sh           N=20000 bench/curate/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100000}
cargo build --release -q --workspace --bin downshift
scripts/fetch.sh bfcl >/dev/null
BIN="${CARGO_TARGET_DIR:-target}/release/downshift"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 bench/curate/gen_calls.py data/bfcl/bfcl.jsonl "$work/calls.jsonl" "$N"
export DOWNSHIFT_LOG=warn
s=$(date +%s.%N)
"$BIN" import "$work/calls.jsonl" --data-dir "$work/d" --json >"$work/import.json"
e=$(date +%s.%N)
"$BIN" curate --name bench --data-dir "$work/d" --json >"$work/curate.json"
# The Python route a user would otherwise take (Presidio + hashing + datasketch MinHash), on a
# sample — at Presidio's speed the whole file would take hours. Needs bench/pii's venv
# (bench/pii/run.sh creates it); datasketch is added to it here.
PVENV=bench/pii/.venv
SAMPLE=${SAMPLE:-500}
if [ -x "$PVENV/bin/python" ] && "$PVENV/bin/python" -c "import presidio_analyzer" 2>/dev/null; then
  "$PVENV/bin/python" -c "import datasketch" 2>/dev/null || "$PVENV/bin/pip" install -q datasketch || true
  "$PVENV/bin/python" bench/curate/presidio_curate.py "$work/calls.jsonl" "$SAMPLE" >"$work/presidio.json"
fi
python3 - "$work" "$s" "$e" "$N" "$(du -sh "$work/calls.jsonl" | cut -f1)" <<'PY'
import json, sys, os
work, s, e, n, size = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
imp = json.load(open(os.path.join(work, "import.json")))
cur = json.load(open(os.path.join(work, "curate.json")))
r = cur["report"]
print(f"\n| step | calls | seconds | calls/s |\n|---|---|---|---|")
print(f"| import ({size} of JSONL, sealed into SQLite) | {imp['imported']} | {e-s:.1f} | {imp['imported']/(e-s):.0f} |")
print(f"| curate (decrypt, filter, scrub, dedup, seal snapshot) | {r['calls_in']} | {cur['seconds']:.1f} | {r['calls_in']/cur['seconds']:.0f} |")
print(f"\nReport: filtered {r['filtered']}, calls with PII {r['calls_with_pii']}, entities {sum(r['pii_entities'].values())}, "
      f"exact duplicates {r['exact_duplicates']}, near duplicates {r['near_duplicates']}, examples out {r['examples_out']}.")
pp = os.path.join(work, "presidio.json")
if os.path.exists(pp):
    p = json.load(open(pp))
    ours = r['calls_in'] / cur['seconds']
    print(f"\n| curation | calls/s | time for {n} calls | vs downshift |\n|---|---|---|---|")
    print(f"| downshift curate (all {n}) | {ours:.0f} | {cur['seconds']:.0f} s | 1× |")
    t = n / p['calls_per_s']
    human = f"{t / 3600:.1f} h" if t >= 3600 else f"{t / 60:.1f} min" if t >= 60 else f"{t:.0f} s"
    print(f"| Presidio + hashlib + datasketch MinHash (first {p['calls']}, extrapolated) | {p['calls_per_s']:.1f} | {human} | {ours / p['calls_per_s']:.0f}× slower |")
print(f"Target (issue 3): {n} calls curated in < 60 s → {'met' if cur['seconds'] < 60 else 'NOT met'} ({cur['seconds']:.1f} s).")
PY
