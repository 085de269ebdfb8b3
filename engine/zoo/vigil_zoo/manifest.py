"""model.toml: the TOML values, the header and interface tables, [flow] and [provenance], written
the way the shipped manifests have always been written (byte for byte)."""
from __future__ import annotations

import hashlib
import json
import os


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
    (the bdfi and maam-net trainers) and the export's --dataset / --trained-on."""
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
        # how the checkpoint was chosen and the command that reproduces the choice, where the
        # checkpoint records them (a checkpoint chosen on held-out footage, docs/models.md)
        **{k: v for k, v in ckpt.get("selection", {}).items()},
    }


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
