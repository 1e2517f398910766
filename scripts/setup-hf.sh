#!/usr/bin/env bash
# A Python virtualenv with Hugging Face `datasets` (and pyarrow, numpy), from PyPI, for the test
# that loads `dgen export --hf` output with the real consumer. Cached beside dgen's other assets
# ($DGEN_CACHE_DIR, else ~/.cache/dgen) under hf-venv; a second run returns at once.
# Prints the venv's python on success.
set -euo pipefail

CACHE="${DGEN_CACHE_DIR:-$HOME/.cache/dgen}"
VENV="$CACHE/hf-venv"
# Pinned so that the test checks one known consumer; bump together.
REQS=(datasets==5.2.0 pyarrow==26.0.1 numpy==2.4.6)
STAMP="$VENV/.dgen-${REQS[*]// /_}"

say() { echo "setup-hf: $*" >&2; }

if [[ -f "$STAMP" && -x "$VENV/bin/python" ]]; then
  say "datasets already in $VENV"
  echo "$VENV/bin/python"
  exit 0
fi
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  say "python3 with venv and ensurepip is needed (apt-get install python3-venv)"
  exit 1
fi
rm -rf "$VENV"
mkdir -p "$CACHE"
say "creating $VENV with ${REQS[*]} (about a minute, once)"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQS[@]}" >&2
"$VENV/bin/python" -c 'import datasets, pyarrow, numpy' >&2
touch "$STAMP"
echo "$VENV/bin/python"
