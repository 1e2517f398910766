#!/usr/bin/env bash
# The project's test command: fetch the offline assets the tests use, then run every test.
# Extra arguments go to `cargo test` (e.g. scripts/test.sh --test plan).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is needed (https://rustup.rs)" >&2
  exit 1
fi
scripts/fetch-assets.sh >/dev/null
# numpy: the export tests check that numpy.load reads dialogue_embeddings.npy.
if ! python3 -c 'import numpy' 2>/dev/null; then
  if ! python3 -m pip install --quiet --disable-pip-version-check numpy >/dev/null 2>&1; then
    echo "test.sh: numpy could not be installed (python3 -m pip install numpy); the export tests need it" >&2
    exit 1
  fi
fi
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
set +e
cargo test --locked "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$LOG"
exit "$status"
