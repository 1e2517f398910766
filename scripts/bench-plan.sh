#!/usr/bin/env bash
# Benchmark: plan 1,000,000 work items on the real MultiWOZ data in ../shared/data (falls back
# to the bundled fixtures when it is absent). Reports wall time, peak RSS and store size.
# Usage: scripts/bench-plan.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
cargo build --release --locked --quiet
BIN="$PWD/target/release/dgen"
DATA="../shared/data"
if [[ -f "$DATA/multiwoz22_dev/dialogues.json" ]]; then
  DATASET=(--dataset "$DATA/multiwoz22_dev_hf" --split validation --persona_dataset "$DATA/personas_spc_hf")
  WHAT="real MultiWOZ 2.2 dev (1,000 dialogues) + 1,868 personas"
else
  DATASET=(--dataset fixtures/multiwoz_hf --persona_dataset fixtures/personas_hf)
  WHAT="bundled fixtures (../shared/data absent)"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
if ! command -v /usr/bin/time >/dev/null; then
  echo "bench-plan: needs GNU time (apt-get install time)" >&2
  exit 1
fi
/usr/bin/time -f "%e %M" -o "$WORK/time" \
  "$BIN" --store "$WORK/bench.redb" plan --total_generations "$N" "${DATASET[@]}" >/dev/null 2>"$WORK/log"
read -r WALL RSS_KB < "$WORK/time"
SIZE=$(stat -c %s "$WORK/bench.redb")
printf 'plan N=%s on %s\n  wall %.2f s, peak RSS %.0f MB, store %.0f MB\n' \
  "$N" "$WHAT" "$WALL" "$(awk "BEGIN{print $RSS_KB/1024}")" "$(awk "BEGIN{print $SIZE/1048576}")"
grep -E "drew|committed" "$WORK/log" | sed 's/^.*INFO /  /'
