#!/usr/bin/env bash
# The Kubernetes deployment without a cluster: deploy/k8s/*.yaml checked against the Job schema
# of deploy/k8s/job.schema.json (and broken copies of them refused, so the check can fail), then
# deploy/entrypoint.sh run for every completion index as the Indexed Job's Pods run it — with
# JOB_COMPLETION_INDEX set and the manifest's environment, against the mock server — a Pod
# restart, and the merge Job's command on the shard stores it left. Needs python3 with pyyaml
# and jsonschema (installed from PyPI when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

say() { echo "test-k8s: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

if ! python3 -c 'import yaml, jsonschema' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check pyyaml jsonschema >/dev/null 2>&1 \
    || fail "pyyaml and jsonschema could not be installed (python3 -m pip install pyyaml jsonschema)"
fi
CHECK=(python3 scripts/check-k8s.py deploy/k8s/job.schema.json deploy/Dockerfile)
INDEXED=deploy/k8s/dgen-indexed-job.yaml
MERGE=deploy/k8s/dgen-merge-job.yaml

"${CHECK[@]}" "$INDEXED" "$MERGE" >&2 || fail "the manifests do not pass the schema check"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

# Broken copies must be refused, each for its reason.
broken() {
  local name="$1" expected="$2" edit="$3"
  python3 - "$INDEXED" "$WORK/$name.yaml" "$edit" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
spec, pod = doc["spec"], doc["spec"]["template"]["spec"]
env = pod["containers"][0]["env"]
exec(sys.argv[3])
yaml.safe_dump(doc, open(sys.argv[2], "w"))
PY
  if "${CHECK[@]}" "$WORK/$name.yaml" 2>"$WORK/$name.err" >/dev/null; then
    fail "the check accepted a manifest with $name"
  fi
  grep -qF "$expected" "$WORK/$name.err" || fail "$name: expected '$expected', got: $(cat "$WORK/$name.err")"
}
broken misspelt-field "Additional properties are not allowed ('completionMod' was unexpected)" \
  'spec["completionMod"] = spec.pop("completionMode")'
broken unquoted-value "is not of type 'string'" \
  'next(e for e in env if e["name"] == "DGEN_TOTAL")["value"] = 10000'
broken restart-always "'Always' is not one of" 'pod["restartPolicy"] = "Always"'
broken shard-count "DGEN_SHARD_COUNT is '4' but completions is 5" 'spec["completions"] = 5'
broken no-volume "mounts volume 'data', which the Pod does not define" 'pod["volumes"] = []'
# What clusters enforce: retries per index, no replacement beside a failed Pod, the budget's
# exit code final, the restricted Pod Security profile.
ctr='pod["containers"][0]'
broken no-per-index-limit "'backoffLimitPerIndex' is a required property" 'del spec["backoffLimitPerIndex"]'
broken per-index-limit-text "'3' is not of type 'integer'" 'spec["backoffLimitPerIndex"] = "3"'
broken no-replacement-policy "'podReplacementPolicy' is a required property" 'del spec["podReplacementPolicy"]'
broken replace-while-terminating "'Failed' was expected" 'spec["podReplacementPolicy"] = "TerminatingOrFailed"'
broken no-failure-policy "'podFailurePolicy' is a required property" 'del spec["podFailurePolicy"]'
broken restart-on-failure "'Never' was expected" 'pod["restartPolicy"] = "OnFailure"'
broken budget-retried "podFailurePolicy/rules" 'spec["podFailurePolicy"]["rules"][0]["action"] = "Count"'
broken budget-counted-first "exit code 3 (dgen run stopped at --max_cost) meets the rule Count first" \
  'spec["podFailurePolicy"]["rules"].insert(0, {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}})'
broken exit-zero-in "0 is less than the minimum of 1" 'spec["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] = [0, 3]'
broken root "True was expected" 'pod["securityContext"]["runAsNonRoot"] = False'
broken uid-0 "0 is less than the minimum of 1" 'pod["securityContext"]["runAsUser"] = 0'
broken seccomp-unconfined "'Unconfined' is not one of ['RuntimeDefault', 'Localhost']" \
  'pod["securityContext"]["seccompProfile"]["type"] = "Unconfined"'
broken no-pod-security "'securityContext' is a required property" 'del pod["securityContext"]'
broken privilege-escalation "False was expected" "$ctr"'["securityContext"]["allowPrivilegeEscalation"] = True'
broken capabilities-kept "containers/0/securityContext/capabilities/drop" "$ctr"'["securityContext"]["capabilities"]["drop"] = ["NET_RAW"]'
broken capability-added "'SYS_ADMIN' is not one of ['NET_BIND_SERVICE']" "$ctr"'["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]'
broken no-container-security "'securityContext' is a required property" "del $ctr"'["securityContext"]'
# A base image by tag alone.
sed -E 's/@sha256:[0-9a-f]{64}//' deploy/Dockerfile >"$WORK/Dockerfile.tag"
if python3 scripts/check-k8s.py deploy/k8s/job.schema.json "$WORK/Dockerfile.tag" "$INDEXED" 2>"$WORK/tag.err" >/dev/null; then
  fail "the check accepted a Dockerfile whose base images are not pinned"
fi
grep -q "FROM debian:bookworm-slim is not pinned by digest" "$WORK/tag.err" || fail "unpinned: $(cat "$WORK/tag.err")"
say "schema check: both manifests valid, 22 broken copies and an unpinned Dockerfile refused"

# The environment the manifest gives the Pods; paths and the plan's size replaced by local ones.
manifest_env() {
  python3 - "$INDEXED" "$1" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
env = {e["name"]: e.get("value") for e in doc["spec"]["template"]["spec"]["containers"][0]["env"]}
print(env[sys.argv[2]])
PY
}
K="$(manifest_env DGEN_SHARD_COUNT)"
SEED="$(manifest_env DGEN_SEED)"
RUN_ARGS="$(manifest_env DGEN_RUN_ARGS)"
N=10

scripts/fetch-assets.sh >/dev/null
cargo build --locked --quiet --bin dgen --bin dgen-mock-llm
DGEN="$ROOT/target/debug/dgen"
"$ROOT/target/debug/dgen-mock-llm" >"$WORK/url" &
PIDS+=($!)
for _ in $(seq 100); do [[ -s "$WORK/url" ]] && break; sleep 0.1; done
URL="$(cat "$WORK/url")"
[[ -n "$URL" ]] || fail "the mock server did not start"

OUT="$WORK/data/run1"
pod() {
  # A Pod's environment: nothing from this shell but PATH and HOME.
  env -i PATH="$PATH" HOME="$HOME" DGEN_CACHE_DIR="${DGEN_CACHE_DIR:-$HOME/.cache/dgen}" \
    JOB_COMPLETION_INDEX="$1" DGEN_SHARD_COUNT="${2-$K}" DGEN_TOTAL="$N" DGEN_SEED="$SEED" \
    DGEN_DATASET="$ROOT/fixtures/multiwoz_hf" DGEN_PERSONAS="$ROOT/fixtures/personas_hf" \
    DGEN_OUT_DIR="$OUT" DGEN_RUN_ARGS="$RUN_ARGS" DGEN_BIN="$DGEN" OPENAI_BASE_URL="$URL" \
    deploy/entrypoint.sh
}
json() { python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }

if pod 1 "" >"$WORK/nocount.out" 2>&1; then
  fail "the entrypoint ran with JOB_COMPLETION_INDEX but no DGEN_SHARD_COUNT"
fi
grep -q "set DGEN_SHARD_COUNT" "$WORK/nocount.out" || fail "unexpected message: $(cat "$WORK/nocount.out")"

for i in $(seq 0 $((K - 1))); do
  pod "$i" >"$WORK/pod-$i.out" 2>&1 || fail "index $i: $(tail -5 "$WORK/pod-$i.out")"
  store="$OUT/shard-$i.redb"
  want=$(( (N - i + K - 1) / K ))
  got="$("$DGEN" --store "$store" status --json | json '"%s/%s %d %d" % (s["shard"]["index"], s["shard"]["count"], s["total_items"], [x["count"] for x in s["states"] if x["state"] == "done"][0])')"
  [[ "$got" == "$i/$K $want $want" ]] || fail "index $i: shard, items, done = $got; expected $i/$K $want $want"
  "$DGEN" --store "$store" export --plan_file "$WORK/plan-$i.jsonl" >/dev/null
  bad="$(python3 -c "import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)['index'] % $K != $i))" "$WORK/plan-$i.jsonl")"
  [[ "$bad" == 0 ]] || fail "index $i planned $bad items of other shards"
