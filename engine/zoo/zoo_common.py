"""Small helpers the zoo's training, export and evaluation scripts share."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import os
import sys

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def parse_hw(s):
    """'96x128' -> (96, 128); 'none' -> None (full frames)."""
    if s.lower() == "none":
        return None
    h, w = s.lower().split("x")
    return int(h), int(w)


def config_overrides(config_cls, pairs):
    """--set KEY=VALUE pairs -> kwargs for a config dataclass, typed like the field defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(config_cls)}
    out = {}
    for kv in pairs:
        k, v = kv.split("=", 1)
        if k not in defaults:
            raise SystemExit(f"--set {k}: no such {config_cls.__name__} field ({', '.join(defaults)})")
        cur = defaults[k]
        out[k] = tuple(ast.literal_eval(v)) if isinstance(cur, tuple) else type(cur)(v)
    return out


def save_manifest(out_dir, lines):
    """Writes model.toml from its lines and checks that it parses (Python >= 3.11)."""
    path = os.path.join(out_dir, "model.toml")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    try:
        import tomllib
        with open(path, "rb") as f:
            tomllib.load(f)
    except ImportError:
        pass
    print(f"wrote {path}")


def toml_str(s):
    return json.dumps(str(s))  # a JSON string literal is a valid TOML basic string


def toml_val(v):
    return toml_str(v) if isinstance(v, str) else repr(v)


# The engine's Farneback parameters (OpenCV's names) that the flow models' training data was
# computed with (`vigil dataset export --flow`; flows_cv2.FARNEBACK passes the same to OpenCV);
# the package's [flow] table makes the runtime compute the same.
FARNEBACK = dict(method="farneback", pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2)


def flow_table(what):
    """The manifest's [flow] table; `what` names the flow's role for the model."""
    return ([f"[flow]                          # {what}, computed at run time (same as training)"]
            + [f"{k} = {toml_val(v)}" for k, v in FARNEBACK.items()] + [""])


def toml_shape(dims):
    return "[" + ", ".join(str(d) for d in dims) + "]"


class TomlLiteral(str):
    """Text that goes into model.toml as it is, e.g. a float with a fixed number of decimals."""


def toml_fixed(x, decimals):
    # toml_val would write the shortest repr (36.42), the manifests have always kept the zeros (36.4200)
    return TomlLiteral(f"{float(x):.{decimals}f}")


# The labelled Ped2 test split beside the repository (../shared), as CI lays it out.
PED2_TEST_LABELS = os.path.normpath(os.path.join(REPO, "..", "shared/datasets/ped2/testing/labels.json"))


def eval_arg_parser(doc, onnx_help="evaluate this ONNX file with onnxruntime instead"):
    """The arguments every evaluate_*.py takes first; the script adds its own, then calls
    parse_eval_args."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--onnx", help=onnx_help)
    ap.add_argument("--data", required=True)
    ap.add_argument("--labels", default=PED2_TEST_LABELS)
    return ap


def parse_eval_args(ap):
    """(args, labels): one of --checkpoint / --onnx required, torch limited to --threads, and
    the labels file read."""
    import torch
    args = ap.parse_args()
    if not args.checkpoint and not args.onnx:
        ap.error("--checkpoint or --onnx is required")
    torch.set_num_threads(args.threads)
    with open(args.labels) as f:
        return args, json.load(f)


def lr_schedule(total_steps):
    """Short linear warm-up (attention layers and fresh memories dislike a full learning rate
    at step 0), then cosine decay to 5 % of the peak; a LambdaLR factor per step."""
    warm = max(1, min(100, total_steps // 10))
    return lambda s: (s + 1) / warm if s < warm else \
        0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * (s - warm) / max(1, total_steps - warm)))


def seed_stage(seed, stages, stage):
    """Per-stage generators (numpy, torch): stages run separately or in one `all` run give the
    same result."""
    import torch
    k = stages.index(stage)
    torch.manual_seed(seed * 1000 + k)
    gen = torch.Generator().manual_seed(seed * 1000 + 100 + k)
    return np.random.default_rng([seed, k]), gen


def export_arg_parser(doc, name, trained_on):
    """The arguments every export_*.py takes; the script adds its own."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out-dir", default=os.path.join(REPO, "engine/models", name))
    ap.add_argument("--name", default=name)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--dataset", default="ped2/training")
    ap.add_argument("--trained-on", default=trained_on)
    return ap


