"""Frames per second of the BDFI network in PyTorch eager mode, for the ratio against `vigil run`.

    python engine/zoo/bench_torch.py --checkpoint engine/zoo/checkpoints/ped2-bdfi.pt \
        --frames ../shared/datasets/ped2/testing/frames/01 --threads 1

Does per frame what the Rust pipeline does, in eager PyTorch at batch 1: decode the JPEG (PIL),
convert to grey, resize bilinearly to the model's input, scale to [-1, 1], run the network on
(t-1, t+1) and take the mean squared error against frame t. Prints the network-only and the
whole-loop rate. `--threads` sets torch's intra-op threads; tract runs the network on one thread,
so `--threads 1` is the like-for-like comparison.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_bdfi import load_checkpoint  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--frames", required=True, help="folder of JPEG/PNG frames")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint(args.checkpoint)
    model = model.float().eval()
    h, w = model.cfg.height, model.cfg.width
    files = sorted(glob.glob(os.path.join(args.frames, "*.jpg")) + glob.glob(os.path.join(args.frames, "*.png")))
    if len(files) < 3:
        sys.exit(f"{args.frames}: need at least 3 frames, found {len(files)}")

    def load(p):
        img = Image.open(p).convert("L").resize((w, h), Image.BILINEAR)
        return torch.from_numpy(np.asarray(img, np.float32) / 127.5 - 1.0).view(1, 1, h, w)

    window, net_s, n = [], 0.0, 0
    t0 = None
    with torch.no_grad():
        for i, p in enumerate(files):
            if i == args.warmup:
                t0, net_s, n = time.perf_counter(), 0.0, 0
            window = (window + [load(p)])[-3:]
            if len(window) < 3:
                continue
            a = time.perf_counter()
            frame, _, _ = model(window[0], window[2])
            net_s += time.perf_counter() - a
            float(((frame - window[1]) ** 2).mean())
            n += 1
    total = time.perf_counter() - t0
    res = {"frames": n, "threads": args.threads, "network_fps": n / net_s, "loop_fps": n / total,
           "network_ms": 1000 * net_s / n, "torch": torch.__version__}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
