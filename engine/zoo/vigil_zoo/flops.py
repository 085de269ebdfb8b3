"""Parameters and GFLOPs per frame of the zoo's deployed networks, counted by PyTorch's own
`torch.utils.flop_counter.FlopCounterMode` (convolutions, transposed convolutions and matrix
products; one multiply-add = 2 FLOPs; elementwise operations are not counted, as usual).

    vigil-zoo flops [--model bdfi maam-net stm-ae hf2vad ustn-dsc]

Parameters are the float weights of the shipped package's model.onnx. Counts the forward pass of each checkpoint in engine/zoo/checkpoints at the package's input
size: one frame for the frame-level models; for hf2vad one object cube, and the full static
batch of 16 slots the ONNX graph always runs (the per-frame cost on the CPU backend, whatever
the number of objects). The flow estimator (Farnebäck, in Rust) is not a network and is not
counted; its time is in docs/benchmarks.md.
"""
import argparse
import os

import torch
from torch.utils.flop_counter import FlopCounterMode

from .parity import load
from .paths import shipped_checkpoint, shipped_package
from .registry import names

CHECKPOINTS = {m: shipped_checkpoint(m) for m in names()}
PROG = "vigil-zoo flops"


def deployed_params(name):
    """Weights in the shipped ONNX graph (BatchNorm folded; training-only parts such as
    discriminators and pre-training decoders absent; memory items included)."""
    import numpy as np
    import onnx
    g = onnx.load(os.path.join(shipped_package(name), "model.onnx")).graph
    return sum(int(np.prod(t.dims)) for t in g.initializer if t.data_type == onnx.TensorProto.FLOAT)


def count(model, inputs, batch, h, w):
    x = [torch.zeros(batch, ch, h, w) for _, ch in inputs]
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(*x)
    return fc.get_total_flops()


def main(argv=None, prog=PROG):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=list(CHECKPOINTS), choices=list(CHECKPOINTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    print(f"{'model':10} {'params':>10} {'GFLOPs/frame':>13}  note")
    for name in args.model:
        model, inputs, _ = load(name, CHECKPOINTS[name])
        model = model.float().eval()
        params = deployed_params(name)
        if name == "hf2vad":
            s = model.cfg.cube
            one = count(model, inputs, 1, s, s)
            full = count(model, inputs, 16, s, s)
            print(f"{name:10} {params:>10,} {full / 1e9:>13.3f}  16 slots ({one / 1e9:.4f} per object)")
        else:
            f = count(model, inputs, 1, model.cfg.height, model.cfg.width)
            print(f"{name:10} {params:>10,} {f / 1e9:>13.3f}  {model.cfg.height}x{model.cfg.width}")


if __name__ == "__main__":
    main()