def manifest_head(name, recipe, description, hw, sha, opset, inputs, outputs, gap_between_inputs=False):
    """model.toml lines up to [params]: header, [input] (single-channel frames of hw = (height,
    width) in [-1, 1]), [onnx] and its [[onnx.inputs]] / [[onnx.outputs]] entries, each given as
    (name, comment, shape), ending with a blank line.

    Comments start at column 32; an entry may carry that column as a fourth item because
    ustn-dsc's `clip` output has always had its comment at 31, and the stm-ae and hf2vad
    manifests separate their inputs by a blank line (gap_between_inputs). Both keep the
    manifests byte-identical to those written before this helper existed."""
    def entries(table, items, gap):
        out = []
        for i, (n, comment, shape, *col) in enumerate(items):
            if i and gap:
                out.append("")
            width = col[0] if col else 32
            out += [f"[[onnx.{table}]]",
                    f"{'name = ' + toml_str(n):<{width}}# {comment}",
                    f"shape = {toml_shape(shape)}"]
        return out + [""]
    h, w = hw
    return [
        'schema = "vigil.model/1"',
        f"name = {toml_str(name)}",
        f"recipe = {toml_str(recipe)}",
        f"description = {toml_str(description)}",
        "",
        "[input]",
        f"width = {w}",
        f"height = {h}",
        "channels = 1",
        "pixel_range = [-1.0, 1.0]",
        'resize = "bilinear"',
        "",
        "[onnx]",
        'file = "model.onnx"',
        f'sha256 = "{sha}"',
        f"opset = {opset}",
        "",
    ] + entries("inputs", inputs, gap_between_inputs) + entries("outputs", outputs, False)


def provenance_lines(fields, checkpoint):
    """The [provenance] table, last in model.toml: `fields` in order (numbers as they are,
    TomlLiteral as it is, lists as arrays, anything else as a string), then the checkpoint (as
    engine/zoo/checkpoints/<file name>, wherever it was read from) and the exporting torch version."""
    import torch

    def val(v):
        if isinstance(v, TomlLiteral):
            return str(v)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return toml_str(v)
    fields = dict(fields, checkpoint="engine/zoo/checkpoints/" + os.path.basename(checkpoint),
                  exported_with_torch=torch.__version__)
    return ["[provenance]"] + [f"{k} = {val(v)}" for k, v in fields.items()] + [""]


def train_provenance(args, ckpt):
    """[provenance] fields of a single-stage training run: the checkpoint's "train" record
    (train_bdfi.py, train_maam_net.py) and the export's --dataset / --trained-on."""
    import torch
    tr = ckpt.get("train", {})
    return {
        "dataset": args.dataset,
        "epochs": int(tr.get("epochs", 0)),
        "trained_on": args.trained_on,
        "command": tr.get("command", ""),
        "torch": tr.get("torch", torch.__version__),
        "train_wall_s": toml_fixed(tr.get("wall_s", 0.0), 1),
        "train_data": tr.get("data", ""),
        "seed": int(tr.get("seed", 0)),
    }


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def onnx_interface(path, forbidden_ops=()):
    """Loads and fully checks an exported ONNX file, prints its op set and returns
    ({input: dims}, {output: dims}) in graph order; exits if it uses a forbidden op and fails if
    any dimension is dynamic (Vigil's packages are static-shape)."""
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})
    bad = set(forbidden_ops).intersection(ops)
    if bad:
        sys.exit(f"exported graph uses {sorted(bad)}, which the deployment contract excludes")
    print(f"onnx ok: opset {m.opset_import[0].version}, {len(m.graph.node)} nodes, ops: {', '.join(ops)}")

    def dims(vi):
        return [d.dim_value for d in vi.type.tensor_type.shape.dim]
    ins = {i.name: dims(i) for i in m.graph.input}
    outs = {o.name: dims(o) for o in m.graph.output}
    assert all(all(d > 0 for d in s) for s in list(ins.values()) + list(outs.values())), "dynamic dims"
    return ins, outs


