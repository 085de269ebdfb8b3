"""Export a trained HF2-VAD checkpoint as a Vigil model package (docs/model-package.md).

    vigil-zoo export --model hf2vad --checkpoint engine/zoo/checkpoints/ped2-hf2vad.pt \
        --out-dir engine/models/ped2-hf2vad --sample-data engine/zoo/data/ped2-test-128x192

1. folds every BatchNorm into the convolution before it (`maam_net.fold_batchnorm`) and exports
   the deployment forward pass `HF2VAD.forward` (opset 17, static shapes, constant folding,
   weights and memory slots embedded) with a static number of object slots K = 16: inputs
   `frames` [16, 4, 32, 32] (crops of frames t-4..t-1, oldest first, [-1, 1]) and `flows`
   [16, 8, 32, 32] ((dx, dy) of the flows t-4->t-3 .. t-1->t, pixels); outputs `flow_recon`
   [16, 8, 32, 32] (ML-MemAE-SC) and `pred` [16, 1, 32, 32] (CVAE, posterior mean: no random
   op). A frame with fewer objects fills the unused slots with anything (zeros) and ignores
   their outputs; one with more runs the graph again. The memories are frozen to unit slots and
   norms (`ObjectMemory.freeze`, same maths) so their slots are stored once; the CVAE's
   prior-mean convolutions only serve the training KL and are dead code in the graph;
2. checks the graph (onnx.checker, static shapes, none of the ops the deployment contract
   excludes: no TopK / Gather / Scatter / Shape / control flow / random / BatchNormalization),
   runs it in onnxruntime against the (unfolded) PyTorch model on real test object cubes (or
   random inputs), prints the max abs difference per output (must be <= 1e-4) and the time per
   K-slot call on one thread;
3. writes model.onnx and model.toml: interface, [params] (score weights w_r / w_p, median width,
   the training objects' S_r / S_p mean and std from the checkpoint, model hyper-parameters for
   information), [objects] (the object extractor's parameters, copied from the training data's
   index.json, the same extractor must run at serving time), [flow], [provenance].
   [calibration] is left out: `vigil calib scores` fills it.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
import torch

from ..checkpoint import load
from ..manifest import flow_table, manifest_head, provenance_lines, save_manifest, sha256_file, toml_fixed, toml_val
from ..models.hf2vad import ObjectMemory, fold_batchnorm, param_groups
from ..onnx_tools import compare_with_torch, onnx_interface, ort_session, time_session
from ..options import export_arg_parser
TOL = 1e-4
K = 16                                   # static object slots
INPUTS = ("frames", "flows")
OUTPUTS = ("flow_recon", "pred")         # the order of HF2VAD.forward
FORBIDDEN_OPS = {"TopK", "ScatterND", "ScatterElements", "Scatter", "GatherElements", "GatherND", "Gather",
                 "NonZero", "Loop", "If", "Shape", "RandomNormal", "RandomNormalLike", "RandomUniform",
                 "RandomUniformLike", "Multinomial", "Dropout", "BatchNormalization"}


def toml_any(v):
    """A TOML literal for a JSON value (bools, numbers, strings, arrays of them)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_any(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_any(x)}" for k, x in v.items()) + " }"
    if isinstance(v, float) and float(np.float32(v)) == v:
        return str(np.float32(v))  # an f32 written by the Rust exporter: its shortest form (0.05)
    return toml_val(v)


def sample_inputs(cfg, folder, n=4, seed=0):
    """n chunks of K real object cubes (from different test videos), else random inputs."""
    rng = np.random.default_rng(seed)
    s, h = cfg.cube, cfg.clip_hist
    out = []
    if folder and os.path.exists(os.path.join(folder, "index.json")):
        from ..data import load_objects
        vids = [v for v in load_objects(folder, mmap=True) if v[2].shape[0] >= K]
        for i in range(n):
            _, _, cubes, flows, _ = vids[i % len(vids)]
            j = int(rng.integers(0, cubes.shape[0] - K + 1))
            out.append((np.array(cubes[j:j + K, :h], np.float32), np.array(flows[j:j + K], np.float32)))
    else:
        for _ in range(n):
            out.append((rng.uniform(-1, 1, (K, h, s, s)).astype(np.float32),
                        rng.normal(0, 1.0, (K, cfg.flow_ch, s, s)).astype(np.float32)))
    return out


