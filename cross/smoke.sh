#!/usr/bin/env bash
# Runs the aarch64 build under qemu-user (Debian's qemu-user-static + libc6-arm64-cross, the
# glibc the binary loads) and compares it with the x86-64 build of the same commit:
# `--version`, `check` on the default config, and `eval` of Ped2 test video 01 with the shipped
# model, whose per-frame scores must equal the x86-64 ones within 1e-4.
#
#   bash cross/build.sh && cargo build -p vigil && bash cross/smoke.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
arm=${1:-${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release/vigil}
host=${2:-target/debug/vigil}
ped2=${PED2:-../shared/datasets/ped2}
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross libgcc-s1-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
for b in "$arm" "$host"; do
  [ -x "$b" ] || { echo "smoke: $b missing (bash cross/build.sh; cargo build -p vigil)" >&2; exit 1; }
done
qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

"${qemu[@]}" "$arm" --version
sed "s|/usr/share/vigil/models/ped2-bdfi|$root/engine/models/ped2-bdfi|" systemd/vigil.toml > "$tmp/vigil.toml"
"${qemu[@]}" "$arm" check --config "$tmp/vigil.toml"
for which in arm host; do
  if [ "$which" = arm ]; then run=("${qemu[@]}" "$arm"); else run=("$host"); fi
  start=$(date +%s)
  "${run[@]}" eval --model engine/models/ped2-bdfi --dataset "$ped2" --videos 01 --json \
    --scores-csv "$tmp/$which.csv" --log warn > "$tmp/$which.json"
  echo "smoke: $which eval of video 01 took $(( $(date +%s) - start )) s"
done
python3 - "$tmp/arm.csv" "$tmp/host.csv" <<'PY'
import csv, sys
a, b = (list(csv.DictReader(open(p))) for p in sys.argv[1:3])
assert len(a) == len(b) > 0, (len(a), len(b))
worst = max(abs(float(x[k]) - float(y[k])) for x, y in zip(a, b) for k in ("score_paper", "score_stream"))
print(f"smoke: {len(a)} frames, max |aarch64 - x86-64| score difference {worst:.2e} (limit 1e-4)")
sys.exit(0 if worst <= 1e-4 else 1)
PY
