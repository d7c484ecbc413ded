#!/usr/bin/env bash
# Train the learned person/address tagger (crates/curate/data/tagger.bin) on generated labelled
# text in seven languages: gen_corpus.py with three training seeds (never the benchmark's seed),
# gen_tagger_train.py (names in narrative contexts, capitalised non-names), and the DEV parts of the varied and real corpora. The report parts, and presidio-evaluator's
# corpus (whose person records the dev and report parts share), are never trained on.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$here/out"
mkdir -p "$out"
for seed in 11 12 13; do
    python3 "$here/gen_corpus.py" --seed "$seed" --out "$out/train_own_$seed.jsonl" >/dev/null
done
python3 "$here/gen_tagger_train.py" --seed 21 --n 4000 --out "$out/train_extra.jsonl"
[ -f "$out/varied_dev.jsonl" ] || python3 "$here/gen_varied.py" --split dev --out "$out/varied_dev.jsonl"
[ -f "$out/real_dev.jsonl" ] || { echo "run bench/pii/run.sh first (it makes out/real_dev.jsonl)" >&2; exit 1; }
target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build -q --release -p downshift-curate --example train_tagger)
"$target/release/examples/train_tagger" "$root/crates/curate/data/tagger.bin" "${EPOCHS:-6}" \
    "$out"/train_own_1?.jsonl "$out/train_extra.jsonl" "$out/varied_dev.jsonl" "$out/real_dev.jsonl"
