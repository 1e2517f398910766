#!/usr/bin/env bash
# Benchmark `dgen run --batch --wait` against the mock's Batch API: N items (default 1000),
# the mock answering at once (it works through a batch's lines one by one, so its own time is
# part of the wall time). Reports the wall time, the batches, and dgen's own CPU per dialogue
# (rendering the JSONL, parsing, checks, embedding, duplicate checks, commits) and peak RSS.
# Usage: scripts/bench-batch.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
scripts/fetch-assets.sh >/dev/null
source scripts/bench-lib.sh
planned_against_mock "$N"
/usr/bin/time -f "%e %U %S %M" -o time.txt \
  "$BIN" run --batch --wait --poll_interval 0.2 --base_url "$URL" >/dev/null 2>run.log
read -r WALL USER SYS RSS_KB < time.txt
"$BIN" status --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
done = [x["count"] for x in s["states"] if x["state"] == "done"][0]
b = s["batches"]
print(done, len(b), sum(x["requests"] for x in b))
' > counts.txt
read -r ACCEPTED BATCHES REQUESTS < counts.txt
awk -v n="$ACCEPTED" -v total="$N" -v wall="$WALL" -v user="$USER" -v sys="$SYS" -v rss="$RSS_KB" \
  -v batches="$BATCHES" -v requests="$REQUESTS" 'BEGIN {
  printf "batch run N=%d: %d accepted in %.1f s wall (mock included), %d batches, %d requests\n", total, n, wall, batches, requests;
  printf "  dgen CPU %.1f ms per accepted dialogue, peak RSS %.0f MB\n", (user + sys) / n * 1000, rss / 1024;
}'
