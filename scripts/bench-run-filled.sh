#!/usr/bin/env bash
# `dgen run` on a store already holding N dialogues (default 1,000,000, from `dgen bench-fill`,
# dialogue-like embeddings): ITEMS items (default 300) against the tests' mock answering after 200 ms,
# --concurrency 32, real embeddings. Reports the dedup index's load time (from the log),
# dialogues/s with and without it, and peak RSS; compare N=100000 with N=1000000.
# A million dialogues take about 3.5 GB of disk in a temporary folder, removed on exit.
# Usage: scripts/bench-run-filled.sh [N [ITEMS]]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
ITEMS="${2:-300}"
scripts/fetch-assets.sh >/dev/null
source scripts/bench-lib.sh
planned_against_mock "$ITEMS" --latency-ms 200
"$BIN" bench-fill --dialogues "$N" >/dev/null
# The fill leaves gigabytes of dirty pages; written back during the run, they would slow the
# index load with I/O that is the fill's, not the run's.
sync
/usr/bin/time -f "%e %U %S %M" -o time.txt \
  "$BIN" run --base_url "$URL" --concurrency 32 >/dev/null 2>run.log
read -r WALL USER SYS RSS_KB < time.txt
LOAD=$(grep -o 'loaded in [0-9.]* s' run.log | head -1 | awk '{print $3}')
DONE=$("$BIN" status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print([x["count"] for x in s["states"] if x["state"]=="done"][0])')
awk -v n="$DONE" -v wall="$WALL" -v load="$LOAD" -v rss="$RSS_KB" -v stored="$N" 'BEGIN {
  printf "run on %d stored: %d accepted in %.1f s (index loaded in %.2f s): %.2f dialogues/s, %.2f without the load; peak RSS %.0f MB\n",
    stored, n, wall, load, n / wall, n / (wall - load), rss / 1024;
}'
