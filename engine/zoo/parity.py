"""Reference outputs of the PyTorch model for the Rust parity test.

    python engine/zoo/parity.py --checkpoint engine/zoo/checkpoints/ped2-bdfi.pt \
        --inputs DIR --out DIR

Reads DIR/prev.npy and DIR/next.npy (float32 [1,1,128,192] in [-1,1]), runs the checkpoint in
eval mode on CPU in float32 and writes OUT/frame.npy, OUT/mem_err.npy and OUT/flow.npy (float32). The Rust test
suite compares tract's outputs of model.onnx against these (max abs diff <= 1e-4).
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_bdfi import load_checkpoint  # noqa: E402

OUTPUTS = ("frame", "mem_err", "flow")  # the order of BDFI.forward


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--inputs", required=True, help="folder with prev.npy and next.npy")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    torch.set_num_threads(1)  # deterministic reductions, and CI machines are small
    model, _ = load_checkpoint(args.checkpoint)
    model = model.float().eval()
    h, w = model.cfg.height, model.cfg.width
    x = {}
    for name in ("prev", "next"):
        a = np.load(os.path.join(args.inputs, f"{name}.npy"))
        if a.shape != (1, 1, h, w):
            sys.exit(f"{name}.npy has shape {a.shape}, expected (1, 1, {h}, {w})")
        x[name] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    with torch.no_grad():
        outs = dict(zip(OUTPUTS, model(x["prev"], x["next"])))
    os.makedirs(args.out, exist_ok=True)
    for name, t in outs.items():
        np.save(os.path.join(args.out, f"{name}.npy"), t.numpy().astype(np.float32))
    print(", ".join(f"{k} {tuple(v.shape)}" for k, v in outs.items()), "->", args.out)


if __name__ == "__main__":
    main()
