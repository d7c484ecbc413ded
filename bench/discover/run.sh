#!/usr/bin/env bash
# Task discovery benchmark (S3), one command, side by side with BERTopic:
#   1. BFCL development data (2,445 calls): ARI/NMI per label family (compare.py);
#   2. generated varied traffic (bench/discover/gen_traffic.py, 2,000 calls, three agents, twelve
#      jobs): ARI/NMI overall and per agent, router placement on held-back calls, stability of
#      task ids (same log again; log + 20% new calls of the same jobs);
#   3. τ²-bench airline + telecom agent calls (scripts/tau2_to_jsonl.py): ARI/NMI on all calls,
#      on the first call of each conversation, and per domain;
#   4. scale: N calls (default 100,000) of varied traffic imported and discovered (wall time).
#   bench/discover/run.sh     BERTOPIC=0 bench/discover/run.sh     N=20000 bench/discover/run.sh
#   BERTOPIC_SCALE=1 also runs BERTopic on the N calls (slow: it embeds every call).
# The BERTopic environment (bertopic, sentence-transformers, torch from PyPI) is created in
# bench/discover/.venv on first use.
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-100000}
BERTOPIC=${BERTOPIC:-1}
BERTOPIC_SCALE=${BERTOPIC_SCALE:-0}
export DOWNSHIFT_LOG=warn
scripts/fetch.sh bfcl minilm tau2 >/dev/null
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
now() { date +%s.%N; }
secs() { python3 -c "print($2 - $1)"; }
bert=()
[ "$BERTOPIC" = 1 ] && bert=(--bertopic)

echo "== BFCL development data: downshift discover vs BERTopic"
"$BIN" import data/bfcl/bfcl.jsonl --data-dir "$work/bfcl" >/dev/null
s=$(now)
"$BIN" discover --json --data-dir "$work/bfcl" >"$work/bfcl.json"
e=$(now)
extra=()
[ "$BERTOPIC" = 1 ] || extra=(--no-bertopic)
"$VENV/bin/python" bench/discover/compare.py data/bfcl/bfcl.jsonl "$work/bfcl.json" "$(secs "$s" "$e")" "${extra[@]}"
# The router's placement of BFCL's held-back calls (not timed; --dry-run stores nothing).
"$BIN" discover --placement --dry-run --data-dir "$work/bfcl" | sed -n 1p

# discover_scored NAME JSONL SCORE-ARGS...: import, discover with the router placement check, score
discover_scored() {
  local name=$1 file=$2
  shift 2
  "$BIN" import "$file" --data-dir "$work/$name" >/dev/null
  local s e
  s=$(now)
  "$BIN" discover --json --placement --data-dir "$work/$name" >"$work/$name.json"
  e=$(now)
  echo
  "$VENV/bin/python" bench/discover/score.py "$name" "$file" "$work/$name.json" "$(secs "$s" "$e")" "$@" "${bert[@]}"
}

python3 bench/discover/gen_traffic.py "$work/varied.jsonl" --calls 2000 --seed 7
discover_scored varied "$work/varied.jsonl" --label job --by agent

echo
echo "stability of task ids (varied traffic):"
"$BIN" discover --json --data-dir "$work/varied" >"$work/varied.again.json"
python3 bench/discover/gen_traffic.py "$work/varied.more.jsonl" --calls 400 --seed 8
"$BIN" import "$work/varied.more.jsonl" --data-dir "$work/varied" >/dev/null
"$BIN" discover --json --data-dir "$work/varied" >"$work/varied.grown.json"
python3 - "$work/varied.json" "$work/varied.again.json" "$work/varied.grown.json" <<'PY'
import json, sys
ids = lambda p: {t["id"] for t in json.load(open(p))["tasks"]}
first, again, grown = (ids(p) for p in sys.argv[1:])
print(f"  same log again: {len(first & again)} of {len(first)} task ids kept, {len(again - first)} new")
print(f"  log + 20% new calls of the same jobs: {len(first & grown)} of {len(first)} kept, {len(grown - first)} new")
PY

discover_scored tau2 data/tau2/tau2.jsonl --label job --by domain --subset step=0

if [ "$N" -gt 0 ]; then
  echo
  echo "== scale: $N calls of varied traffic"
  python3 bench/discover/gen_traffic.py "$work/scale.jsonl" --calls "$N" --seed 11
  "$BIN" import "$work/scale.jsonl" --data-dir "$work/scale" >/dev/null
  s=$(now)
  "$BIN" discover --json --data-dir "$work/scale" >"$work/scale.json"
  e=$(now)
  scale_extra=()
  [ "$BERTOPIC_SCALE" = 1 ] && scale_extra=(--bertopic)
  "$VENV/bin/python" bench/discover/score.py scale "$work/scale.jsonl" "$work/scale.json" "$(secs "$s" "$e")" --label job --by agent "${scale_extra[@]}"
  python3 - "$work/scale.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["stats"]
print(f"in process: features {s['seconds_features']:.1f} s, embedding {s['seconds_embed']:.1f} s ({s['texts_embedded']} texts), "
      f"clustering+labels {s['seconds_cluster']:.1f} s; the rest of the wall time is reading and decrypting the log and writing the result")
PY
fi
