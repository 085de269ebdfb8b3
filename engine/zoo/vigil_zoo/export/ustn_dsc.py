"""Export a trained USTN-DSC checkpoint as a Vigil model package (docs/model-package.md).

    vigil-zoo export --model ustn-dsc --checkpoint engine/zoo/checkpoints/ped2-ustn-dsc.pt \
        --out-dir engine/models/ped2-ustn-dsc --sample-data engine/zoo/data/ped2-test-128x192
        # (--tract-bin target/release/examples/onnx_run also checks a built tract runner)

1. freezes the relative position biases into constants (`ustn_dsc.freeze_for_export`, the same
   maths) and exports the deployment forward pass (opset 17, static shapes, no dynamic axes,
   constant folding): input `keyframes` [1, 3, H, W] (frames t-8, t-4, t, oldest first,
   [-1, 1]), output `clip` [1, 9, H, W] (the restored frames t-8..t, tanh, [-1, 1]);
2. checks the graph: onnx.checker, static shapes, and **every op type must be in ALLOWED_OPS**
   (what tract ~0.21 and TensorRT 8.6/10 both run: no LayerNormalization, Erf, Gelu, 3D
   convolutions, Shape, GridSample, Einsum, random ops, BatchNorm); anything else fails the
   export loudly. Gather (constant indices only) and Resize are allowed by the contract but are
   not expected in this graph: their presence is reported;
3. runs the graph in onnxruntime against the PyTorch model of the checkpoint (not frozen) on real
   test clips (or random inputs), prints the max abs difference (fails above 1e-4) and the
   onnxruntime time per forward on 1 thread; optionally (--tract-bin) the same with tract;
4. writes model.onnx and model.toml (sha256, interface, [params], [scoring], [provenance]; no
   [flow] table: the model needs no optical flow). [calibration] is left out:
   `vigil calib scores` fills it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import warnings
from collections import Counter

import numpy as np
import torch

from ..checkpoint import load
from ..manifest import manifest_head, provenance_lines, save_manifest, sha256_file, toml_fixed
from ..models.ustn_dsc import freeze_for_export
from ..onnx_tools import compare_with_torch, onnx_interface, ort_session, time_session
from ..options import export_arg_parser
from ..paths import REPO
TOL = 1e-4
INPUT, OUTPUT = "keyframes", "clip"
# The deployment contract for this package (tract and TensorRT): nothing else may appear.
ALLOWED_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm", "Softmax", "Add", "Sub", "Mul", "Div", "Pow",
               "Sqrt", "ReduceMean", "Reshape", "Transpose", "Concat", "Slice", "Gather", "Relu",
               "LeakyRelu", "Sigmoid", "Tanh", "Resize", "Constant"}


def sample_inputs(cfg, folder, n=4, seed=0):
    """A few real (keyframes) inputs from an exported folder (clips ending at a random t >= 8),
    else random inputs in [-1, 1]."""
    rng = np.random.default_rng(seed)
    T, h, w = cfg.clip, cfg.height, cfg.width
    out = []
    if folder and os.path.exists(os.path.join(folder, "index.json")):
        from ..data import load_videos
        vids = load_videos(folder, mmap=True)
        for i in range(n):
            _, a = vids[i % len(vids)]
            t = int(rng.integers(T - 1, a.shape[0]))
            out.append(np.array(a[[t - T + 1 + k for k in cfg.keyframes], 0][None], np.float32))
    else:
        for _ in range(n):
            out.append(rng.uniform(-1, 1, (1, 3, h, w)).astype(np.float32))
    return out


def export_onnx(frozen, path, opset):
    c = frozen.cfg
    dummy = torch.zeros(1, 3, c.height, c.width)
    with warnings.catch_warnings():
        # int(tensor.shape[...]) in ustn_dsc is deliberate (constant Reshape shapes)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the TorchScript exporter, on purpose
        torch.onnx.export(frozen, (dummy,), path, input_names=[INPUT], output_names=[OUTPUT],
                          opset_version=opset, do_constant_folding=True, dynamic_axes=None, dynamo=False)


def check_ops(path):
    """Fails unless every node is in ALLOWED_OPS; returns {op: count}."""
    import onnx
    ops = Counter(n.op_type for n in onnx.load(path).graph.node)
    bad = sorted(set(ops) - ALLOWED_OPS)
    if bad:
        sys.exit(f"exported graph uses {bad}, outside the ops tract and TensorRT are known to run "
                 f"(allowed: {', '.join(sorted(ALLOWED_OPS))})")
    for op in ("Gather", "Resize"):
        if op in ops:
            print(f"note: the graph has {ops[op]} {op} node(s)")
    print("op counts: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    return ops


def tract_check(onnx_path, model, samples, tract_bin):
    worst = 0.0
    for key in samples:
        with tempfile.TemporaryDirectory() as d:
            np.save(os.path.join(d, f"{INPUT}.npy"), key)
            r = subprocess.run([tract_bin, onnx_path, os.path.join(d, "out"), f"{INPUT}={os.path.join(d, INPUT + '.npy')}"],
                               cwd=REPO, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"tract failed:\n{r.stdout}\n{r.stderr}")
            with torch.no_grad():
                ref = model(torch.from_numpy(key)).numpy()
            worst = max(worst, float(np.abs(np.load(os.path.join(d, "out", f"{OUTPUT}.npy")) - ref).max()))
    print(f"tract vs PyTorch max abs diff over {len(samples)} inputs: {OUTPUT}={worst:.2e}")
    if worst > TOL:
        sys.exit(f"tract differs from PyTorch by more than {TOL}")


PROG = "vigil-zoo export --model ustn-dsc"


def main(argv=None, prog=PROG):
    ap = export_arg_parser(__doc__, "ped2-ustn-dsc", trained_on="2 CPU cores (no GPU), 1 training thread", prog=prog)
    ap.add_argument("--patch", type=int, nargs=2, default=[16, 16], metavar=("H", "W"))
    ap.add_argument("--stride", type=int, nargs=2, default=[8, 8], metavar=("H", "W"))
    ap.add_argument("--sample-data", help="exported test folder for the comparison inputs")
    ap.add_argument("--tract-bin", help="a built onnx_run example: also compare tract with PyTorch")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    model, ckpt = load("ustn-dsc", args.checkpoint)
    frozen, _ = load("ustn-dsc", args.checkpoint)
    freeze_for_export(frozen)
    cfg = model.cfg
    h, w = cfg.height, cfg.width
    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "model.onnx")
    export_onnx(frozen, onnx_path, args.opset)

    ins, outs = onnx_interface(onnx_path)
    ops = check_ops(onnx_path)
    assert tuple(ins) == (INPUT,) and tuple(outs) == (OUTPUT,), (ins, outs)
    assert ins[INPUT] == [1, 3, h, w] and outs[OUTPUT] == [1, cfg.clip, h, w], (ins, outs)
    print(f"inputs {ins} outputs {outs}")

    sess = ort_session(onnx_path, threads=1)
    samples = sample_inputs(cfg, args.sample_data)
    what = "real test clips" if args.sample_data else "random inputs"
    compare_with_torch(sess, model, (INPUT,), (OUTPUT,), [(k,) for k in samples], what, tol=TOL)
    time_session(sess, (OUTPUT,), {INPUT: samples[0]}, 10, "forward (one 9-frame clip)")
    if args.tract_bin:
        tract_check(onnx_path, model, samples[:2], args.tract_bin)

    sha = sha256_file(onnx_path)
    write_manifest(args, cfg, ckpt, sha, ins, outs)
    print(f"wrote {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.2f} MB, {sum(ops.values())} nodes, sha256 {sha})")


def write_manifest(args, cfg, ckpt, sha, ins, outs):
    pr = ckpt.get("provenance", {})
    last = (pr.get("history") or [{}])[-1]
    lines = manifest_head(
        args.name, "ustn-dsc",
        "USTN-DSC (Yang et al., CVPR 2023): video event restoration from keyframes; a U-shaped "
        "Swin transformer with dual skip connections restores the 9 frames t-8..t from frames "
        "t-8, t-4, t; scored by the PSNR of the worst restored frame; trained on UCSD Ped2 at "
        "128x192 (scaled-down depth and widths, see engine/zoo/README.md)",
        (cfg.height, cfg.width), sha, args.opset,
        inputs=[(INPUT, "frames t-8, t-4, t as channels, oldest first, [-1, 1]", ins[INPUT])],
        outputs=[(OUTPUT, "restored frames t-8..t, [-1, 1]", outs[OUTPUT], 31)])  # 31: see manifest_head
    lines += [
        "[params]",
        f"clip = {cfg.clip}",
        f"keyframes = [{', '.join(str(k) for k in cfg.keyframes)}]   # positions in the clip (information)",
        f"patch_embed = {cfg.patch}              # information only, from here on",
        f"dims = [{', '.join(str(d) for d in cfg.dims)}]",
        f"heads = [{', '.join(str(d) for d in cfg.heads)}]",
        f"window = {cfg.window}",
        f"mlp_ratio = {cfg.mlp_ratio}",
        f"bottleneck_ch = {cfg.bottleneck_ch}",
        f"stem_ch = {cfg.stem_ch}",
        "",
        "[scoring]",
        f"patch = [{args.patch[0]}, {args.patch[1]}]                # [height, width]",
        f"stride = [{args.stride[0]}, {args.stride[1]}]",
        "",
    ]
    lines += provenance_lines({
        "dataset": args.dataset,
        "epochs": int(pr.get("epochs", 0)),
        "trained_on": args.trained_on,
        "command": pr.get("command", ""),
        "torch": pr.get("torch", ckpt.get("torch", torch.__version__)),
        "train_wall_s": toml_fixed(pr.get("wall_s", 0.0), 1),
        "train_data": pr.get("data", ""),
        "held_out": [str(v) for v in pr.get("holdout", [])],  # video names, quoted even if stored as numbers
        "held_out_score_psnr": toml_fixed(last.get("val_score_psnr", 0.0), 4),
        "seed": int(pr.get("seed", 0)),
    }, args.checkpoint)
    save_manifest(args.out_dir, lines)


if __name__ == "__main__":
    main()
