"""Reference outputs of the PyTorch model for the Rust parity tests.

    vigil-zoo parity --checkpoint engine/zoo/checkpoints/ped2-bdfi.pt \
        --inputs DIR --out DIR
    vigil-zoo parity --model stm-ae --checkpoint engine/zoo/checkpoints/ped2-stm-ae.pt \
        --inputs DIR --out DIR
    vigil-zoo parity --model hf2vad --checkpoint engine/zoo/checkpoints/ped2-hf2vad.pt \
        --inputs DIR --out DIR
    vigil-zoo parity --model ustn-dsc --checkpoint engine/zoo/checkpoints/ped2-ustn-dsc.pt \
        --inputs DIR --out DIR

`--model bdfi` (the default): reads DIR/prev.npy and DIR/next.npy (float32 [1,1,128,192] in
[-1,1]) and writes OUT/frame.npy, OUT/mem_err.npy and OUT/flow.npy.
`--model maam-net`: reads DIR/frame.npy (float32 [1,1,128,192], frame t) and writes
OUT/recon.npy and OUT/flow.npy (predicted flow t -> t+1). The checkpoint's BatchNorm is not
folded, the ONNX's is, so the comparison also covers the folding.
`--model stm-ae`: reads DIR/frames.npy (float32 [1,4,128,192], frames t-4..t-1 in [-1,1]) and
DIR/flows.npy (float32 [1,6,128,192], (dx, dy) of the flows t-4->t-3, t-3->t-2, t-2->t-1 in
pixels) and writes OUT/pred.npy (predicted frame t).
`--model hf2vad`: reads DIR/frames.npy (float32 [K,4,32,32], per object slot the crops of frames
t-4..t-1 in [-1,1]; the package has K = 16) and DIR/flows.npy (float32 [K,8,32,32], (dx, dy) of
the flows t-4->t-3 .. t-1->t in pixels) and writes OUT/flow_recon.npy and OUT/pred.npy (posterior
mean, as in the ONNX graph).
`--model ustn-dsc`: reads DIR/keyframes.npy (float32 [1,3,128,192], frames t-8, t-4, t in [-1,1])
and writes OUT/clip.npy ([1,9,128,192], the restored frames t-8..t). The relative position biases
are computed from the checkpoint's tables, the ONNX has them as constants.

The checkpoint runs in eval mode on CPU in float32 (one thread); file names are the ONNX input
and output names of the package, so the Rust test suite can compare tract's outputs of
model.onnx against these files (max abs diff <= 1e-4).
"""

import argparse
import os
import sys

import numpy as np
import torch

from .checkpoint import load as load_checkpoint
from .registry import get, names

PROG = "vigil-zoo parity"


def load(model_name, path):
    """(model in eval mode, [(input name, channels)], output names in forward order)."""
    spec = get(model_name)
    model, _ = load_checkpoint(model_name, path)
    return model, spec.inputs(model.cfg), spec.outputs


def main(argv=None, prog=PROG):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=names(), default="bdfi")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--inputs", required=True, help="folder with one <input name>.npy per ONNX input")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    torch.set_num_threads(1)  # deterministic reductions, and CI machines are small
    model, inputs, outputs = load(args.model, args.checkpoint)
    model = model.float().eval()
    if get(args.model).slots is not None:  # object cubes: any number of slots (the package has 16)
        n, h, w = None, model.cfg.cube, model.cfg.cube
    else:
        n, h, w = 1, model.cfg.height, model.cfg.width
    x = []
    for name, ch in inputs:
        a = np.load(os.path.join(args.inputs, f"{name}.npy"))
        k = a.shape[0] if n is None and a.ndim == 4 else n
        if a.shape != (k, ch, h, w):
            sys.exit(f"{name}.npy has shape {a.shape}, expected ({'K' if n is None else n}, {ch}, {h}, {w})")
        x.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
    with torch.no_grad():
        res = model(*x)
    res = res if isinstance(res, (tuple, list)) else (res,)
    outs = dict(zip(outputs, res))
    os.makedirs(args.out, exist_ok=True)
    for name, t in outs.items():
        np.save(os.path.join(args.out, f"{name}.npy"), t.numpy().astype(np.float32))
    print(", ".join(f"{k} {tuple(v.shape)}" for k, v in outs.items()), "->", args.out)


if __name__ == "__main__":
    main()