def export_onnx(model, path, opset):
    c = model.cfg
    folded = fold_batchnorm(model)
    for m in folded.modules():
        if isinstance(m, ObjectMemory):
            m.freeze()
    dummy = (torch.zeros(K, c.img_channels * c.clip_hist, c.cube, c.cube), torch.zeros(K, c.flow_ch, c.cube, c.cube))
    with warnings.catch_warnings():
        # int(tensor.shape[...]) in ObjectMemory is deliberate (constant Reshape shapes)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        torch.onnx.export(folded, dummy, path, input_names=list(INPUTS), output_names=list(OUTPUTS),
                          opset_version=opset, do_constant_folding=True, dynamic_axes=None, dynamo=False)


def objects_table(args, ckpt):
    """The extractor's parameters the training cubes were made with: stored in the checkpoint
    by the hf2vad trainer (index.json "objects" of the training data), else read from
    --objects-from / the training data folder's index.json. Warns when the --sample-data folder
    was exported with other parameters."""
    st = ckpt.get("stages", {})
    folder = args.objects_from or (st.get("stats") or st.get("memae") or st.get("cvae") or {}).get("data")
    obj = None if args.objects_from else ckpt.get("objects")
    if obj is None:
        path = os.path.join(folder or "", "index.json")
        if not os.path.exists(path):
            sys.exit(f"no {path}: pass --objects-from FOLDER (the training data) for the [objects] table")
        with open(path) as f:
            obj = json.load(f).get("objects")
    if not obj:
        sys.exit("no object-extractor parameters (index.json \"objects\") for the [objects] table")
    if args.sample_data and os.path.exists(os.path.join(args.sample_data, "index.json")):
        with open(os.path.join(args.sample_data, "index.json")) as f:
            other = json.load(f).get("objects")
        if other != obj:
            print(f"warning: {args.sample_data} was exported with other object parameters than the "
                  f"training data:\n  {other}\n  {obj}", file=sys.stderr)
    return obj, folder


PROG = "vigil-zoo export --model hf2vad"


def main(argv=None, prog=PROG):
    ap = export_arg_parser(__doc__, "ped2-hf2vad", trained_on="1 CPU thread on a 2-core machine (no GPU)", prog=prog)
    ap.add_argument("--w-r", type=float, default=1.0, help="[params] w_r (paper, Ped2: 1.0)")
    ap.add_argument("--w-p", type=float, default=0.1, help="[params] w_p (paper, Ped2: 0.1)")
    ap.add_argument("--median", type=int, default=17, help="[params] median filter width (paper: 17)")
    ap.add_argument("--objects-from", help="data folder whose index.json 'objects' becomes [objects] "
                                           "(default: the checkpoint's training data)")
    ap.add_argument("--sample-data", help="exported test folder (with object cubes) for the comparison inputs")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    model, ckpt = load("hf2vad", args.checkpoint)
    cfg = model.cfg
    for name in ("memae", "cvae"):
        if name not in ckpt.get("stages", {}):
            print(f"warning: the checkpoint has no '{name}' training stage", file=sys.stderr)
    stats = ckpt.get("score_stats")
    if not stats:
        sys.exit("the checkpoint has no score_stats (training did not finish)")
    objects, objects_folder = objects_table(args, ckpt)
    s = cfg.cube
    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "model.onnx")
    export_onnx(model, onnx_path, args.opset)

    ins, outs = onnx_interface(onnx_path, FORBIDDEN_OPS)
    assert tuple(ins) == INPUTS and tuple(outs) == OUTPUTS, (ins, outs)
    assert ins["frames"] == [K, cfg.img_channels * cfg.clip_hist, s, s] and ins["flows"] == [K, cfg.flow_ch, s, s] \
        and outs["flow_recon"] == [K, cfg.flow_ch, s, s] and outs["pred"] == [K, cfg.img_channels, s, s], (ins, outs)
    print(f"inputs {ins} outputs {outs}")

    sess = ort_session(onnx_path, threads=1)
    samples = sample_inputs(cfg, args.sample_data)
    src = "real test object cubes" if args.sample_data else "random inputs"
    compare_with_torch(sess, model, INPUTS, OUTPUTS, samples, f"x {K} {src}", tol=TOL)
    time_session(sess, OUTPUTS, dict(zip(INPUTS, samples[0])), 20, f"call ({K} object slots)")

    sha = sha256_file(onnx_path)
    write_manifest(args, model, ckpt, stats, objects, objects_folder, sha, ins, outs)
    print(f"wrote {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.2f} MB, sha256 {sha})")


