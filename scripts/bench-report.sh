#!/usr/bin/env bash
# Benchmark `dgen report`: a store with N synthetic dialogues (default 100,000) written directly
# by `dgen bench-fill` (no LLM), then report.html and report.json. Reports wall time, peak RSS
# and sizes; `dgen status --json` on the same store for comparison.
# Targets (issue 9): at 100,000 dialogues <= 15 s, <= 400 MB peak RSS, report.html <= 10 MB.
# Usage: scripts/bench-report.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-100000}"
source scripts/bench-lib.sh
filled_store "$N"
/usr/bin/time -f "%e %M" -o time.txt "$BIN" report >/dev/null
read -r WALL RSS_KB < time.txt
/usr/bin/time -f "%e %M" -o status-time.txt "$BIN" status --json >/dev/null
read -r SWALL SRSS_KB < status-time.txt
mb() { awk -v b="$1" 'BEGIN{printf "%.1f MB", b/1048576}'; }
echo "report of $N dialogues (store $(mb "$(stat -c %s dgen.redb)")):"
echo "  report: ${WALL} s, peak RSS $(awk -v k="$RSS_KB" 'BEGIN{printf "%.0f", k/1024}') MB (targets: 15 s, 400 MB)"
echo "  sizes: report.html $(mb "$(stat -c %s report.html)") (target: 10 MB), report.json $(mb "$(stat -c %s report.json)")"
echo "  status --json on the same store: ${SWALL} s, peak RSS $(awk -v k="$SRSS_KB" 'BEGIN{printf "%.0f", k/1024}') MB"
