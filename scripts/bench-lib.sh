# Shared by the benchmarks over a filled store (bench-export, bench-report, bench-hf); sourced
# from the repository root.
#
# filled_store N: builds dgen (release), sets BIN, and leaves the shell in a temporary folder
# (removed on exit) holding dgen.redb: a 10-item plan on the fixtures and N synthetic dialogues
# written directly by `dgen bench-fill` (no LLM).
filled_store() {
  local root="$PWD"
  cargo build --release --locked --quiet --bin dgen
  BIN="$root/target/release/dgen"
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  cd "$WORK"
  "$BIN" plan --total_generations 10 --dataset "$root/fixtures/multiwoz_hf" \
    --persona_dataset "$root/fixtures/personas_hf" >/dev/null 2>&1
  "$BIN" bench-fill --dialogues "$1" >/dev/null
}