done
say "entrypoint: $K indexes planned and ran their shards of $N items"

# A Pod started again with its index goes on with its store: nothing planned or generated twice.
pod 2 >"$WORK/restart.out" 2>&1 || fail "restart: $(tail -5 "$WORK/restart.out")"
grep -q "already holds this plan" "$WORK/restart.out" || fail "the restarted Pod planned again: $(cat "$WORK/restart.out")"
grep -q "nothing to do" "$WORK/restart.out" || fail "the restarted Pod generated again: $(cat "$WORK/restart.out")"

# The merge Job's command, on the stores the Pods left.
MERGE_CMD="$(python3 - "$MERGE" <<'PY'
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["containers"][0]
print(c["args"][0])
PY
)"
MERGE_CMD="${MERGE_CMD//\/data/$WORK/data}"
env -i PATH="$ROOT/target/debug:$PATH" HOME="$HOME" DGEN_CACHE_DIR="${DGEN_CACHE_DIR:-$HOME/.cache/dgen}" \
  DGEN_RUN_ARGS="$RUN_ARGS --base_url $URL" sh -c "$MERGE_CMD" >"$WORK/merge.out" 2>&1 \
  || fail "the merge Job's command failed: $(tail -5 "$WORK/merge.out")"

# The merge Job's shell is PID 1, which ignores a SIGTERM it does not trap: it must hand the
# signal to the merge and end with it, and not start the top-up run. A stub dgen stands in
# for a long merge and notes the signal that ended it (here the shell is not PID 1, so a
# shell that does not forward dies of the signal and leaves the merge running).
STUB="$WORK/stub"
MARKS="$WORK/marks"
mkdir -p "$STUB"
# stub_merge CODE: the stub dgen; its merge ends with CODE on SIGTERM (143: stopped by it; 0:
# it was finishing anyway). Then the merge Job's shell runs against it and gets a SIGTERM;
# sets rc to the shell's exit code.
stub_merge() {
  rm -rf "$MARKS"; mkdir -p "$MARKS"
  cat >"$STUB/dgen" <<SH
#!/bin/sh
[ "\$1" = merge ] || { echo run >>"\$MARKS/ran"; exit 0; }
trap 'echo TERM >"\$MARKS/merge-signal"; exit $1' TERM
echo \$\$ >"\$MARKS/merge-pid"
i=0
while [ \$i -lt 300 ]; do sleep 0.1; i=\$((i + 1)); done
echo none >"\$MARKS/merge-signal"
SH
  chmod +x "$STUB/dgen"
  env -i PATH="$STUB:$PATH" MARKS="$MARKS" DGEN_RUN_ARGS="" sh -c "$MERGE_CMD" &
  local shell=$!
  for _ in $(seq 100); do [[ -s "$MARKS/merge-pid" ]] && break; sleep 0.1; done
  [[ -s "$MARKS/merge-pid" ]] || fail "the merge Job's command did not start the (stub) merge"
  PIDS+=("$(cat "$MARKS/merge-pid")")
  kill -TERM "$shell"
  rc=0
  wait "$shell" || rc=$?
  [[ "$(cat "$MARKS/merge-signal" 2>/dev/null)" == TERM ]] \
    || fail "SIGTERM to the merge Job's shell did not reach the merge (the shell exited $rc)"
  [[ ! -e "$MARKS/ran" ]] || fail "the merge Job's shell started the top-up run after SIGTERM (merge exit $1)"
  [[ "$rc" == 143 ]] || fail "the merge Job's shell exited $rc after SIGTERM (merge exit $1), not 143"
}
stub_merge 143
say "merge Job: SIGTERM reached the merge, the shell ended with it (143)"
# A merge that finishes successfully as the SIGTERM comes (it was writing its last shard):
# the shell still must not start the top-up run, which the kubelet would kill mid-call.
stub_merge 0
say "merge Job: a merge that succeeds as SIGTERM comes is not followed by the top-up (143)"

final="$("$DGEN" --store "$OUT/all.redb" status --json | json '"%d %d" % (s["merged_shards"], [x["count"] for x in s["states"] if x["state"] == "done"][0])')"
[[ "$final" == "$K $N" ]] || fail "merged store: shards, done = $final; expected $K $N"
say "passed: manifests valid, entrypoint planned shard i/$K for each JOB_COMPLETION_INDEX, merge Job reached $N/$N"
