# Sourced by cross/smoke.sh and cross/deb.sh: installs, once, what runs the aarch64 binary on an
# x86-64 machine (Debian's qemu-user-static, and the aarch64 glibc it loads), and sets `qemu`.
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross libgcc-s1-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
# cortex-a76: ARMv8.2 with dotprod and no SVE, like the Cortex-A78AE of Jetson Orin (and far
# faster to emulate than the default `max` CPU, whose SVE kernels tract would pick).
qemu=(qemu-aarch64-static -cpu cortex-a76 -L /usr/aarch64-linux-gnu)
