# Shared set-up of the benchmarks: a filled store (bench-export, bench-report, bench-hf) or a
# plan against the mock server (bench-run, bench-batch); sourced from the repository root.
#
# planned_store: sets BIN (DGEN_BIN, a dgen already built, else a release build) and leaves
# the shell in a temporary folder (removed on exit) holding dgen.redb: a 10-item plan on the
# fixtures. The repository root stays in ROOT.
planned_store() {
  ROOT="$PWD"
  if [[ -n "${DGEN_BIN:-}" ]]; then
    BIN="$(realpath "$DGEN_BIN")"
  else
    cargo build --release --locked --quiet --bin dgen
    BIN="$ROOT/target/release/dgen"
  fi
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  cd "$WORK"
  "$BIN" plan --total_generations 10 --dataset "$ROOT/fixtures/multiwoz_hf" \
    --persona_dataset "$ROOT/fixtures/personas_hf" >/dev/null 2>&1
}

# filled_store N: planned_store, then N synthetic dialogues written directly by
# `dgen bench-fill` (no LLM).
filled_store() {
  planned_store
  "$BIN" bench-fill --dialogues "$1" >/dev/null
}

# planned_against_mock N [MOCK_ARGS...]: builds dgen and dgen-mock-llm (release), sets BIN,
# starts the mock with MOCK_ARGS (stopped on exit) and sets URL to it, and leaves the shell in
# a temporary folder (removed on exit) holding dgen.redb: an N-item plan of 5-turn dialogues on
# the fixtures. The repository root stays in OLDPWD.
planned_against_mock() {
  local root="$PWD" n="$1"
  shift
  cargo build --release --locked --quiet --bin dgen --bin dgen-mock-llm
  BIN="$root/target/release/dgen"
  WORK="$(mktemp -d)"
  MOCK_PID=""
  trap '[[ -n "$MOCK_PID" ]] && kill "$MOCK_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
  "$root/target/release/dgen-mock-llm" "$@" > "$WORK/url" &
  MOCK_PID=$!
  for _ in $(seq 50); do [[ -s "$WORK/url" ]] && break; sleep 0.1; done
  URL="$(cat "$WORK/url")"
  cd "$WORK"
  "$BIN" plan --total_generations "$n" --dataset "$root/fixtures/multiwoz_hf" \
    --persona_dataset "$root/fixtures/personas_hf" --min_turns 5 5 --max_turns 8 8 >/dev/null 2>&1
}
