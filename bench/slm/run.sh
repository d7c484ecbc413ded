#!/usr/bin/env bash
# One-command benchmark: downshift-slm vs llama.cpp (llama-cpp-python) on SmolLM2-135M Q4_1,
# same GGUF, prompts and thread count. Usage: bench/slm/run.sh [--threads N] [--rounds N]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
MODEL="${DOWNSHIFT_TEST_MODEL:-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}"
VENV="bench/slm/.venv"
if [ ! -f "$MODEL" ]; then
  if [ -x scripts/fetch.sh ]; then scripts/fetch.sh; fi
fi
[ -f "$MODEL" ] || { echo "model missing: $MODEL (run scripts/fetch.sh)" >&2; exit 1; }
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  echo "building llama-cpp-python 0.3.36 into $VENV (several minutes)..." >&2
  python3 -m venv "$VENV"
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" nice -n 19 "$VENV/bin/pip" install -q "llama-cpp-python==0.3.36" numpy
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-slm}"
nice -n 19 cargo build -q --release -p downshift-slm --example bench
mkdir -p bench/out
"$VENV/bin/python" bench/slm/bench.py --model "$MODEL" \
  --downshift "$CARGO_TARGET_DIR/release/examples/bench" --json-out bench/out/slm.json "$@"
