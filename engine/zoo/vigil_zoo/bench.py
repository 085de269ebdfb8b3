"""PyTorch eager speed of the zoo's networks, for the ratio against `vigil run` / `vigil bench`.

    vigil-zoo bench --model ustn-dsc --threads 1 --iters 50 [--checkpoint CKPT] [--json]
    vigil-zoo bench --model bdfi --checkpoint engine/zoo/checkpoints/ped2-bdfi.pt \\
        --frames ../shared/datasets/ped2/testing/frames/01 --threads 1

Network only (the default, every model): the forward pass of the checkpoint (default: the one
the shipped package was exported from) at batch 1 on the package's input shapes (hf2vad: its 16
object slots), on seeded uniform [-1, 1] inputs, under
torch.no_grad in eval mode; prints the median and mean milliseconds per forward over --iters
timed runs after --warmup untimed ones (`--json`: one object {"model", "threads", "median_ms",
"mean_ms", "iters"}).

`--frames DIR` (bdfi): does per frame what the Rust pipeline does, in eager PyTorch at batch 1:
decode the JPEG (PIL), convert to grey, resize bilinearly to the model's input, scale to
[-1, 1], run the network on (t-1, t+1) and take the mean squared error against frame t. Prints
the network-only and the whole-loop rate as JSON. `--threads` sets torch's intra-op threads;
tract runs the network on one thread, so `--threads 1` is the like-for-like comparison.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

from .checkpoint import load
from .paths import shipped_checkpoint
from .registry import get, names

PROG = "vigil-zoo bench"


def bench_network(name, model, threads, iters, warmup, seed=0) -> dict:
    """Milliseconds per eager forward pass of `model` on the package's input shapes."""
    spec = get(name)
    rng = np.random.default_rng(seed)
    x = [torch.from_numpy(rng.uniform(-1, 1, shape).astype(np.float32))
         for _, shape in spec.input_shapes(model.cfg)]
    times = []
    with torch.no_grad():
        for i in range(warmup + iters):
            a = time.perf_counter()
            model(*x)
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - a))
    return {"model": name, "threads": threads, "median_ms": statistics.median(times),
            "mean_ms": statistics.fmean(times), "iters": iters}


def bench_frames(model, frames, threads, warmup) -> dict:
    """The per-frame loop of the bdfi recipe over a folder of frames (see the module doc)."""
    from PIL import Image
    h, w = model.cfg.height, model.cfg.width
    files = sorted(glob.glob(os.path.join(frames, "*.jpg")) + glob.glob(os.path.join(frames, "*.png")))
    if len(files) < 3:
        sys.exit(f"{frames}: need at least 3 frames, found {len(files)}")

    def read(p):
        img = Image.open(p).convert("L").resize((w, h), Image.BILINEAR)
        return torch.from_numpy(np.asarray(img, np.float32) / 127.5 - 1.0).view(1, 1, h, w)

    window, net_s, n = [], 0.0, 0
    t0 = None
    with torch.no_grad():
        for i, p in enumerate(files):
            if i == warmup:
                t0, net_s, n = time.perf_counter(), 0.0, 0
            window = (window + [read(p)])[-3:]
            if len(window) < 3:
                continue
            a = time.perf_counter()
            frame, _, _ = model(window[0], window[2])
            net_s += time.perf_counter() - a
            float(((frame - window[1]) ** 2).mean())
            n += 1
    total = time.perf_counter() - t0
    return {"frames": n, "threads": threads, "network_fps": n / net_s, "loop_fps": n / total,
            "network_ms": 1000 * net_s / n, "torch": torch.__version__}


def main(argv=None, prog=PROG):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=names(), default="bdfi")
    ap.add_argument("--checkpoint", help="default: engine/zoo/checkpoints/ped2-<model>.pt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=20, help="timed forward passes (network only)")
    ap.add_argument("--warmup", type=int, default=5, help="untimed forward passes (frames: untimed frames)")
    ap.add_argument("--json", action="store_true", help="print one JSON object (network only)")
    ap.add_argument("--frames", help="folder of JPEG/PNG frames: time the bdfi per-frame loop instead")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, _ = load(args.model, args.checkpoint or shipped_checkpoint(args.model))
    model = model.float().eval()
    if args.frames:
        if args.model != "bdfi":
            ap.error("--frames runs the bdfi per-frame loop; other models: network only")
        print(json.dumps(bench_frames(model, args.frames, args.threads, args.warmup)))
        return
    res = bench_network(args.model, model, args.threads, args.iters, args.warmup)
    if args.json:
        print(json.dumps(res))
    else:
        shapes = ", ".join(f"{n} {list(s)}" for n, s in get(args.model).input_shapes(model.cfg))
        print(f"{args.model}: {res['median_ms']:.2f} ms median, {res['mean_ms']:.2f} ms mean per forward "
              f"({args.iters} runs, {args.threads} thread(s), torch {torch.__version__}; {shapes})")


if __name__ == "__main__":
    main()
