#!/usr/bin/env bash
# Benchmark adaptive concurrency against the mock server (scripts/bench-adaptive.sh [N]):
#  1. servers that allow 600 requests and 300,000 tokens a minute, answering 429 + Retry-After
#     beyond them, enforced over a sliding window of 60 s, 6 s or 1 s (60 calls in any 6 s, 10
#     in any second), or by a token bucket of 6 s (60 calls, refilled at 10 a second): each
#     stating its limits in x-ratelimit-* headers (dgen --concurrency 64), then without headers
#     (dgen told the limits with --rpm / --tpm): achieved calls/min and tokens/min against the
#     allowed, and the share of 429s;
#  2. a server that queues (8 calls served at once, 200 ms each) under --concurrency 64: the
#     calls in flight it saw in the second half of the run.
# PROFILE=debug uses the debug build (the figures are about pacing, not CPU). ONLY=NAME runs
# the one configuration of that name; DGEN=PATH benchmarks another dgen binary (e.g. an older
# build) against the same mock.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-300}"
PROFILE="${PROFILE:-release}"
scripts/fetch-assets.sh >/dev/null
if [[ "$PROFILE" == release ]]; then
  cargo build --release --locked --quiet --bin dgen --bin dgen-mock-llm
else
  cargo build --locked --quiet --bin dgen --bin dgen-mock-llm
fi
BIN="${DGEN:-$PWD/target/$PROFILE/dgen}"
MOCK="$PWD/target/$PROFILE/dgen-mock-llm"
ROOT="$PWD"
WORK="$(mktemp -d)"
MOCK_PID=""
cleanup() { [[ -n "$MOCK_PID" ]] && kill "$MOCK_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# run NAME MOCK_FLAGS... -- DGEN_FLAGS...: one run on a fresh mock and store; prints a line.
run() {
  local name="$1"; shift
  if [[ -n "${ONLY:-}" && "$ONLY" != "$name" ]]; then return; fi
  local mock_flags=() dgen_flags=()
  while [[ "$1" != "--" ]]; do mock_flags+=("$1"); shift; done
  shift
  dgen_flags=("$@")
  local dir="$WORK/$name"
  mkdir -p "$dir"
  "$MOCK" "${mock_flags[@]}" > "$dir/url" &
  MOCK_PID=$!
  for _ in $(seq 50); do [[ -s "$dir/url" ]] && break; sleep 0.1; done
  local url; url="$(cat "$dir/url")"
  (cd "$dir" && "$BIN" plan --total_generations "$N" --dataset "$ROOT/fixtures/multiwoz_hf" \
     --persona_dataset "$ROOT/fixtures/personas_hf" --min_turns 3 3 --max_turns 3 3 >/dev/null 2>&1)
  local start end
  start=$(date +%s.%N)
  (cd "$dir" && "$BIN" run --base_url "$url" "${dgen_flags[@]}" >/dev/null 2>run.log)
  end=$(date +%s.%N)
  curl -s "${url%/v1}/stats" > "$dir/stats.json"
  (cd "$dir" && "$BIN" status --json > status.json)
  kill "$MOCK_PID"; wait "$MOCK_PID" 2>/dev/null || true; MOCK_PID=""
  python3 - "$name" "$dir" "$start" "$end" <<'PY'
import json, sys
name, d, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
stats = json.load(open(f"{d}/stats.json"))
status = json.load(open(f"{d}/status.json"))
run = status["run"]
# Rates over the calls' span at the server (first to last arrival), not dgen's start-up.
minutes = max(stats["span_seconds"], 1e-9) / 60
answered, limited = stats["answered"], stats["limited"]
share = limited / max(1, answered + limited)
tokens = run["prompt_tokens"] + run["completion_tokens"]
arr = stats["arrivals"]
half = arr[len(arr) // 2:]
done = [s["count"] for s in status["states"] if s["state"] == "done"][0]
print(f"{name}: {done} accepted in {end - start:.1f} s; {answered / minutes:.0f} calls/min, "
      f"{tokens / minutes:.0f} tokens/min; 429s {limited} ({100 * share:.1f} % of calls); "
      f"in flight at arrival: max {stats['max_in_flight']}, second half max {max(half)}, "
      f"mean {sum(half) / len(half):.1f}")
PY
}

LIMITS=(--rpm 600 --tpm 300000)
for shape in "sliding 60" "sliding 6" "sliding 1" "bucket 6"; do
  read -r kind window <<<"$shape"
  mock=("${LIMITS[@]}" --window-s "$window")
  [[ "$kind" == bucket ]] && mock+=(--bucket)
  run "$kind-${window}s-headers" "${mock[@]}" -- --concurrency 64
  run "$kind-${window}s-flags" "${mock[@]}" --no-ratelimit-headers -- \
    --concurrency 64 "${LIMITS[@]}"
done
run queueing --capacity 8 --service-ms 200 -- --concurrency 64
