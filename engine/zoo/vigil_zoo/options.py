"""Command-line options shared by the trainers, exporters and evaluators."""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os

from .paths import PED2_TEST_LABELS, REPO


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


def parser(doc, prog=None):
    """An ArgumentParser whose help shows the module docstring as written; `prog` is the
    `vigil-zoo ...` command it is reached by."""
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def trainer_parser(doc, prog, *, data_help, batch, threads, set_help,
                   device_help="torch device: cpu or cuda (cuda is not bit-identical to cpu; "
                               "the shipped models were trained on the CPU)"):
    """The options every trainer takes (--data, --batch, --seed, --out, --threads, --max-steps,
    --set, --device, --resume), with the trainer's defaults; the trainer adds its own."""
    ap = parser(doc, prog)
    ap.add_argument("--data", required=True, help=data_help)
    ap.add_argument("--batch", type=int, default=batch)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="checkpoint path (.pt), written after every epoch")
    ap.add_argument("--threads", type=int, default=threads)
    ap.add_argument("--max-steps", type=int, default=0, help="stop each epoch after N steps (smoke tests)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    ap.add_argument("--device", default="cpu", help=device_help)
    ap.add_argument("--resume", metavar="CKPT",
                    help="continue the run that wrote CKPT (a checkpoint of this trainer): weights, "
                         "optimiser and scheduler state, epoch and RNG state; pass the run's own options again")
    return ap


def eval_arg_parser(doc, onnx_help="evaluate this ONNX file with onnxruntime instead", prog=None):
    """The arguments every evaluator takes first; the evaluator adds its own, then calls
    parse_eval_args."""
    ap = parser(doc, prog)
    ap.add_argument("--checkpoint")
    ap.add_argument("--onnx", help=onnx_help)
    ap.add_argument("--data", required=True)
    ap.add_argument("--labels", default=PED2_TEST_LABELS)
    return ap


def parse_eval_args(ap, argv=None):
    """(args, labels): one of --checkpoint / --onnx required, torch limited to --threads, and
    the labels file read."""
    import torch
    args = ap.parse_args(argv)
    if not args.checkpoint and not args.onnx:
        ap.error("--checkpoint or --onnx is required")
    torch.set_num_threads(args.threads)
    with open(args.labels) as f:
        return args, json.load(f)


def export_arg_parser(doc, name, trained_on, prog=None):
    """The arguments every exporter takes; the exporter adds its own."""
    ap = parser(doc, prog)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out-dir", default=os.path.join(REPO, "engine/models", name))
    ap.add_argument("--name", default=name)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--dataset", default="ped2/training")
    ap.add_argument("--trained-on", default=trained_on)
    return ap
