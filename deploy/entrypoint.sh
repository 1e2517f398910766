#!/usr/bin/env bash
# One shard of a dgen plan on a cluster scheduler: plans this task's shard, then runs it.
#
# The shard comes from the scheduler: a Slurm job array's SLURM_ARRAY_TASK_ID or a Kubernetes
# Indexed Job's JOB_COMPLETION_INDEX is the index, DGEN_SHARD_COUNT the number of shards (the
# array's size, the Job's completions: neither scheduler tells a task that; a Slurm task run
# again alone is told its array has one task). Every task plans the
# same full plan from the same inputs and seed and keeps its own items, so the tasks share
# nothing but the inputs; `dgen merge` joins their stores afterwards (README, "Running on a
# cluster"). A task started again (requeued, a Pod retried) finds its store and goes on.
#
# Settings (environment):
#   DGEN_TOTAL         required: items in the full plan
#   DGEN_SEED          the plan's seed (default 42); the same for every task
#   DGEN_DATASET       base dialogues (dgen plan --dataset); DGEN_PERSONAS: --persona_dataset
#   DGEN_SHARD_COUNT   the number of shards; required on Kubernetes and for a Slurm task run
#                      again alone (dgen reads it too)
#   DGEN_OUT_DIR       where the shard stores and logs go (default: the working directory);
#                      shared storage the merge step can read
#   DGEN_PLAN_ARGS     more `dgen plan` flags, e.g. "--min_turns 5 8"
#   DGEN_RUN_ARGS      more `dgen run` flags, e.g. "--model gpt-4o-mini --concurrency 32"
#   DGEN_BIN           the dgen binary (default: dgen on PATH)
#   OPENAI_API_KEY, OPENAI_BASE_URL   read by `dgen run` itself
set -euo pipefail

say() { echo "dgen-entrypoint: $*" >&2; }

: "${DGEN_TOTAL:?set DGEN_TOTAL to the number of items in the full plan}"
BIN="${DGEN_BIN:-dgen}"
OUT="${DGEN_OUT_DIR:-.}"

if [[ -n "${SLURM_ARRAY_TASK_ID:-}" ]]; then
  TASK="$SLURM_ARRAY_TASK_ID"
elif [[ -n "${JOB_COMPLETION_INDEX:-}" ]]; then
  TASK="$JOB_COMPLETION_INDEX"
  : "${DGEN_SHARD_COUNT:?set DGEN_SHARD_COUNT to the completions of the Indexed Job}"
else
  say "neither SLURM_ARRAY_TASK_ID (a Slurm job array) nor JOB_COMPLETION_INDEX (a Kubernetes Indexed Job) is set; this script runs one task of either"
  exit 2
fi

mkdir -p "$OUT"
STORE="$OUT/shard-$TASK.redb"
plan=(--total_generations "$DGEN_TOTAL" --seed "${DGEN_SEED:-42}")
[[ -n "${DGEN_SHARD_COUNT:-}" ]] && plan+=(--shard_count "$DGEN_SHARD_COUNT")
[[ -n "${DGEN_DATASET:-}" ]] && plan+=(--dataset "$DGEN_DATASET")
[[ -n "${DGEN_PERSONAS:-}" ]] && plan+=(--persona_dataset "$DGEN_PERSONAS")
# shellcheck disable=SC2206 # the extra flags are meant to be split into words
plan+=(${DGEN_PLAN_ARGS:-})
# shellcheck disable=SC2206
run=(run --log_file "$OUT/shard-$TASK.log" ${DGEN_RUN_ARGS:-})

say "task $TASK on $(hostname): planning into $STORE"
# The same plan again is a no-op, so a restarted task goes straight on with its run.
"$BIN" --store "$STORE" plan "${plan[@]}"
# exec: the scheduler's SIGTERM (time limit, preemption) reaches dgen, which lets the requests
# in flight finish and keeps everything committed for the next start.
exec "$BIN" --store "$STORE" "${run[@]}"
