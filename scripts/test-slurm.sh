#!/usr/bin/env bash
# dgen on a real Slurm: a one-node cluster (munged, slurmctld and slurmd on 127.0.0.1, the
# node's real CPUs and memory) runs deploy/slurm/dgen-array.sbatch as an array of 3 shards
# against the mock server (which repeats some answers, so shards make duplicates of each
# other's dialogues), then `dgen merge` joins the shards and a top-up `dgen run` brings the
# merged store to N. Then one task is run again alone, as the sbatch file says a failed task is
# (`sbatch --array=I`, where Slurm tells the task its array has one task): once with its store
# (it goes on: nothing to do), once with its store gone (it plans and runs its own shard, not the
# whole plan), and the shards merge again to N. Checks every count on the way.
#
# Installs Debian's slurm-wlm and munge with apt-get when they are missing (needs root). Skips,
# loudly, only where the daemons cannot start here (no root, a container that forbids them);
# any other failure fails. Usage: scripts/test-slurm.sh [N] (default 12).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
N="${1:-12}"
SHARDS=3

say() { echo "test-slurm: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
skip() {
  say "################################################################"
  say "SKIPPED: the Slurm test did not run: $*"
  say "################################################################"
  exit 0
}

if [[ "$(id -u)" != 0 ]]; then
  skip "it needs root to install and start munged, slurmctld and slurmd"
fi
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
  || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

scripts/fetch-assets.sh >/dev/null
CACHE="$(scripts/fetch-assets.sh 2>/dev/null)"
cargo build --locked --quiet --bin dgen --bin dgen-mock-llm
DGEN="$ROOT/target/debug/dgen"

WORK="$(mktemp -d /tmp/dgen-slurm.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  local f pid
  # Only the daemons this script started, by the pids they wrote; each is waited for, so
  # nothing writes into the folder while it is removed.
  for f in "$WORK/slurmd.pid" "$WORK/slurmctld.pid" "$WORK/munge/munged.pid"; do
    [[ -s "$f" ]] && PIDS+=("$(cat "$f")")
  done
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  done
  if [[ "${KEEP:-0}" != 1 ]]; then rm -rf "$WORK"; else say "kept $WORK"; fi
}
trap cleanup EXIT

# munged on a socket of its own, so a munged the machine already runs is left alone.
MUNGE="$WORK/munge"
mkdir -p "$MUNGE"
KEY=/etc/munge/munge.key
if [[ ! -s "$KEY" ]]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of="$KEY" bs=1024 count=1 status=none
  chown munge:munge "$KEY" 2>/dev/null || true
  chmod 0400 "$KEY"
fi
chown munge:munge "$MUNGE" 2>/dev/null || true
chmod 0755 "$MUNGE"
start_munged() {
  if id munge >/dev/null 2>&1; then
    runuser -u munge -- munged --socket="$MUNGE/munge.sock" --pid-file="$MUNGE/munged.pid" \
      --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed" --key-file="$KEY"
  else
    munged --force --socket="$MUNGE/munge.sock" --pid-file="$MUNGE/munged.pid" \
      --log-file="$MUNGE/munged.log" --seed-file="$MUNGE/munged.seed" --key-file="$KEY"
  fi
}
if ! start_munged 2>"$WORK/munged.err"; then
  skip "munged does not start here: $(cat "$WORK/munged.err" "$MUNGE/munged.log" 2>/dev/null | tail -3)"
fi
if ! munge -S "$MUNGE/munge.sock" -n | unmunge -S "$MUNGE/munge.sock" >/dev/null 2>&1; then
  skip "munged started but does not answer on $MUNGE/munge.sock"
fi

# One node: this machine on 127.0.0.1, with the CPUs and memory slurmd finds.
HOST="$(hostname -s)"
NODE="$(slurmd -C | head -1 | sed -E "s/^NodeName=[^ ]+/NodeName=$HOST NodeAddr=127.0.0.1/")"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CONF="$WORK/slurm.conf"
mkdir -p "$WORK/state" "$WORK/spool" "$WORK/out"
cat >"$CONF" <<EOF
ClusterName=dgentest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmdTimeout=30
$NODE State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$CONF"
say "slurm.conf node: $NODE"
if ! slurmctld -f "$CONF" 2>"$WORK/slurmctld.err"; then
  skip "slurmctld does not start here: $(tail -3 "$WORK/slurmctld.err" "$WORK/slurmctld.log" 2>/dev/null)"
