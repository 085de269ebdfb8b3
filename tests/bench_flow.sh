#!/usr/bin/env bash
# Optical flow per frame pair at model resolution (192x128), one core: vigil's Farnebäck and
# OpenCV's calcOpticalFlowFarneback on the same frames, back to back in one run (compare the
# ratio, not absolute times). docs/benchmarks.md quotes its output.
#
#   bash tests/bootstrap.sh test && bash tests/bench_flow.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
frames=${FRAMES:-../shared/datasets/ped2/testing/frames/01}
pairs=${PAIRS:-150}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cargo build -q --release -p vigil-engine --example flow_bench
echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%FT%TZ)"
taskset -c 0 target/release/examples/flow_bench "$frames" "$pairs" "$tmp/frames.npy"
taskset -c 0 .venv/bin/python - "$tmp/frames.npy" <<'PY'
import sys, time
import cv2, numpy as np
cv2.setNumThreads(1)
f = np.load(sys.argv[1])
for name, imgs in (("float32 0..255 (same input)", f), ("uint8", np.round(f).astype(np.uint8))):
    cv2.calcOpticalFlowFarneback(imgs[0], imgs[1], None, 0.5, 3, 15, 3, 5, 1.2, 0)  # warm-up
    ts = []
    for a, b in zip(imgs[:-1], imgs[1:]):
        t = time.perf_counter()
        cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
        ts.append((time.perf_counter() - t) * 1e3)
    print(f"opencv {cv2.__version__} farneback {f.shape[2]}x{f.shape[1]}, {len(ts)} pairs, 1 thread, {name}: median {np.median(ts):.3f} ms/pair")
PY
