"""DEVELOPMENT STAND-IN for `vigil dataset export --flow`: dense optical flow with OpenCV.

    vigil-zoo flows-cv2 engine/zoo/data/ped2-train-128x192 [more folders ...]

The shipped pipeline computes the flows with the runtime's own (Rust) estimator:

    target/release/vigil dataset export --dataset ../shared/datasets/ped2 --split training \
        --flow --out engine/zoo/data/ped2-train-128x192

Until that exporter exists, this script writes the same files from an already exported folder
(see data.py): for every video `<id>.npy` (float32 [T, 1, H, W] in [-1, 1]) it writes
`<id>.flow.npy`, float32 [T-1, 2, H, W], where entry t is the dense flow from frame t to frame
t+1 (channel 0 = dx, channel 1 = dy, in pixels of the H x W tensors), and adds
`"flow_file": "<id>.flow.npy"` to the video's entry in index.json (and, at the top level,
`"flow"` = the estimator parameters like the Rust exporter, and `"flow_source"` = this script).

Estimator: Farneback (OpenCV `calcOpticalFlowFarneback(prev, next, None, 0.5, 3, 15, 3, 5, 1.2,
0)`: pyr_scale 0.5, 3 levels, window 15, 3 iterations, poly_n 5, poly_sigma 1.2, no flags) on
the frames mapped back to float32 0..255 by (x + 1) * 127.5, i.e. the parameters recorded in the
maam-net package's [flow] table. Anything trained on these files must be re-checked once the Rust
estimator's output is available (it is meant to match OpenCV, not to be bit-identical).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import cv2
import numpy as np

from .data import load_index

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


def farneback(prev, nxt):
    """prev, next: float32 [H, W] in 0..255 -> float32 [2, H, W] (dx, dy) in pixels."""
    p = FARNEBACK
    f = cv2.calcOpticalFlowFarneback(prev, nxt, None, p["pyr_scale"], p["levels"], p["winsize"],
                                     p["iterations"], p["poly_n"], p["poly_sigma"], p["flags"])
    return np.ascontiguousarray(f.transpose(2, 0, 1), dtype=np.float32)


def video_flows(arr):
    """arr float32 [T, 1, H, W] in [-1, 1] -> float32 [T-1, 2, H, W]."""
    if arr.ndim != 4 or arr.shape[1] != 1:
        raise ValueError(f"expected [T, 1, H, W] luma frames, got {arr.shape}")
    g = [np.ascontiguousarray((arr[t, 0] + 1.0) * 127.5, dtype=np.float32) for t in range(arr.shape[0])]
    out = np.empty((arr.shape[0] - 1, 2) + arr.shape[2:], np.float32)
    for t in range(arr.shape[0] - 1):
        out[t] = farneback(g[t], g[t + 1])
    return out


def process(folder, force=False):
    index = load_index(folder)
    t0 = time.time()
    computed = listed = 0
    for v in index["videos"]:
        name = os.path.splitext(v["file"])[0] + ".flow.npy"
        path = os.path.join(folder, name)
        arr = np.load(os.path.join(folder, v["file"]), mmap_mode="r")
        if force or not os.path.exists(path):
            fl = video_flows(arr)
            tmp = path + ".tmp.npy"
            np.save(tmp, fl)
            os.replace(tmp, path)
            computed += 1
            print(f"{folder}: {name} {fl.shape} mean |flow| {np.abs(fl).mean():.3f} px, "
                  f"max {np.abs(fl).max():.2f} px", flush=True)
        listed += v.get("flow_file") == name
        v["flow_file"] = name
    if not computed and listed == len(index["videos"]):
        # every flow file was there and listed already (perhaps written by the Rust exporter)
        print(f"{folder}: all flow files present, index.json left as it is (--force recomputes)")
        return
    # same top-level key as the Rust exporter (its FarnebackParams), plus a marker that these
    # flows come from the OpenCV stand-in
    index["flow"] = {k: v for k, v in FARNEBACK.items() if k != "flags"}
    index["flow_source"] = "vigil_zoo.flows_cv2 (OpenCV %s, development stand-in)" % cv2.__version__
    tmp = os.path.join(folder, "index.json.tmp")
    with open(tmp, "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, os.path.join(folder, "index.json"))
    print(f"{folder}: {len(index['videos'])} videos in {time.time() - t0:.0f} s", flush=True)


PROG = "vigil-zoo flows-cv2"


def main(argv=None, prog=PROG):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="folders written by `vigil dataset export`")
    ap.add_argument("--force", action="store_true", help="recompute flow files that exist")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    for folder in args.folders:
        process(folder, args.force)


if __name__ == "__main__":
    main()
