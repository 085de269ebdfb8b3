#!/usr/bin/env bash
# The check that needs a GPU, in one command: on a machine with an NVIDIA GPU and TensorRT (a
# Jetson on JetPack 5.1 / 6.x, or an x86-64 box with TensorRT 8.5-10.x), builds an FP16, an INT8
# and a `best` (FP16 + INT8) engine of every shipped package (INT8 reads the package's
# calib.cache; its kept-float layers run FP32 under `int8`, FP16 under `best`) and runs one
# window of the bundled Ped2 clip through each engine and through the CPU backend (`vigil engine
# selftest`). One line per package and precision; exit status 1 if any failed. Never run in CI
# (no GPU there).
#
#   bash tests/jetson_check.sh              # builds vigil with --features tensorrt first
#   VIGIL=/path/to/vigil bash tests/jetson_check.sh
#
# Engines go to a temporary directory (the first build of each takes minutes on a Jetson).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIGIL:-}" ]; then
  cargo build --release --locked -p vigil --features tensorrt || exit 1
  VIGIL=target/release/vigil
fi
engines=$(mktemp -d)
trap 'rm -rf "$engines"' EXIT
fail=0
first=1
for pkg in engine/models/*/; do
  name=$(basename "$pkg")
  for precision in fp16 int8 best; do
    start=$(date +%s)
    if out=$("$VIGIL" engine selftest "$pkg" --precision "$precision" --cache-dir "$engines" 2>&1); then
      verdict=ok
    else
      verdict=FAIL
      fail=1
    fi
    if [ "$first" = 1 ]; then
      printf '%s\n' "$out" | grep -m1 '^TensorRT ' || true
      first=0
    fi
    detail=$(printf '%s\n' "$out" | grep -E 'selftest passed|differs|[Ee]rror' | tail -1)
    printf '%-16s %-5s %-4s %5ss  %s\n' "$name" "$precision" "$verdict" "$(( $(date +%s) - start ))" "$detail"
  done
done
exit "$fail"
