#!/usr/bin/env bash
# Benchmark `dgen export --hf`: a store with N synthetic dialogues (default 100,000) written
# directly by `dgen bench-fill` (no LLM), exported as a Hugging Face dataset folder with three
# splits, Snappy then Zstd. Reports wall time, peak RSS and the folder's size.
# Usage: scripts/bench-hf.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
source scripts/bench-lib.sh
filled_store "$N"
mb() { awk -v b="$1" 'BEGIN{printf "%.0f MB", b/1048576}'; }
echo "export --hf of $N dialogues (store $(mb "$(stat -c %s dgen.redb)")), splits train=0.9,validation=0.05,test=0.05:"
for codec in snappy zstd; do
  /usr/bin/time -f "%e %M" -o time.txt "$BIN" export --hf "hf-$codec" --compression "$codec" \
    --splits train=0.9,validation=0.05,test=0.05 >/dev/null
  read -r WALL RSS_KB < time.txt
  SIZE=$(du -sb "hf-$codec" | cut -f1)
  FILES=$(find "hf-$codec/data" -name '*.parquet' | wc -l)
  echo "  $codec: ${WALL} s, peak RSS $(awk -v k="$RSS_KB" 'BEGIN{printf "%.0f", k/1024}') MB, $(mb "$SIZE") in $FILES Parquet files"
done
/usr/bin/time -f "%e %M" -o time.txt "$BIN" export --hf hf-noemb --no_embeddings >/dev/null
read -r WALL RSS_KB < time.txt
echo "  snappy, --no_embeddings: ${WALL} s, peak RSS $(awk -v k="$RSS_KB" 'BEGIN{printf "%.0f", k/1024}') MB, $(mb "$(du -sb hf-noemb | cut -f1)")"