fi
if ! slurmd -f "$CONF" -N "$HOST" 2>"$WORK/slurmd.err"; then
  skip "slurmd does not start here: $(tail -3 "$WORK/slurmd.err" "$WORK/slurmd.log" 2>/dev/null)"
fi
state=""
for _ in $(seq 120); do
  state="$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)"
  [[ "$state" == idle* ]] && break
  sleep 0.5
done
if [[ "$state" != idle* ]]; then
  skip "the node did not come up (state '${state:-none}'): $(tail -3 "$WORK/slurmd.log" "$WORK/slurmctld.log" 2>/dev/null)"
fi
say "one-node Slurm up on $HOST ($(sinfo -h -o '%c CPUs, %m MB'))"

# The array runs one task at a time (%1), and the mock answers a dialogue call that comes 1.5 s
# or more after the previous one with the previous answer: each shard's first dialogue repeats
# the last one of the shard before, a duplicate no shard can see and the merge must drop. (A
# slow machine may also make a repeat inside a shard: its run rejects it and tries again.)
"$ROOT/target/debug/dgen-mock-llm" --repeat-after-idle-ms 1500 >"$WORK/url" &
PIDS+=($!)
for _ in $(seq 100); do [[ -s "$WORK/url" ]] && break; sleep 0.1; done
URL="$(cat "$WORK/url")"
[[ -n "$URL" ]] || fail "the mock server did not start"

started=$SECONDS
# --wait: sbatch returns when every task has ended, with the highest exit code among them.
# The node has few CPUs: one per task and little memory, whatever the script's defaults say.
submit() {
  local array="$1" name="$2"
  if ! sbatch --wait --array="$array" --cpus-per-task=1 --mem=1G \
    --output="$WORK/out/slurm-%A_%a.out" \
    --export=ALL,DGEN_SHARD_COUNT="$SHARDS",DGEN_TOTAL="$N",DGEN_SEED=7,DGEN_OUT_DIR="$WORK/out",DGEN_BIN="$DGEN",DGEN_CACHE_DIR="$CACHE",DGEN_DATASET="$ROOT/fixtures/multiwoz_hf",DGEN_PERSONAS="$ROOT/fixtures/personas_hf",DGEN_PLAN_ARGS="--min_turns 3 3 --max_turns 6 6",DGEN_RUN_ARGS="--base_url $URL --concurrency 1 --max_attempts 10 --retry_base_ms 20" \
    deploy/slurm/dgen-array.sbatch >"$WORK/$name.out"; then
    tail -n 20 "$WORK"/out/slurm-*.out >&2 || true
    fail "$name: the job failed ($(cat "$WORK/$name.out"))"
  fi
  sed -E 's/^Submitted batch job ([0-9]+).*/\1/' "$WORK/$name.out"
}
JOB="$(submit "0-$((SHARDS - 1))%1" sbatch)"
say "array of $SHARDS shards done in $((SECONDS - started)) s (job $JOB)"

