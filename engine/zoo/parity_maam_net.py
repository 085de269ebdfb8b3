"""Reference outputs of the MAAM-Net checkpoint for the Rust parity test.

    python engine/zoo/parity_maam_net.py --checkpoint engine/zoo/checkpoints/ped2-maam-net.pt \
        --inputs DIR --out DIR

Reads DIR/frame.npy (float32 [1,1,H,W] in [-1,1], prepared by the Rust runtime), runs the
checkpoint in eval mode on CPU in float32 (BatchNorm not folded: the ONNX has it folded, so the
comparison also covers the folding) and writes OUT/recon.npy and OUT/flow.npy.
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_maam_net import load_checkpoint  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--inputs", required=True, help="folder with frame.npy")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = load_checkpoint(args.checkpoint)
    model = model.float().eval()
    h, w = model.cfg.height, model.cfg.width
    a = np.load(os.path.join(args.inputs, "frame.npy"))
    if a.shape != (1, 1, h, w):
        sys.exit(f"frame.npy has shape {a.shape}, expected (1, 1, {h}, {w})")
    with torch.no_grad():
        recon, flow = model(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
    os.makedirs(args.out, exist_ok=True)
    for name, t in (("recon", recon), ("flow", flow)):
        np.save(os.path.join(args.out, f"{name}.npy"), t.numpy().astype(np.float32))
    print(f"recon {tuple(recon.shape)}, flow {tuple(flow.shape)} ->", args.out)


if __name__ == "__main__":
    main()
