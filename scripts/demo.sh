#!/usr/bin/env bash
# The main job end to end on the bundled sample data: build dgen, plan on the fixtures, show
# the plan's status and export it. Everything lands in ./demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh >/dev/null
cargo build --release --locked --quiet
DGEN="$PWD/target/release/dgen"
mkdir -p demo
cd demo
STORE=demo.redb
"$DGEN" --store "$STORE" plan --total_generations 5 --seed 42 \
  --dataset ../fixtures/multiwoz_hf --persona_dataset ../fixtures/personas_hf
"$DGEN" --store "$STORE" status
"$DGEN" --store "$STORE" export --plan_file plan.jsonl
echo
echo "demo: store $PWD/$STORE, plan $PWD/plan.jsonl; first work item:"
head -n 1 plan.jsonl
