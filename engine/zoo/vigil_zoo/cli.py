"""`vigil-zoo`: one command line for the zoo.

    vigil-zoo list
    vigil-zoo train    --model NAME [the model's training options] [--device cuda] [--resume CKPT]
    vigil-zoo export   --model NAME --checkpoint CKPT [--out-dir DIR] [the model's export options]
    vigil-zoo evaluate --model NAME (--checkpoint CKPT | --onnx FILE) --data DIR [options]
    vigil-zoo parity   --model NAME --checkpoint CKPT --inputs DIR --out DIR
    vigil-zoo bench    --model NAME [--checkpoint CKPT] [--threads 1] [--iters N] [--json]
    vigil-zoo flops    [--model NAME ...]
    vigil-zoo motion-energy --testing DIR
    vigil-zoo flows-cv2 FOLDER...
    vigil-zoo detector train|ref [options]
    vigil-zoo select   --model NAME --data VAL_TENSORS --checkpoint CKPT [CKPT ...] [--json OUT]
    vigil-zoo scene    --frames DIR --model NAME --out PKG [--schedule tiny|paper] [--device cuda] [--resume]

`vigil-zoo train|export|evaluate --model NAME --help` lists that model's options. The same
works as `python -m vigil_zoo ...`.
"""
from __future__ import annotations

import importlib
import sys

from .registry import KINDS, MODELS, get

# commands that are one module's main(argv, prog), with their own --model option where they have one
TOOLS = {
    "parity": "vigil_zoo.parity",
    "bench": "vigil_zoo.bench",
    "flops": "vigil_zoo.flops",
    "motion-energy": "vigil_zoo.motion_energy",
    "flows-cv2": "vigil_zoo.flows_cv2",
    "scene": "vigil_zoo.scene",
    "select": "vigil_zoo.select",
}
DETECTOR = {"train": "vigil_zoo.detector.train", "ref": "vigil_zoo.detector.ref"}


def _pop_model(argv):
    """(NAME, argv without --model NAME / --model=NAME), or (None, argv)."""
    for i, a in enumerate(argv):
        if a == "--model" and i + 1 < len(argv):
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if a.startswith("--model="):
            return a.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return None, argv


def _list():
    for spec in MODELS.values():
        print(f"{spec.name:9s} {spec.summary}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "list":
        _list()
    elif cmd in KINDS:
        name, rest = _pop_model(rest)
        if name is None:
            print(f"vigil-zoo {cmd}: --model NAME is required; the models:", file=sys.stderr)
            _list()
            return 2
        get(name).entry(cmd)(rest, f"vigil-zoo {cmd} --model {name}")
    elif cmd in TOOLS:
        importlib.import_module(TOOLS[cmd]).main(rest, f"vigil-zoo {cmd}")
    elif cmd == "detector" and rest and rest[0] in DETECTOR:
        importlib.import_module(DETECTOR[rest[0]]).main(rest[1:], f"vigil-zoo detector {rest[0]}")
    else:
        print(f"vigil-zoo: unknown command {' '.join(argv[:2])!r}\n\n{__doc__.strip()}", file=sys.stderr)
        return 2
    return 0
