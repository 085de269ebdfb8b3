"""Export a trained STM-AE checkpoint as a Vigil model package (docs/model-package.md).

    vigil-zoo export --model stm-ae --checkpoint engine/zoo/checkpoints/ped2-stm-ae.pt \
        --out-dir engine/models/ped2-stm-ae --sample-data engine/zoo/data/ped2-test-128x192

1. folds every BatchNorm into the convolution before it (`maam_net.fold_batchnorm`) and exports
   the deployment forward pass (opset 17, static shapes, no dynamic axes, constant folding,
   weights and the two memory pools embedded as constants): inputs `frames` [1, 4, H, W]
   (frames t-4..t-1 as channels, oldest first, [-1, 1]) and `flows` [1, 6, H, W] ((dx, dy) of
   the flows t-4->t-3, t-3->t-2, t-2->t-1, pixels), output `pred` [1, 1, H, W] (frame t, [-1, 1]).
   The discriminator, the stream AEs' decoders and the memory write (top-k) are training-only and
   are not in the graph;
2. checks the graph (onnx.checker, no TopK/Scatter/Gather, static shapes), runs it in
   onnxruntime against the (unfolded) PyTorch model on real test windows (or random inputs),
   prints the max abs difference and the onnxruntime time per frame on 1 thread;
3. writes model.onnx and model.toml (sha256, interface, [params], [scoring], [flow],
   [provenance]). [calibration] is left out: `vigil calib scores` fills it.
"""
from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import torch

from ..checkpoint import load
from ..manifest import flow_table, manifest_head, provenance_lines, save_manifest, sha256_file, toml_fixed
from ..models.stm_ae import fold_batchnorm
from ..onnx_tools import compare_with_torch, onnx_interface, ort_session, time_session
from ..options import export_arg_parser
TOL = 1e-4
INPUTS = ("frames", "flows")
OUTPUT = "pred"
FORBIDDEN_OPS = {"TopK", "ScatterND", "ScatterElements", "Scatter", "GatherElements", "GatherND",
                 "NonZero", "Loop", "If", "Shape"}


def sample_inputs(cfg, folder, n=4, seed=0):
    """A few real (frames, flows) windows from an exported folder, else random inputs."""
    rng = np.random.default_rng(seed)
    k, h, w = cfg.n_frames, cfg.height, cfg.width
    out = []
    if folder and os.path.exists(os.path.join(folder, "index.json")):
        from ..data import load_flows
        vids = load_flows(folder, mmap=True)
        for i in range(n):
            _, a, f = vids[i % len(vids)]
            t = int(rng.integers(k, a.shape[0]))
            fr = np.array(a[t - k:t, 0][None], np.float32)                  # copies: writable
            fl = np.array(f[t - k:t - 1].reshape(1, 2 * (k - 1), h, w), np.float32)
            out.append((fr, fl))
    else:
        for _ in range(n):
            out.append((rng.uniform(-1, 1, (1, k, h, w)).astype(np.float32),
                        rng.normal(0, 0.5, (1, 2 * (k - 1), h, w)).astype(np.float32)))
    return out


def export_onnx(model, path, opset):
    c = model.cfg
    folded = fold_batchnorm(model)
    dummy = (torch.zeros(1, c.n_frames, c.height, c.width), torch.zeros(1, 2 * c.n_flows, c.height, c.width))
    with warnings.catch_warnings():
        # int(tensor.shape[...]) in STMAE.encode is deliberate (constant Reshape shapes)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(folded, dummy, path, input_names=list(INPUTS), output_names=[OUTPUT],
                          opset_version=opset, do_constant_folding=True, dynamic_axes=None, dynamo=False)


PROG = "vigil-zoo export --model stm-ae"