shopt -s nullglob
stores=("$WORK"/out/shard-*.redb)
[[ ${#stores[@]} == "$SHARDS" ]] || fail "expected $SHARDS shard stores, found ${#stores[@]}: ${stores[*]}"
json() { python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
# Each store is its task's shard, I/K, with its items (the full plan's index % K == I) done.
check_shard() {
  local s="$1" i info shard items done_items
  i="$(basename "$s" .redb)"
  i="${i#shard-}"
  info="$("$DGEN" --store "$s" status --json | json '"%s/%s %d %d" % (s["shard"]["index"], s["shard"]["count"], s["total_items"], [x["count"] for x in s["states"] if x["state"] == "done"][0])')"
  read -r shard items done_items <<<"$info"
  say "$(basename "$s"): shard $shard, $done_items of $items items done"
  [[ "$shard" == "$i/$SHARDS" ]] || fail "$(basename "$s") holds shard $shard, not $i/$SHARDS"
  [[ "$items" == $(((N - i + SHARDS - 1) / SHARDS)) ]] || fail "$(basename "$s") holds $items items, not shard $i's"
  [[ "$done_items" == "$items" ]] || fail "$(basename "$s") did not finish its items"
  done_total=$((done_total + done_items))
}
done_total=0
for s in "${stores[@]}"; do check_shard "$s"; done
[[ "$done_total" == "$N" ]] || fail "the shards hold $done_total items, not $N"

"$DGEN" merge "${stores[@]}" --into "$WORK/all.redb" | tee "$WORK/merge.out" >&2
merged="$("$DGEN" --store "$WORK/all.redb" status --json | json '"%d %d %d" % (s["merged_shards"], s["total_items"], [x["count"] for x in s["states"] if x["state"] == "done"][0])')"
read -r merged_shards total kept <<<"$merged"
[[ "$merged_shards" == "$SHARDS" && "$total" == "$N" ]] || fail "merged store: $merged"
dropped=$((N - kept))
grep -q "$dropped cross-shard duplicates dropped ($dropped exact" "$WORK/merge.out" \
  || fail "the merge kept $kept of $N but did not report $dropped exact duplicates dropped"
[[ "$dropped" -ge $((SHARDS - 1)) ]] \
  || fail "the merge dropped $dropped duplicates; each shard after the first repeats one"

# Merging again changes nothing.
"$DGEN" merge "${stores[@]}" --into "$WORK/all.redb" >/dev/null
again="$("$DGEN" --store "$WORK/all.redb" status --json | json '[x["count"] for x in s["states"] if x["state"] == "done"][0]')"
[[ "$again" == "$kept" ]] || fail "a second merge changed the store ($kept, then $again dialogues)"

"$DGEN" --store "$WORK/all.redb" run --base_url "$URL" --concurrency 2 --max_attempts 10 \
  --retry_base_ms 20 --log_file "$WORK/topup.log" 2>/dev/null
final="$("$DGEN" --store "$WORK/all.redb" status --json | json '"%d %d" % ([x["count"] for x in s["states"] if x["state"] == "done"][0], s["run"]["dialogues"])')"
read -r final_done dialogues <<<"$final"
[[ "$final_done" == "$N" && "$dialogues" == "$N" ]] || fail "after the top-up: $final_done done, $dialogues dialogues; expected $N"
"$DGEN" --store "$WORK/all.redb" export --output_file "$WORK/all.json" --hash_file "$WORK/hashes.json" \
  --embedding_file "$WORK/all.npy" >/dev/null
unique="$(json 'len(set(s))' <"$WORK/hashes.json")"
[[ "$unique" == "$N" ]] || fail "the export holds $unique distinct hashes, not $N"
say "merge dropped $dropped cross-shard duplicates, top-up reached $N/$N"

# One task run again alone: Slurm sets SLURM_ARRAY_TASK_COUNT=1 and MIN=MAX=I for it. First a
# task whose store is whole: the same shard, nothing planned or generated again.
I=$((SHARDS - 1))
fingerprint() { "$DGEN" --store "$1" status --json | json 's["plan_fingerprint"]'; }
before="$(fingerprint "$WORK/out/shard-$I.redb")"
JOB="$(submit "$I" rerun-whole)"
log="$WORK/out/slurm-${JOB}_$I.out"
grep -q "already holds this plan" "$log" || fail "task $I run again planned again: $(tail -5 "$log")"
grep -Eq "all [0-9]+ items of .* are finished" "$log" || fail "task $I run again generated again: $(tail -5 "$log")"
[[ "$(fingerprint "$WORK/out/shard-$I.redb")" == "$before" ]] || fail "task $I run again changed its plan"
# Then a task whose store is gone (it failed before its first commit, its disk was lost): it
# plans and runs shard I/K, its items only, not the whole plan.
I=1
rm -f "$WORK/out/shard-$I.redb"
JOB="$(submit "$I" rerun-lost)"
grep -q "planning shard $I/$SHARDS" "$WORK/out/slurm-${JOB}_$I.out" \
  || fail "task $I run again did not plan shard $I/$SHARDS: $(tail -5 "$WORK/out/slurm-${JOB}_$I.out")"
done_total=0
for s in "${stores[@]}"; do check_shard "$s"; done
[[ "$done_total" == "$N" ]] || fail "after the task ran again the shards hold $done_total items, not $N"
"$DGEN" merge "${stores[@]}" --into "$WORK/again.redb" >"$WORK/merge-again.out" \
  || fail "the merge after the task ran again failed: $(cat "$WORK/merge-again.out")"
"$DGEN" --store "$WORK/again.redb" run --base_url "$URL" --concurrency 2 --max_attempts 10 \
  --retry_base_ms 20 --log_file "$WORK/topup-again.log" 2>/dev/null
again="$("$DGEN" --store "$WORK/again.redb" status --json | json '"%d %d %d" % (s["merged_shards"], s["total_items"], [x["count"] for x in s["states"] if x["state"] == "done"][0])')"
[[ "$again" == "$SHARDS $N $N" ]] || fail "merged after the task ran again: shards, items, done = $again; expected $SHARDS $N $N"

# The key: read on the node from DGEN_KEY_FILE, so it is not in the environment Slurm saves with
# the job (slurmctld's state folder here). A stub stands in for dgen and notes whether the task
# got the file's key. The control: a key passed in the job's environment is found there, so
# the scan can fail.
KEYS="$WORK/keys"
mkdir -p "$KEYS/out"
SECRET="sk-dgen-slurm-test-$RANDOM$RANDOM$RANDOM"
(umask 077 && echo "$SECRET" >"$KEYS/key")
cat >"$KEYS/dgen" <<'SH'
#!/bin/sh
case " $* " in *" run "*) ;; *) exit 0 ;; esac
if [ "${OPENAI_API_KEY:-}" = "$(tr -d '[:space:]' <"$KEYCHECK_FILE")" ]; then echo match; else echo mismatch; fi >"$KEYCHECK_OUT"
SH
chmod +x "$KEYS/dgen"
key_job() {
  env -u OPENAI_API_KEY -u OPENAI_KEY sbatch --wait --array=0 --cpus-per-task=1 --mem=100M \
    --output="$KEYS/slurm-%A_%a.out" \
    --export="ALL,DGEN_SHARD_COUNT=1,DGEN_TOTAL=1,DGEN_OUT_DIR=$KEYS/out,DGEN_BIN=$KEYS/dgen,DGEN_KEY_FILE=$KEYS/key,KEYCHECK_FILE=$KEYS/key,KEYCHECK_OUT=$KEYS/seen$1" \
    deploy/slurm/dgen-array.sbatch | sed -E 's/^Submitted batch job ([0-9]+).*/\1/'
}
JOB="$(key_job "")" || fail "the job with DGEN_KEY_FILE failed: $(cat "$KEYS"/slurm-*.out)"
[[ "$(cat "$KEYS/seen" 2>/dev/null)" == match ]] || fail "the task did not get the key of DGEN_KEY_FILE: $(cat "$KEYS"/slurm-*.out)"
if grep -rqF "$SECRET" "$WORK/state" "$WORK/spool" "$KEYS"/slurm-*.out; then
  fail "the key is in what Slurm saved of the job: $(grep -rlF "$SECRET" "$WORK/state" "$WORK/spool" "$KEYS"/slurm-*.out)"
fi
CONTROL="sk-dgen-slurm-control-$RANDOM$RANDOM$RANDOM"
JOB="$(key_job ",OPENAI_API_KEY=$CONTROL")" || fail "the control job failed"
grep -rqF "$CONTROL" "$WORK/state" \
  || fail "a key passed in the job's environment is not found in $WORK/state: the scan above proves nothing"
grep -q "came with the job's environment" "$KEYS/slurm-${JOB}_0.out" \
  || fail "the sbatch file did not warn of a key in the job's environment: $(cat "$KEYS/slurm-${JOB}_0.out")"
say "the key from DGEN_KEY_FILE reached the task and is not in Slurm's saved job state (one passed with --export is)"

say "passed: $SHARDS Slurm array tasks, merge dropped $dropped cross-shard duplicates, top-up reached $N/$N; task $((SHARDS - 1)) run again alone went on with its store, task 1 run again alone without its store planned shard 1/$SHARDS and the merge reached $N/$N again; the key stays out of the saved job; $((SECONDS - started)) s from sbatch to the end"
