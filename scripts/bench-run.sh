#!/usr/bin/env bash
# Benchmark `dgen run`: the test mock server answering after 200 ms per call, N dialogues
# (default 300), --concurrency 32, real embeddings. Reports dialogues/s, CPU per dialogue with
# and without embedding, peak RSS; then the embedding and near-duplicate micro-benchmarks.
# Usage: scripts/bench-run.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-300}"
scripts/fetch-assets.sh >/dev/null
source scripts/bench-lib.sh
planned_against_mock "$N" --latency-ms 200
/usr/bin/time -f "%e %U %S %M" -o time.txt \
  "$BIN" run --base_url "$URL" --concurrency 32 >/dev/null 2>run.log
read -r WALL USER SYS RSS_KB < time.txt
ACCEPTED=$("$BIN" status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print([x["count"] for x in s["states"] if x["state"]=="done"][0]); print("  rejected attempts:", json.dumps(s["run"]["rejections"]), file=sys.stderr)')
cd "$OLDPWD"
EMBED_LINE=$(cargo bench --quiet --bench embed 2>/dev/null | grep '^embedding:')
EMBED_MS=$(echo "$EMBED_LINE" | sed -E 's/.*, ([0-9.]+) ms CPU per text.*/\1/')
awk -v n="$ACCEPTED" -v wall="$WALL" -v user="$USER" -v sys="$SYS" -v rss="$RSS_KB" -v emb="$EMBED_MS" 'BEGIN {
  cpu = (user + sys) / n * 1000;
  printf "run N=%d (mock 200 ms/call, concurrency 32): %.1f s wall, %.2f accepted dialogues/s\n", n, wall, n / wall;
  printf "  CPU %.1f ms per dialogue with embedding, %.1f ms without (embedding %.1f ms/text), peak RSS %.0f MB\n", cpu, cpu - emb, emb, rss / 1024;
}'
echo "  $EMBED_LINE"
cargo bench --quiet --bench dedup -- 100000 2>/dev/null | grep '^near-duplicate' | sed 's/^/  /'
