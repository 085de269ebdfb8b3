"""Small helpers the zoo's training and export scripts share."""
from __future__ import annotations

import ast
import dataclasses
import os


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
