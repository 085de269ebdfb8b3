#!/usr/bin/env bash
# Runs the aarch64 build under qemu-user (Debian's qemu-user-static + libc6-arm64-cross, the
# glibc the binary loads) and compares it with the x86-64 build of the same commit:
# `--version`, `check` on the default config, and `eval` of 60 frames of Ped2 test video 01 with
# the shipped model, whose per-frame scores must equal the x86-64 ones within 1e-4.
#
#   bash cross/build.sh && cargo build -p vigil && bash cross/smoke.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
arm=${1:-${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release/vigil}
host=${2:-target/debug/vigil}
ped2=${PED2:-../shared/datasets/ped2}
source cross/qemu.sh
for b in "$arm" "$host"; do
  [ -x "$b" ] || { echo "smoke: $b missing (bash cross/build.sh; cargo build -p vigil)" >&2; exit 1; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"${qemu[@]}" "$arm" --version
# `check` opens the camera and proves the outbox writable, as `run` does at start: this machine
# has no /dev/video0, so the default config's camera becomes the demo clip and its outbox a
# scratch directory; everything else is checked as shipped.
sed -e "s|/usr/share/vigil/models/ped2-bdfi|$root/engine/models/ped2-bdfi|" \
    -e "s|^source = { kind = \"v4l\".*|source = { kind = \"dir\", path = \"$root/firmware/cli/assets/demo/ped2-test01\" }|" \
    -e "s|/var/lib/vigil/outbox|$tmp/outbox|" \
    systemd/vigil.toml > "$tmp/vigil.toml"
grep -q 'kind = "dir"' "$tmp/vigil.toml" || { echo "smoke: the default config's camera line changed; update this script" >&2; exit 1; }
"${qemu[@]}" "$arm" check --config "$tmp/vigil.toml"
# Frames 40-99 of Ped2 test video 01 (the bicycle enters at 60): both classes, and a minute of
# emulation rather than ten for the whole video.
clip="$tmp/ped2/testing"
mkdir -p "$clip/frames/01"
for i in $(seq 40 99); do
  ln -s "$(realpath "$ped2/testing/frames/01/$(printf %03d "$i").jpg")" "$clip/frames/01/$(printf %03d $((i - 40))).jpg"
done
printf '{"videos": {"01": {"frames": 60, "anomalous": [[20, 59]]}}}\n' > "$clip/labels.json"
for which in arm host; do
  if [ "$which" = arm ]; then run=("${qemu[@]}" "$arm"); else run=("$host"); fi
  start=$(date +%s)
  "${run[@]}" eval --model engine/models/ped2-bdfi --dataset "$clip" --videos 01 --json \
    --scores-csv "$tmp/$which.csv" --log warn > "$tmp/$which.json"
  echo "smoke: $which eval of 60 frames of video 01 took $(( $(date +%s) - start )) s"
done
python3 - "$tmp/arm.csv" "$tmp/host.csv" <<'PY'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert len(a) == len(b) > 0, (len(a), len(b))
worst = max(abs(float(x[k]) - float(y[k])) for x, y in zip(a, b) for k in ("score_paper", "score_stream"))
print(f"smoke: {len(a)} frames, max |aarch64 - x86-64| score difference {worst:.2e} (limit 1e-4)")
sys.exit(0 if worst <= 1e-4 else 1)
PY