def main(argv=None, prog=PROG):
    ap = export_arg_parser(__doc__, "ped2-stm-ae", trained_on="2 CPU cores (no GPU)", prog=prog)
    ap.add_argument("--patch", type=int, nargs=2, default=[16, 16], metavar=("H", "W"))
    ap.add_argument("--stride", type=int, nargs=2, default=[8, 8], metavar=("H", "W"))
    ap.add_argument("--sample-data", help="exported test folder (with flows) for the comparison inputs")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    model, ckpt = load("stm-ae", args.checkpoint)
    cfg = model.cfg
    for name in ("appearance", "motion", "main"):
        if name not in ckpt.get("stages", {}):
            print(f"warning: the checkpoint has no '{name}' training stage", file=sys.stderr)
    if not (bool(model.spatial_mem.ready) and bool(model.temporal_mem.ready)):
        sys.exit("the memory pools were never written (no main-stage training step)")
    h, w = cfg.height, cfg.width
    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "model.onnx")
    export_onnx(model, onnx_path, args.opset)

    ins, outs = onnx_interface(onnx_path, FORBIDDEN_OPS)
    assert tuple(ins) == INPUTS and tuple(outs) == (OUTPUT,), (ins, outs)
    assert ins["frames"] == [1, cfg.n_frames, h, w] and ins["flows"] == [1, 2 * cfg.n_flows, h, w] \
        and outs[OUTPUT] == [1, 1, h, w], (ins, outs)
    print(f"inputs {ins} outputs {outs}")

    sess = ort_session(onnx_path, threads=1)
    samples = sample_inputs(cfg, args.sample_data)
    compare_with_torch(sess, model, INPUTS, (OUTPUT,), samples, tol=TOL)
    time_session(sess, (OUTPUT,), dict(zip(INPUTS, samples[0])), 20, "frame")

    sha = sha256_file(onnx_path)
    write_manifest(args, cfg, ckpt, sha, ins, outs)
    print(f"wrote {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.2f} MB, sha256 {sha})")


def write_manifest(args, cfg, ckpt, sha, ins, outs):
    st = ckpt.get("stages", {})
    main_st = st.get("main", {})
    wall = sum(float(s.get("wall_s", 0.0)) for s in st.values())
    commands = []
    for s in ("appearance", "motion", "main"):
        c = st.get(s, {}).get("command")
        if c and c not in commands:
            commands.append(c)
    lines = manifest_head(
        args.name, "stm-ae",
        "STM-AE (Liu et al., ICME 2022): two-stream (appearance denoising AE + motion flow AE, "
        "frozen) spatial-temporal memories augmented autoencoder; frames t-4..t-1 and the "
        "engine's flows between them -> predicted frame t, scored by PSNR; trained on UCSD "
        "Ped2 at 128x192 (scaled-down widths, see engine/zoo/README.md)",
        (cfg.height, cfg.width), sha, args.opset,
        inputs=[("frames", "frames t-4..t-1 as channels, oldest first, [-1, 1]", ins["frames"]),
                ("flows", "(dx, dy) of flows t-4->t-3, t-3->t-2, t-2->t-1, pixels", ins["flows"])],
        outputs=[("pred", "predicted frame t, [-1, 1]", outs["pred"])],
        gap_between_inputs=True)
    lines += [
        "[params]",
        f"memory_slots = {cfg.memory_slots}",
        f"top_k = {cfg.top_k}",
        "",
        "[scoring]",
        f"patch = [{args.patch[0]}, {args.patch[1]}]                # [height, width]",
        f"stride = [{args.stride[0]}, {args.stride[1]}]",
        "",
    ] + flow_table("the input flows")
    lines += provenance_lines({
        "dataset": args.dataset,
        "epochs": int(main_st.get("epochs", 0)),
        "epochs_appearance": int(st.get("appearance", {}).get("epochs", 0)),
        "epochs_motion": int(st.get("motion", {}).get("epochs", 0)),
        "trained_on": args.trained_on,
        "command": " && ".join(commands),
        "torch": main_st.get("torch", ckpt.get("torch", torch.__version__)),
        "train_wall_s": toml_fixed(wall, 1),
        "train_data": main_st.get("data", ""),
        "seed": int(main_st.get("seed", 0)),
    }, args.checkpoint)
    save_manifest(args.out_dir, lines)


if __name__ == "__main__":
    main()
