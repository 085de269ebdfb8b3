#!/usr/bin/env bash
# Speed and memory of vigil and of the same network in PyTorch eager, measured back to back in
# one run (docs/benchmarks.md quotes its output). Not part of the test suite: timings vary with
# the machine's load, so compare the ratios within one run, not numbers across runs.
#
#   cargo build --release -p vigil && bash tests/bootstrap.sh test && bash tests/bench.sh
#
# Env: VIGIL_BIN (default target/release/vigil), PED2 (default ../shared/datasets/ped2),
#      VIDEOS (test videos replayed end to end, default "01 03 05 07 09 11").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${VIGIL_BIN:-target/release/vigil}
ped2=${PED2:-../shared/datasets/ped2}
videos=${VIDEOS:-01 03 05 07 09 11}
py=.venv/bin/python
[ -x "$bin" ] || { echo "bench: $bin not found; run: cargo build --release -p vigil" >&2; exit 1; }
[ -x "$py" ] || { echo "bench: $py not found; run: bash tests/bootstrap.sh test" >&2; exit 1; }
[ -d "$ped2/testing/frames" ] || { echo "bench: $ped2/testing/frames not found; set PED2" >&2; exit 1; }
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$tmp"' EXIT

echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%FT%TZ), vigil $($bin --version 2>/dev/null || true)"

echo "== 1. vigil bench: per-frame stages on Ped2 video 01 (360x240 JPEG frames)"
$bin bench --model engine/models/ped2-bdfi --frames "$ped2/testing/frames/01" --passes 3

echo "== 2. vigil run: Ped2 test videos replayed unpaced and lossless into mosquitto"
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$tmp/mosquitto.conf"
"$mosq" -c "$tmp/mosquitto.conf" >/dev/null 2>&1 &
sleep 0.5
run() {  # run NAME VIDEO... : one camera per video, all in one vigil process
  local name=$1; shift
  printf '[mqtt]\nhost = "127.0.0.1"\nport = %s\ndevice = "bench"\n\n[outbox]\ndir = "%s/outbox-%s"\n' \
    "$port" "$tmp" "$name" > "$tmp/$name.toml"
  for v in "$@"; do
    printf '\n[[camera]]\nname = "ped2-%s"\nmodel = "engine/models/ped2-bdfi"\nlossless = true\nsource = { kind = "dir", path = "%s" }\n' \
      "$v" "$(cd "$ped2/testing/frames/$v" && pwd)" >> "$tmp/$name.toml"
  done
  /usr/bin/time -f "wall %e s, max RSS %M KiB" $bin run --config "$tmp/$name.toml" --log info 2> "$tmp/$name.log" \
    || { cat "$tmp/$name.log"; exit 1; }
  local frames wall
  frames=$(grep -oE "[0-9]+ frames captured" "$tmp/$name.log" | awk '{s+=$1} END {print s}')
  wall=$(grep -oE "wall [0-9.]+ s" "$tmp/$name.log" | awk '{print $2}')
  echo "vigil run, $name ($# camera(s)): $frames frames in $wall s = $(awk -v f="$frames" -v w="$wall" 'BEGIN {printf "%.2f", f / w}') frames/s end to end (model load included); $(grep -oE "max RSS [0-9]+ KiB" "$tmp/$name.log")"
}
run one-camera 01
run six-cameras $videos

echo "== 3. PyTorch eager, same network and per-frame loop, Ped2 video 01"
for t in 1 2; do
  /usr/bin/time -f "pytorch threads=$t: max RSS %M KiB" \
    "$py" -m vigil_zoo bench --model bdfi --checkpoint engine/zoo/checkpoints/ped2-bdfi.pt \
    --frames "$ped2/testing/frames/01" --threads "$t"
done
