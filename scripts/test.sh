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
cargo test --locked "$@"
