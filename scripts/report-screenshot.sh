#!/usr/bin/env bash
# Renders `dgen report` in headless Chromium: a store of 40 dialogues generated against the
# tests' mock server (dgen-mock-llm, real embeddings), its report.html, a PNG of it. Fails on a
# blank page (one colour), or when the page's script did not finish (`data-ready` missing from
# the DOM) or raised an error (`data-error`). Installs Debian's chromium with apt-get when
# missing (needs root or sudo).
# Usage: scripts/report-screenshot.sh [PNG]   (default docs/report.png)
set -euo pipefail
cd "$(dirname "$0")/.."
PNG="$(realpath -m "${1:-docs/report.png}")"
say() { echo "report-screenshot.sh: $*" >&2; }

find_chromium() { command -v chromium || command -v chromium-browser || true; }
CHROMIUM="$(find_chromium)"
if [[ -z "$CHROMIUM" ]]; then
  SUDO=""
  [[ "$(id -u)" -ne 0 ]] && SUDO="sudo"
  say "installing chromium with apt-get"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
  CHROMIUM="$(find_chromium)"
  [[ -n "$CHROMIUM" ]] || { say "chromium is still missing after apt-get install chromium"; exit 1; }
fi

scripts/fetch-assets.sh >/dev/null
cargo build --locked --quiet --bin dgen --bin dgen-mock-llm
BIN="$PWD/target/debug/dgen"
WORK="$(mktemp -d)"
MOCK_PID=""
cleanup() { [[ -n "$MOCK_PID" ]] && kill "$MOCK_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
target/debug/dgen-mock-llm > "$WORK/url" &
MOCK_PID=$!
for _ in $(seq 100); do [[ -s "$WORK/url" ]] && break; sleep 0.1; done
URL="$(cat "$WORK/url")"
[[ -n "$URL" ]] || { say "the mock server did not start"; exit 1; }

cd "$WORK"
"$BIN" plan --total_generations 40 --dataset "$OLDPWD/fixtures/multiwoz_hf" \
  --persona_dataset "$OLDPWD/fixtures/personas_hf" --min_turns 3 3 --max_turns 6 6 >/dev/null 2>&1
"$BIN" run --base_url "$URL" --concurrency 4 --retry_base_ms 20 \
  --checks off_topic=flag,outcome_mismatch=flag >/dev/null 2>run.log ||
  { say "dgen run failed:"; tail -5 run.log >&2; exit 1; }
"$BIN" report --price_input 0.15 --price_output 0.6 >/dev/null

# Chromium's own chatter (dbus, GPU) goes to stderr; only the DOM and the PNG matter.
run_chromium() {
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --no-first-run --user-data-dir="$WORK/profile" "$@" "file://$WORK/report.html" 2>>chromium.log
}
run_chromium --dump-dom > dom.html || { say "chromium failed:"; tail -5 chromium.log >&2; exit 1; }
ROOT="$(grep -o '<html[^>]*>' dom.html | head -1)"
if [[ "$ROOT" == *data-error=* ]]; then
  say "the page's script failed: $ROOT"
  exit 1
fi
if [[ "$ROOT" != *'data-ready="1"'* ]]; then
  say "the page's script did not finish (no data-ready on <html>): $ROOT"
  exit 1
fi
grep -q 'id="dialogue-rows"><tr' dom.html || { say "the dialogue browser shows no rows"; exit 1; }

run_chromium --screenshot="$WORK/shot.png" --window-size=1280,1400 >/dev/null ||
  { say "chromium could not take the screenshot:"; tail -5 chromium.log >&2; exit 1; }
# Blank (one colour) or not: decode the PNG with the standard library and count colours.
python3 - "$WORK/shot.png" <<'EOF'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, width, height, ctype = 8, b"", 0, 0, 0
while pos < len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + length]
    if kind == b"IHDR":
        width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8, f"bit depth {depth}"
    elif kind == b"IDAT":
        idat += body
    pos += 12 + length
channels = {2: 3, 6: 4, 0: 1, 4: 2}[ctype]
raw = zlib.decompress(idat)
stride = width * channels
colours = set()
prev = bytearray(stride)
i = 0
for _ in range(height):
    f = raw[i]; line = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - channels] if x >= channels else 0
        b = prev[x]; c = prev[x - channels] if x >= channels else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, channels * 7):
        colours.add(bytes(line[x:x + channels]))
    prev = line
if len(colours) < 8:
    sys.exit(f"report-screenshot.sh: the page rendered blank ({len(colours)} colours in {width}x{height})")
print(f"{width}x{height}, {len(colours)} colours sampled", file=sys.stderr)
EOF
mkdir -p "$(dirname "$PNG")"
cp "$WORK/shot.png" "$PNG"
echo "report.html rendered without script errors; screenshot $PNG ($(($(stat -c %s "$PNG") / 1024)) KB)"
