"""Export a trained MAAM-Net checkpoint as a Vigil model package (docs/model-package.md).

    vigil-zoo export --model maam-net --checkpoint engine/zoo/checkpoints/ped2-maam-net.pt \
        --out-dir engine/models/ped2-maam-net --sample-data engine/zoo/data/ped2-test-128x192

1. folds every BatchNorm into the convolution before it (`maam_net.fold_batchnorm`) and exports
   ONNX (opset 17, static shapes, input `frame`, outputs `recon` and `flow`, no dynamic axes,
   constant folding, weights embedded in the file);
2. checks the graph with onnx.checker and runs it in onnxruntime against the (unfolded) PyTorch
   model on real test frames (or random frames) and prints the max abs difference per output;
3. writes model.onnx and model.toml (sha256 of the ONNX file, interface shapes, [params],
   [scoring], [flow], [provenance]). The [calibration] table is left out on purpose: it is
   filled by `vigil calib scores`.

Names: the input is `frame` (frame t); the reconstructed frame cannot also be called `frame`,
because ONNX value names are unique within a graph (torch.onnx renames a clashing input to
`frame.1`), so the outputs are `recon` (frame t reconstructed, [-1, 1]) and `flow` (predicted
flow t -> t+1, pixels).
"""
from __future__ import annotations

import os

import numpy as np
import torch

from ..checkpoint import load
from ..manifest import flow_table, manifest_head, provenance_lines, save_manifest, sha256_file, train_provenance
from ..models.maam_net import fold_batchnorm
from ..onnx_tools import compare_with_torch, onnx_interface, ort_session
from ..options import export_arg_parser
TOL = 1e-4
INPUT = "frame"
OUTPUTS = ("recon", "flow")  # the order of MAAMNet.forward


def sample_inputs(h, w, folder, n=4, seed=0):
    """A few real frames from an exported folder, else random frames."""
    rng = np.random.default_rng(seed)
    frames = []
    if folder and os.path.exists(os.path.join(folder, "index.json")):
        from ..data import load_videos
        vids = load_videos(folder, mmap=True)
        for i in range(n):
            _, a = vids[i % len(vids)]
            t = int(rng.integers(0, a.shape[0] - 1))
            frames.append(np.ascontiguousarray(a[t:t + 1], np.float32))
    else:
        frames = [rng.uniform(-1, 1, (1, 1, h, w)).astype(np.float32) for _ in range(n)]
    return frames


def export_onnx(model, path, h, w, opset):
    folded = fold_batchnorm(model)
    torch.onnx.export(folded, (torch.zeros(1, 1, h, w),), path, input_names=[INPUT],
                      output_names=list(OUTPUTS), opset_version=opset,
                      do_constant_folding=True, dynamic_axes=None, dynamo=False)


PROG = "vigil-zoo export --model maam-net"


def main(argv=None, prog=PROG):
    ap = export_arg_parser(__doc__, "ped2-maam-net", trained_on="2 CPU cores (no GPU)", prog=prog)
    ap.add_argument("--hp-flow", type=float, default=1.0, help="[params] hp_flow (paper, Ped2: 1)")
    ap.add_argument("--hp-img", type=float, default=10.0, help="[params] hp_img (paper, Ped2: 10)")
    ap.add_argument("--patch", type=int, nargs=2, default=[30, 20], metavar=("H", "W"),
                    help="[scoring] patch, H x W (paper, Ped2 at 240x360: 30 x 20)")
    ap.add_argument("--stride", type=int, nargs=2, default=[8, 5], metavar=("H", "W"),
                    help="[scoring] stride, H x W (paper, Ped2 at 240x360: 8 x 5)")
    ap.add_argument("--sample-data", help="exported test folder for the comparison inputs")
    args = ap.parse_args(argv)

    torch.set_num_threads(2)
    model, ckpt = load("maam-net", args.checkpoint)
    cfg = model.cfg
    h, w = cfg.height, cfg.width
    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "model.onnx")
    export_onnx(model, onnx_path, h, w, args.opset)

    ins, outs = onnx_interface(onnx_path)
    assert list(ins) == [INPUT] and tuple(outs) == OUTPUTS, (ins, outs)
    assert ins[INPUT] == [1, 1, h, w] and outs["recon"] == [1, 1, h, w] and outs["flow"] == [1, 2, h, w], \
        (ins, outs)
    print(f"inputs {ins} outputs {outs}")

    frames = sample_inputs(h, w, args.sample_data)
    compare_with_torch(ort_session(onnx_path), model, (INPUT,), OUTPUTS, [(x,) for x in frames], tol=TOL)

    sha = sha256_file(onnx_path)
    write_manifest(args, cfg, ckpt, sha, ins, outs)
    print(f"wrote {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.2f} MB, sha256 {sha})")


def write_manifest(args, cfg, ckpt, sha, ins, outs):
    lines = manifest_head(
        args.name, "maam-net",
        "MAAM-Net (Wang et al., Pattern Recognition 2023): memory-augmented appearance-motion "
        "autoencoder, frame t -> reconstructed frame t and predicted flow t->t+1 through a "
        "sparse (hard-shrink) memory, scored by PSCD; trained on UCSD Ped2 at 128x192 "
        "(scaled-down widths, see engine/zoo/README.md)",
        (cfg.height, cfg.width), sha, args.opset,
        inputs=[(INPUT, "frame t", ins[INPUT])],
        outputs=[("recon", "frame t reconstructed, in [-1, 1]", outs["recon"]),
                 ("flow", "predicted flow t -> t+1 (dx, dy) in pixels", outs["flow"])])
    lines += [
        "[params]",
        f"memory_slots = {cfg.memory_slots}",
        f"shrink_lambda = {cfg.shrink_lambda!r}",
        f"hp_flow = {args.hp_flow!r}              # PSCD fusion weight of the flow L1 map (Ped2: 1)",
        f"hp_img = {args.hp_img!r}              # PSCD fusion weight of the frame L2 map (Ped2: 10)",
        "",
        "[scoring]",
        f"patch = [{args.patch[0]}, {args.patch[1]}]                # [height, width], all-ones (sum) kernel",
        f"stride = [{args.stride[0]}, {args.stride[1]}]",
        "",
    ] + flow_table("the target flow")
    lines += provenance_lines(train_provenance(args, ckpt), args.checkpoint)
    save_manifest(args.out_dir, lines)


if __name__ == "__main__":
    main()
