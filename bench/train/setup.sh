# Sourced by run.sh and peft_load.sh (from the repository root): checks the model, creates the
# Python environment on first use, builds the downshift side. Sets MODEL, PY, BENCH.
MODEL="${DOWNSHIFT_TEST_MODEL:-models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}"
VENV="bench/train/.venv"
PY="$VENV/bin/python"
if [ ! -f "$MODEL" ] && [ -x scripts/fetch.sh ]; then scripts/fetch.sh smollm2; fi
[ -f "$MODEL" ] || { echo "model missing: $MODEL (run scripts/fetch.sh smollm2)" >&2; exit 1; }
# pinned: the versions the design's anchor was measured with
PY_PKGS=(torch==2.15.0 transformers==5.24.0 peft==0.21.2 safetensors==0.8.0 gguf==0.19.0 accelerate==1.15.0)
if [ ! -x "$PY" ] || ! "$PY" -c "import torch, transformers, peft, gguf" 2>/dev/null; then
  echo "creating $VENV with ${PY_PKGS[*]} (first use; a few GB, several minutes)..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  # the CPU-only wheels when their index is reachable, else PyPI's (which bundle CUDA libraries)
  nice "$VENV/bin/pip" install -q --index-url https://download.pytorch.org/whl/cpu torch==2.15.0 2>/dev/null \
    || echo "(CPU-only torch index unreachable: installing torch from PyPI)" >&2
  nice "$VENV/bin/pip" install -q "${PY_PKGS[@]}"
  "$VENV/bin/pip" cache purge >/dev/null 2>&1 || true
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
nice -n 19 cargo build -q --release -p downshift-train --example train_bench
BENCH="$CARGO_TARGET_DIR/release/examples/train_bench"
# quieter Python: no progress bars, no deprecation chatter
export TQDM_DISABLE=1 TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore
mkdir -p bench/out/train
