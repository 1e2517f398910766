#!/usr/bin/env bash
# Does the LLM judge tell real dialogues from broken copies? A seeded sample of N real MultiWOZ
# dialogues (4 to 8 turns) is judged as it is and in four corrupted forms — turns shuffled,
# planned outcome swapped, truncated to two turns, the user's utterances copied over the
# assistant's — and for each corruption the script prints how often the original scored
# higher, the same (ties) or lower, by the overall score and by the sum of all eight scores.
#
# Usage: scripts/judge-discrimination.sh [--mock | --local | JUDGE FLAGS...] [--sample N] [--seed S] [--json]
#   --mock    the bundled mock server (no model: shows the script works end to end)
#   --local   the local model from scripts/setup-local-model.sh (llama-server started by dgen)
#   otherwise the flags of `dgen judge` name the judge: --judge_base_url URL --judge_model M
#   (the key from OPENAI_API_KEY, as for dgen run).
# DATASET overrides the dialogues (default ../shared/data/multiwoz22_dev/dialogues.json).
set -euo pipefail
cd "$(dirname "$0")/.."
DATASET="${DATASET:-../shared/data/multiwoz22_dev/dialogues.json}"
if [[ ! -e "$DATASET" ]]; then
  echo "judge-discrimination.sh: no dialogues at $DATASET; set DATASET to a MultiWOZ file or folder" >&2
  exit 1
fi
cargo build --locked --quiet --bin dgen --bin dgen-mock-llm
BIN="$PWD/target/debug/dgen"
ARGS=()
MOCK_PID=""
trap '[[ -n "$MOCK_PID" ]] && kill "$MOCK_PID" 2>/dev/null; true' EXIT
for arg in "$@"; do
  case "$arg" in
    --mock)
      OUT="$(mktemp)"
      target/debug/dgen-mock-llm >"$OUT" &
      MOCK_PID=$!
      for _ in $(seq 100); do [[ -s "$OUT" ]] && break; sleep 0.05; done
      ARGS+=(--judge_base_url "$(head -1 "$OUT")" --judge_model mock)
      rm -f "$OUT"
      ;;
    --local)
      scripts/setup-local-model.sh >/dev/null
      ARGS+=(--local)
      ;;
    *) ARGS+=("$arg") ;;
  esac
done
start=$(date +%s)
"$BIN" judge-discrimination --dataset "$DATASET" --split dev "${ARGS[@]}"
echo "wall time: $(( $(date +%s) - start )) s" >&2