def int32_gather_indices(path):
    """Rewrites, in place, every Cast to INT64 whose result only becomes the indices of a
    GatherElements (through Reshape/Expand, which keep the type) into a Cast to INT32; returns
    how many. TensorRT 8.x (JetPack 5.1 and 6.0) has no INT64 tensors and its ONNX parser
    refuses such casts, while GatherElements takes INT32 indices as well; PyTorch's gather
    only takes int64, so the export cannot write INT32 itself. The indices are whole numbers
    far below 2^31, so every output is bit-identical. Any other INT64 cast is left alone (and
    the operator check of engine/tensorrt/tests/onnx_support.rs reports it)."""
    import onnx
    from onnx import TensorProto
    m = onnx.load(path)
    consumers = {}
    for n in m.graph.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, i))

    def only_gather_indices(tensor):
        uses = consumers.get(tensor, [])
        if not uses or tensor in {o.name for o in m.graph.output}:
            return False
        for node, slot in uses:
            if node.op_type == "GatherElements" and slot == 1:
                continue
            if node.op_type in ("Reshape", "Expand") and slot == 0:
                if only_gather_indices(node.output[0]):
                    continue
            return False
        return True

    changed = 0
    for n in m.graph.node:
        if n.op_type != "Cast":
            continue
        to = next(a for a in n.attribute if a.name == "to")
        if to.i == TensorProto.INT64 and only_gather_indices(n.output[0]):
            to.i = TensorProto.INT32
            changed += 1
    if changed:
        del m.graph.value_info[:]  # stale INT64 annotations; shape inference redoes them
        m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, path)
    return changed


def save_checkpoint(path, ckpt):
    """torch.save through a temporary file, so an interrupted save never leaves a torn checkpoint."""
    import torch
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------- evaluation (paper protocol)

def minmax(x):
    x = np.asarray(x, np.float64)
    r = x.max() - x.min()
    return (x - x.min()) / r if r > 0 else np.zeros_like(x)


def labels_for(labels, vid, n):
    """Per-frame ground truth (1 = anomalous) of video `vid` from labels.json."""
    y = np.zeros(n, np.int64)
    for a, b in labels["videos"][vid]["anomalous"]:
        y[a:b + 1] = 1
    return y


def auc_or_none(y, s):
    """ROC AUC, or None where the video has only one class."""
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


def auc_table(scores, names, ys, vids, width):
    """Pooled and per-video AUC of each score series (`scores[k]` = one array per video), printed
    as a table; returns {"overall": {k: auc}, "per_video": {k: {video: auc or None}}}."""
    from sklearn.metrics import roc_auc_score
    y = np.concatenate(ys)
    res = {"overall": {}, "per_video": {}}
    for k, s in scores.items():
        res["overall"][k] = float(roc_auc_score(y, np.concatenate(s)))
        res["per_video"][k] = {v: auc_or_none(yv, sv) for v, yv, sv in zip(vids, ys, s)}
    fmt = lambda a: "  n/a " if a is None else f"{a:.4f}"
    print(f"  {'score':{width}s} {'AUC':>7s}   per video " + " ".join(f"{v:>6s}" for v in vids))
    for k in scores:
        print(f"  {names[k]:{width}s} {res['overall'][k]:.4f}   {'':9s} "
              + " ".join(fmt(res["per_video"][k][v]) for v in vids))
    print("  (n/a: the video has no normal frame, or no abnormal one)")
    return res
