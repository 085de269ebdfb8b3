#!/usr/bin/env bash
# The edge-deployment checks CI runs after `cargo test` (README, "Run the tests"): the aarch64
# release build linked for glibc <= 2.31, its smoke run under qemu compared with the x86-64
# build, and the .deb built from it, unpacked and checked.
#
#   bash cross/test.sh      # needs target/debug/vigil (cargo test or cargo build -p vigil)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ -x target/debug/vigil ] || cargo build --locked -p vigil
passed=0
step() {
  local name=$1; shift
  local start=$(date +%s)
  echo "== cross: $name"
  "$@"
  echo "== cross: $name passed in $(( $(date +%s) - start )) s"
  passed=$((passed + 1))
}
step "aarch64 build (glibc <= 2.31)" bash cross/build.sh release
step "qemu smoke run vs x86-64" bash cross/smoke.sh "${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release/vigil" target/debug/vigil
step ".deb package" bash cross/deb.sh
echo "cross: $passed passed, 0 failed"
