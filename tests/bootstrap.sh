#!/usr/bin/env bash
# Installs what building, the demo and the tests need on a fresh Debian/Ubuntu machine.
#   bash tests/bootstrap.sh demo   # C toolchain bits for the V4L2 bindings (libclang)
#   bash tests/bootstrap.sh test   # + mosquitto (tests start a real broker) + Python venv with
#                                  #   PyTorch for the parity test (.venv/, ~5 GB, once)
# Idempotent: a second run only checks.
set -euo pipefail
mode=${1:-test}
root=$(cd "$(dirname "$0")/.." && pwd)
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"

need_apt=()
have_lib() { ldconfig -p 2>/dev/null | grep -Eq "$1"; }
# libclang itself (bindgen for the V4L2 bindings), not libclang-cpp, which some images carry alone.
have_lib 'libclang(-[0-9]+)?\.so' || need_apt+=(libclang-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
if [ "$mode" = test ]; then
  command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
  command -v mosquitto_sub >/dev/null || need_apt+=(mosquitto-clients)
  python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
  # systemd-analyze, systemd-sysusers, systemd-tmpfiles check the files in systemd/
  command -v systemd-analyze >/dev/null || need_apt+=(systemd)
  # TLS tests make their certificates with openssl; the full-disk test mounts a tmpfs with unshare.
  command -v openssl >/dev/null || need_apt+=(openssl)
  command -v unshare >/dev/null || need_apt+=(util-linux)
  # The TensorRT shim is compiled against the real headers in the tests (C and C++).
  command -v c++ >/dev/null || need_apt+=(g++)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# The broker must not run as a system service: tests start their own on free ports.
if [ "$mode" = test ] && command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  $SUDO systemctl stop mosquitto || true
fi

if [ "$mode" = test ]; then
  venv="$root/.venv"
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  # the model zoo as an editable package (its dependencies are in engine/zoo/pyproject.toml):
  # `vigil-zoo` / `python -m vigil_zoo`, which the parity test runs
  reqs=(-e "$root/engine/zoo" -r "$root/engine/tests/fixtures/scoring/requirements.txt"
        -r "$root/engine/tensorrt/requirements.txt")
  # -I: vigil_zoo must come from the install, not from a working directory inside engine/zoo
  if ! "$venv/bin/python" -I -c "import torch, numpy, onnx, onnxruntime, sklearn, scipy, cv2, matplotlib, vigil_zoo" 2>/dev/null \
     || ! compgen -G "$venv/lib/python3*/site-packages/nvidia/cuda_nvcc/include/crt/host_defines.h" >/dev/null; then
    echo "bootstrap: installing Python packages into .venv (PyTorch is large; this takes a few minutes once)"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q "${reqs[@]}"
  fi
fi
echo "bootstrap ($mode): ready"
