#!/usr/bin/env bash
# Benchmark one run over three endpoints against one: three mock servers that queue like a
# GPU node (dgen-mock-llm --capacity $CAPACITY --service-ms $SERVICE_MS, default 2 calls served
# at once, 1 s each: slow enough that the endpoints, not embedding on this machine's CPUs, set
# the pace), N dialogues (default 60) on one of them, then N on all three (--endpoint x3), both
# with --concurrency 32 and real embeddings. Reports dialogues/s of each and the calls each
# endpoint served.
# Usage: [CAPACITY=C] [SERVICE_MS=MS] scripts/bench-endpoints.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-60}"
CAPACITY="${CAPACITY:-2}"
SERVICE_MS="${SERVICE_MS:-1000}"
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked --quiet --bin dgen --bin dgen-mock-llm
BIN="$PWD/target/release/dgen"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; rm -rf "$WORK"; }
trap cleanup EXIT
URLS=()
for i in 1 2 3; do
  target/release/dgen-mock-llm --capacity "$CAPACITY" --service-ms "$SERVICE_MS" \
    --first-call "${i}000000" > "$WORK/url$i" &
  PIDS+=($!)
  for _ in $(seq 50); do [[ -s "$WORK/url$i" ]] && break; sleep 0.1; done
  URLS+=("$(cat "$WORK/url$i")")
done
DATA="$PWD/fixtures"
cd "$WORK"
plan() {
  "$BIN" --store "$1" plan --total_generations "$N" --dataset "$DATA/multiwoz_hf" \
    --persona_dataset "$DATA/personas_hf" --min_turns 5 5 --max_turns 8 8 >/dev/null 2>&1
}
cat > summary.py <<'PY'
import json, sys
start, end, label = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
s = json.load(sys.stdin)
wall = end - start
done = [x["count"] for x in s["states"] if x["state"] == "done"][0]
calls = ", ".join(f"{k} {v['calls']} calls" for k, v in s["run"]["endpoints"].items())
print(f"{label}: {done} accepted in {wall:.1f} s, {done / wall:.2f} dialogues/s"
      + (f" ({calls})" if calls else ""))
PY
measure() {
  local store="$1" label="$2"
  shift 2
  plan "$store"
  local start end
  start=$(date +%s.%N)
  "$BIN" --store "$store" run --concurrency 32 "$@" >/dev/null 2>"$store.log"
  end=$(date +%s.%N)
  "$BIN" --store "$store" status --json | python3 summary.py "$start" "$end" "$label"
}
measure one.redb "1 endpoint" --base_url "${URLS[0]}"
measure three.redb "3 endpoints" --endpoint "${URLS[0]}" --endpoint "${URLS[1]}" --endpoint "${URLS[2]}"
