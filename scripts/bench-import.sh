#!/usr/bin/env bash
# Benchmark `dgen import`: a generated records file of about MB megabytes (default 200; 20-turn
# dialogues of the original script's shape, about 4 KB each) with its embeddings as NPY, imported
# into a fresh store. Reports the file sizes, the time and the peak RSS.
# Usage: scripts/bench-import.sh [MB]   (DGEN_BIN: a dgen already built, instead of the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
MB="${1:-200}"
source scripts/bench-lib.sh
planned_store
python3 - "$MB" <<'PY'
import json, struct, sys
target = int(sys.argv[1]) * 1_000_000
n = 0
size = 0
with open("records.json", "w") as out:
    out.write("[\n")
    while size < target:
        turns = [{"utterance": f"Dialogue {n}, turn {t}: I would like to book a table for four near the river, please.",
                  "intent": "book_restaurant",
                  "assistant_response": f"Certainly, booking {n}-{t} is confirmed for four people at seven tonight by the river."}
                 for t in range(20)]
        record = {"dialogue_id": f"bench-{n}", "services": ["restaurant"], "turns": turns,
                  "time_slot": [18, 22, "Evening"], "regions": ["Cambridge"],
                  "resolution_status": "Resolved", "scenario_category": "table_booking"}
        text = ("" if n == 0 else ",\n") + json.dumps(record)
        out.write(text)
        size += len(text)
        n += 1
    out.write("\n]\n")
dim = 384
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (n, dim)
pad = 64 - (10 + len(header) + 1) % 64
header = header + " " * pad + "\n"
with open("embeddings.npy", "wb") as npy:
    npy.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    zeros = [0.0] * dim
    for i in range(n):
        row = list(zeros)
        row[i % dim] = 1.0
        npy.write(struct.pack("<%df" % dim, *row))
print(n, file=open("count", "w"))
PY
N="$(cat count)"
/usr/bin/time -f "%e %M" -o time.txt "$BIN" import --output_file records.json \
  --embedding_file embeddings.npy >/dev/null
read -r WALL RSS_KB < time.txt
mb() { awk -v b="$1" 'BEGIN{printf "%.0f MB", b/1e6}'; }
echo "import of $N dialogues (records.json $(mb "$(stat -c %s records.json)"), embeddings.npy $(mb "$(stat -c %s embeddings.npy)")):"
echo "  ${WALL} s, peak RSS $(awk -v k="$RSS_KB" 'BEGIN{printf "%.0f", k/1024}') MB, store $(mb "$(stat -c %s dgen.redb)")"
