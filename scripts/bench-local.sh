#!/usr/bin/env bash
# Quality and speed of the embedded local model (SmolLM2-135M-Instruct via llama-server) on N
# dialogues (default 30) planned on the bundled fixtures, one attempt each so every answer counts.
# Reports tokens/s, seconds per dialogue, and: share with valid structure, share within the turn
# bounds, share whose last turn matches the resolution status (keyword heuristic below), and
# the duplicate rate; and the share of parsed answers failing each quality check (all checks
# set to flag for the benchmark, so that every answer is measured by every check).
# `annotated` plans with --annotate (2-4 turns: the labels make answers ~3x longer) and adds
# the label checks, all flagging, and the shares grounded / goal realized (docs/annotated.md).
# Usage: scripts/bench-local.sh [N] [json|tags|annotated]; DGEN_BIN=path uses that dgen instead of building
# a release one (the shares do not depend on the build; dgen's own speed does).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-30}"
MODE="${2:-json}"
scripts/fetch-assets.sh >/dev/null
scripts/setup-local-model.sh >/dev/null
if [[ -n "${DGEN_BIN:-}" ]]; then
  BIN="$(realpath "$DGEN_BIN")"
else
  cargo build --release --locked --quiet --bin dgen
  BIN="$PWD/target/release/dgen"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
CHECKS="copied_example=flag,placeholder=flag,repetitive=flag,outcome_mismatch=flag,off_topic=flag,copied_reference=flag"
CHECKS="$CHECKS,short_utterances=flag,repeated_reply=flag,intent_labels=flag"
if [[ "$MODE" == annotated ]]; then
  PLAN=(--annotate --min_turns 2 3 --max_turns 3 4)
  # An annotated answer is ~3x a plain one: on 2 cores it can take longer than the default
  # 120 s timeout.
  RUN=(--request_timeout 900)
  CHECKS="$CHECKS,unknown_label=flag,categorical_value=flag,ungrounded=flag,dropped_slot=flag"
  CHECKS="$CHECKS,goal_unrealized=flag,invalid_call=flag,outcome_calls=flag"
else
  PLAN=(--min_turns 3 5 --max_turns 5 8)
  RUN=(--structured "$MODE")
fi
"$BIN" plan --total_generations "$N" --dataset "$OLDPWD/fixtures/multiwoz_hf" \
  --persona_dataset "$OLDPWD/fixtures/personas_hf" "${PLAN[@]}" >/dev/null 2>&1
start=$(date +%s.%N)
"$BIN" run --local "${RUN[@]}" --max_attempts 1 --max_consecutive_failures 1000 \
  --checks "$CHECKS" >/dev/null 2>run.log || true
end=$(date +%s.%N)
"$BIN" export >/dev/null || true
"$BIN" status --json > status.json
python3 - "$N" "$MODE" "$start" "$end" <<'PY'
import json, re, sys
n, mode, start, end = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
s = json.load(open("status.json"))
run = s["run"]
rej = run["rejections"]
wall = end - start
structure = ("empty_response", "no_turns", "bad_structure", "empty_field", "unclosed_tag",
             "nested_tag", "invalid_json", "schema_violation", "truncated")
bad_structure = sum(rej.get(k, 0) for k in structure)
bad_bounds = rej.get("turn_count", 0)
dups = rej.get("duplicate_exact", 0) + rej.get("duplicate_semantic", 0)
api = rej.get("api_error", 0) + rej.get("empty_scenario", 0)
try:
    dialogues = json.load(open("generated_dialogues.json"))
except FileNotFoundError:
    dialogues = []
# Heuristic: the last assistant turn names the outcome the item asked for.
cues = {
    "Resolved": r"confirm|booked|done|resolved|all set|taken care|reserved|arranged|processed|you're welcome|glad",
    "Failed": r"sorry|unfortunately|unable|cannot|can't|not possible|no longer|regret",
    "Escalated": r"escalat|supervisor|manager|specialist|team|transfer|human|colleague|follow up|get back",
}
match = sum(1 for d in dialogues
            if re.search(cues.get(d["resolution_status"], "$^"), d["turns"][-1]["assistant_response"], re.I))
valid = n - bad_structure - api
print(f"local model, {mode} mode, {n} dialogues, one attempt each:")
print(f"  {wall:.0f} s wall, {wall / n:.1f} s per dialogue, {run['completion_tokens'] / wall:.1f} completion tokens/s "
      f"({run['prompt_tokens']} prompt + {run['completion_tokens']} completion tokens, {run['calls']} calls)")
print(f"  valid structure {valid}/{n - api} = {100 * valid / max(n - api, 1):.0f}%, "
      f"within turn bounds {valid - bad_bounds}/{valid} = {100 * (valid - bad_bounds) / max(valid, 1):.0f}%, "
      f"duplicates {dups}/{n} = {100 * dups / n:.0f}%, api errors {api}")
print(f"  last turn matches the resolution status: {match}/{len(dialogues)} accepted = {100 * match / max(len(dialogues), 1):.0f}%")
print(f"  accepted {len(dialogues)}/{n}; rejections {json.dumps(rej)}")
flagged = run.get("checks", {})
checked = len(dialogues)
shares = ", ".join(f"{c} {flagged.get(c, 0)}/{checked} = {100 * flagged.get(c, 0) / max(checked, 1):.0f}%"
                   for c in ("copied_example", "placeholder", "repetitive", "outcome_mismatch",
                             "off_topic", "copied_reference", "short_utterances", "repeated_reply",
                             "intent_labels"))
print(f"  quality checks (of the accepted, all checks flagging): {shares}")
# What the default actions would have kept: answers no rejecting check (assets/quality.json's
# "reject" actions) found anything in.
reject = {"copied_example", "placeholder", "repetitive", "short_utterances", "repeated_reply"}
kept = [d for d in dialogues if not reject & {c["check"] for c in d["quality"]["checks"]}]
kept_demo = [d for d in dialogues if not (reject - {"repetitive"}) & {c["check"] for c in d["quality"]["checks"]}]
print(f"  would pass the rejecting checks: {len(kept)}/{checked} with the defaults, "
      f"{len(kept_demo)}/{checked} with the demo's (repetitive flagged)")
if mode == "annotated":
    labels = [d["annotation"].get("labels") or {} for d in dialogues]
    grounded = sum(1 for l in labels if l.get("grounded"))
    realized = sum(1 for l in labels if l.get("goal_realized"))
    both = sum(1 for l in labels if l.get("grounded") and l.get("goal_realized"))
    print(f"  labels (of the accepted): grounded {grounded}/{checked} = {100 * grounded / max(checked, 1):.0f}%, "
          f"goal realized {realized}/{checked} = {100 * realized / max(checked, 1):.0f}%, both {both}/{checked}")
    names = ("unknown_label", "categorical_value", "ungrounded", "dropped_slot", "goal_unrealized",
             "invalid_call", "outcome_calls")
    print("  label checks (of the accepted, all flagging): " + ", ".join(
        f"{c} {flagged.get(c, 0)}/{checked} = {100 * flagged.get(c, 0) / max(checked, 1):.0f}%" for c in names))
    label_reject = reject | {"unknown_label", "categorical_value", "ungrounded", "dropped_slot",
                             "invalid_call", "outcome_calls"}
    kept_labels = [d for d in dialogues if not label_reject & {c["check"] for c in d["quality"]["checks"]}]
    print(f"  would pass every rejecting check at the default actions (text and labels): {len(kept_labels)}/{checked}")
PY
