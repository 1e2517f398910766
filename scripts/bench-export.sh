#!/usr/bin/env bash
# Benchmark `dgen export`: a store with N synthetic dialogues (default 100,000) written directly
# by `dgen bench-fill` (no LLM), then the three documented files. Reports time, peak RSS, sizes.
# Usage: scripts/bench-export.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
source scripts/bench-lib.sh
filled_store "$N"
/usr/bin/time -f "%e %M" -o time.txt "$BIN" export --jsonl dialogues.jsonl >/dev/null
read -r WALL RSS_KB < time.txt
/usr/bin/time -f "%e %M" -o time3.txt "$BIN" export >/dev/null
read -r WALL3 RSS3_KB < time3.txt
mb() { awk -v b="$1" 'BEGIN{printf "%.0f MB", b/1048576}'; }
echo "export of $N dialogues (store $(mb "$(stat -c %s dgen.redb)")):"
echo "  three files: ${WALL3} s, peak RSS $(awk -v k="$RSS3_KB" 'BEGIN{printf "%.0f", k/1024}') MB"
echo "  three files + JSONL: ${WALL} s, peak RSS $(awk -v k="$RSS_KB" 'BEGIN{printf "%.0f", k/1024}') MB"
echo "  sizes: json $(mb "$(stat -c %s generated_dialogues.json)"), hashes $(mb "$(stat -c %s dialogue_hashes.json)"), npy $(mb "$(stat -c %s dialogue_embeddings.npy)"), jsonl $(mb "$(stat -c %s dialogues.jsonl)")"
