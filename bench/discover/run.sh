#!/usr/bin/env bash
# Task discovery benchmark (S3), one command:
#   1. quality and speed on the BFCL development data (2,445 calls): `downshift discover` and
#      BERTopic (same all-MiniLM-L6-v2 weights, its default UMAP + HDBSCAN) on the same calls in
#      the same run, scored against the BFCL labels (ARI, NMI, noise share, wall time);
#   2. scale: N calls (default 100,000: the development data replicated with varied values,
#      bench/curate/gen_calls.py) imported and discovered.
#   bench/discover/run.sh        BERTOPIC=0 bench/discover/run.sh        N=20000 bench/discover/run.sh
# The BERTopic environment (bertopic, sentence-transformers, torch from PyPI) is created in
# bench/discover/.venv on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100000}
BERTOPIC=${BERTOPIC:-1}
export DOWNSHIFT_LOG=warn
scripts/fetch.sh bfcl minilm >/dev/null
cargo build --release -q -p downshift-cli
BIN=${CARGO_TARGET_DIR:-target}/release/downshift
VENV=bench/discover/.venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import sklearn" 2>/dev/null; then
  "$VENV/bin/pip" install -q scikit-learn numpy
fi
if [ "$BERTOPIC" = 1 ] && ! "$VENV/bin/python" -c "import bertopic, sentence_transformers" 2>/dev/null; then
  "$VENV/bin/pip" install -q bertopic==0.17.4 sentence-transformers==6.2.0 torch==2.15.0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== BFCL development data: downshift discover vs BERTopic"
"$BIN" import data/bfcl/bfcl.jsonl --data-dir "$work/bfcl" >/dev/null
s=$(date +%s.%N)
"$BIN" discover --json --data-dir "$work/bfcl" >"$work/bfcl.json"
e=$(date +%s.%N)
secs=$(python3 -c "print($e - $s)")
extra=()
[ "$BERTOPIC" = 1 ] || extra=(--no-bertopic)
"$VENV/bin/python" bench/discover/compare.py data/bfcl/bfcl.jsonl "$work/bfcl.json" "$secs" "${extra[@]}"
python3 -c "import json,sys; s=json.load(open(sys.argv[1]))['stats']; print('downshift phases: features %.2f s, embedding %.2f s (%d texts), clustering+labels %.2f s, total in process %.2f s' % (s['seconds_features'], s['seconds_embed'], s['texts_embedded'], s['seconds_cluster'], s['seconds_total']))" "$work/bfcl.json"

if [ "$N" -gt 0 ]; then
  echo
  echo "== scale: $N calls"
  python3 bench/curate/gen_calls.py data/bfcl/bfcl.jsonl "$work/calls.jsonl" "$N"
  "$BIN" import "$work/calls.jsonl" --data-dir "$work/scale" >/dev/null
  s=$(date +%s.%N)
  "$BIN" discover --json --data-dir "$work/scale" >"$work/scale.json"
  e=$(date +%s.%N)
  python3 - "$work/scale.json" "$s" "$e" <<'PY'
import json, sys
out = json.load(open(sys.argv[1]))
s = out["stats"]
wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"| calls | tasks | noise | structural groups | split | texts embedded | wall time (s) |")
print(f"|---|---|---|---|---|---|---|")
print(f"| {s['calls']} | {len(out['tasks'])} | {s['noise'] / s['calls']:.1%} | {s['structural_groups']} | {s['groups_split']} | {s['texts_embedded']} | {wall:.1f} |")
print(f"in process: features {s['seconds_features']:.1f} s, embedding {s['seconds_embed']:.1f} s, "
      f"clustering+labels {s['seconds_cluster']:.1f} s; the rest of the wall time is reading and decrypting the log and writing the result")
PY
fi
