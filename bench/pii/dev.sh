#!/usr/bin/env bash
# Development loop: downshift alone on the DEV parts of the independent corpora (never the report
# parts), misses and false positives to out/dev_errors_<corpus>.jsonl. Needs out/*_dev.jsonl
# (bench/pii/run.sh makes them).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
[ -n "${NO_BUILD:-}" ] || (cd "$root" && CARGO_TARGET_DIR="$target" cargo build -q --release --workspace --example pii_detect)
for c in peval varied real; do
    python3 -c 'import json,sys; [print(json.dumps({"text": json.loads(l)["text"]})) for l in open(sys.argv[1])]' "$here/out/${c}_dev.jsonl" \
        | "$target/release/examples/pii_detect" 2>/dev/null > "$here/out/${c}_dev.downshift.jsonl"
    python3 "$here/report.py" --name "$c (dev)" --corpus "$here/out/${c}_dev.jsonl" --downshift "$here/out/${c}_dev.downshift.jsonl" \
        --errors "$here/out/dev_errors_$c.jsonl"
done
