#!/usr/bin/env bash
# Cross-builds `vigil` for aarch64 Linux against glibc 2.31, so the one binary runs on JetPack 5
# (Ubuntu 20.04, glibc 2.31) and JetPack 6 (Ubuntu 22.04, glibc 2.35).
#
#   bash cross/build.sh            # release  -> target/aarch64-unknown-linux-gnu/release/vigil
#   bash cross/build.sh dev        # dev profile (faster to build, for trying things)
#
# Installs what it needs, once: the rustup target, zig (the `ziglang` wheel from PyPI, in
# .venv or cross/.venv) as the C toolchain and linker, and cargo-zigbuild. The V4L2 bindings are generated
# by bindgen against the Linux UAPI headers that zig ships. Then checks the result: an aarch64
# ELF whose highest GLIBC symbol version is <= 2.31.
set -euo pipefail
profile=${1:-release}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=aarch64-unknown-linux-gnu
glibc=2.31
ZIGLANG_VERSION=0.17.1
ZIGBUILD_VERSION=0.24.1

rustup target list --installed | grep -qx "$target" || rustup target add "$target"
# The tests' venv (tests/bootstrap.sh test) serves when it is there: one venv less on disk.
venv="$root/.venv"
[ -x "$venv/bin/pip" ] || venv="$root/cross/.venv"
if [ ! -x "$venv/bin/pip" ]; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv"; then
    echo "cross: cannot create a Python venv in $venv for zig (python3 is $(command -v python3));" \
      "install python3-venv and check free space:" >&2
    df -h "$root" "${TMPDIR:-/tmp}" >&2
    exit 1
  fi
fi
"$venv/bin/python" -c "import ziglang" 2>/dev/null || "$venv/bin/pip" install -q "ziglang==$ZIGLANG_VERSION"
command -v cargo-zigbuild >/dev/null || cargo install -q --locked cargo-zigbuild --version "$ZIGBUILD_VERSION"
# cargo-zigbuild runs `python3 -m ziglang` when no `zig` is on PATH: make it the venv's python.
export PATH="$venv/bin:$PATH"
zig_lib="$("$venv/bin/python" -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')/lib/libc/include"
# cargo-zigbuild appends its own zig cc options to this, for both spellings of the target.
export BINDGEN_EXTRA_CLANG_ARGS="--target=aarch64-linux-gnu \
-I$zig_lib/aarch64-linux-gnu -I$zig_lib/generic-glibc -I$zig_lib/aarch64-linux-any -I$zig_lib/any-linux-any"

cargo zigbuild --locked -p vigil --target "$target.$glibc" $([ "$profile" = release ] && echo --release)
dir=$([ "$profile" = release ] && echo release || echo debug)
bin="${CARGO_TARGET_DIR:-target}/$target/$dir/vigil"

file_out=$(readelf -h "$bin" | awk -F: '/Machine/ {gsub(/^ +/, "", $2); print $2}')
[ "$file_out" = "AArch64" ] || { echo "cross: $bin is not an AArch64 ELF ($file_out)" >&2; exit 1; }
max=$(readelf --dyn-syms -W "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
echo "cross: $bin: AArch64, highest GLIBC symbol version $max (limit $glibc)"
if [ "$(printf '%s\n%s\n' "$max" "$glibc" | sort -V | tail -1)" != "$glibc" ]; then
  echo "cross: $bin needs GLIBC_$max > $glibc: it will not start on JetPack 5" >&2
  exit 1
fi