def write_manifest(args, model, ckpt, stats, objects, objects_folder, sha, ins, outs):
    cfg = model.cfg
    st = ckpt.get("stages", {})
    wall = sum(float(s.get("wall_s", 0.0)) for s in st.values())
    commands = []
    for s in ("memae", "cvae", "stats"):
        c = st.get(s, {}).get("command")
        if c and c not in commands:
            commands.append(c)
    first = st.get("memae") or st.get("cvae") or {}
    pg = param_groups(model)
    lines = manifest_head(
        args.name, "hf2vad",
        "HF2-VAD (Liu et al., ICCV 2021): per object cube (32x32 crops of frames t-4..t and the "
        "4 flows between them), ML-MemAE-SC reconstructs the flows through object-level "
        "memories and a CVAE predicts frame t from frames t-4..t-1 conditioned on the "
        "reconstructed flows; score w_r z(S_r) + w_p z(S_p), max over objects, median 17; "
        "trained on UCSD Ped2 at 128x192 (scaled-down widths, see engine/zoo/README.md)",
        (128, 192), sha, args.opset,
        inputs=[("frames", "per object slot: crops of frames t-4..t-1, oldest first, [-1, 1]", ins["frames"]),
                ("flows", "per object slot: (dx, dy) of flows t-4->t-3 .. t-1->t, pixels at 128x192",
                 ins["flows"])],
        outputs=[("flow_recon", "reconstructed flows (ML-MemAE-SC), pixels", outs["flow_recon"]),
                 ("pred", "predicted crop of frame t (CVAE, posterior mean), [-1, 1]", outs["pred"])],
        gap_between_inputs=True)
    lines += [
        "[params]",
        f"w_r = {args.w_r!r}                      # weight of z(S_r), flow reconstruction (paper, Ped2: 1.0)",
        f"w_p = {args.w_p!r}                      # weight of z(S_p), frame prediction (paper, Ped2: 0.1)",
        f"median = {args.median}                   # median filter width over a video's frame scores",
        f"sr_mean = {stats['sr_mean']!r}        # S_r = sum of squared flow errors per object, training objects",
        f"sr_std = {stats['sr_std']!r}",
        f"sp_mean = {stats['sp_mean']!r}        # S_p = sum of squared frame errors per object, training objects",
        f"sp_std = {stats['sp_std']!r}",
        f"stats_objects = {int(stats['objects'])}",
        f"object_slots = {K}",
        f"cube = {cfg.cube}",
        f"clip_hist = {cfg.clip_hist}",
        f"num_flows = {cfg.num_flows}",
        f"feature_root = {cfg.feature_root}",
        f"num_slots = {cfg.num_slots}",
        f"shrink_thres = {cfg.shrink_thres!r}",
        f"mem_temperature = {cfg.mem_temperature!r}",
        f"nf_start = {cfg.nf_start}",
        f"nf_max = {cfg.nf_max}",
        f"latent_ch = {cfg.latent_ch}",
        f"parameters = {pg['total']}",
        "",
        "[objects]                       # the object extractor the model was trained with (index.json)",
    ] + [f"{k} = {toml_any(v)}" for k, v in objects.items()] + [
        "",
    ] + flow_table("the input flows")
    lines += provenance_lines({
        "dataset": args.dataset,
        "epochs": int(st.get("cvae", {}).get("epochs", 0)),
        "epochs_memae": int(st.get("memae", {}).get("epochs", 0)),
        "epochs_cvae": int(st.get("cvae", {}).get("epochs", 0)),
        "trained_on": args.trained_on,
        "command": " && ".join(commands),
        "torch": first.get("torch", ckpt.get("torch", torch.__version__)),
        "train_wall_s": toml_fixed(wall, 1),
        "train_data": first.get("data", ""),
        "objects_from": objects_folder,
        "seed": int(first.get("seed", 0)),
    }, args.checkpoint)
    save_manifest(args.out_dir, lines)


if __name__ == "__main__":
    main()
