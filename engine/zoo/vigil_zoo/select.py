"""`vigil-zoo select`: choose the checkpoint and the score's fusion weights without labels.

    vigil-zoo select --model bdfi --data VAL_TENSORS --checkpoint A.pt [B.pt ...] [--json OUT]

VAL_TENSORS is a `vigil dataset export` folder of held-out normal clips (`vigil-zoo scene` writes
one as WORK/data/val; for Ped2, training videos 14-16, the ones `scene` holds out). Each clip
becomes pseudo-anomalous videos (vigil_zoo.pseudo: a stretch played three times too fast, a
patch of the scene slid across it); every checkpoint scores them, each candidate score (the
paper's, each component, each fusion weight on a grid) is rated by the paper protocol's AUC over
them, and the best checkpoint-and-weights pair is chosen. Ties go to the weights nearest the
paper's. Test labels are never read: `vigil eval` / `vigil-zoo evaluate` report afterwards.
"""
from __future__ import annotations

import json
import time

import numpy as np

from .data import load_videos
from .options import parser
from .pseudo import pseudo_auc, pseudo_videos

GRID = [round(0.1 * i, 1) for i in range(11)]


class BdfiSelector:
    """BDFI's score (docs/models.md): (1 - w)(alpha S_int + (1 - alpha) S_con) + w S_flow;
    the paper's is alpha = 0.3, w = 0."""
    paper = {"alpha": 0.3, "flow_weight": 0.0}
    components = {"S_int": "int_mean", "S_con": "con_mean", "S_flow": "flow_patch"}

    def __init__(self, patch=(16, 16), stride=(8, 8), batch=16):
        self.patch, self.stride, self.batch = patch, stride, batch

    def scores(self, model, frames):
        from .evaluate.bdfi import components, torch_runner
        return components(torch_runner(model), frames, self.patch, self.stride, self.batch)

    def candidates(self):
        return [{"alpha": a, "flow_weight": w} for a in GRID for w in GRID]

    def fuse(self, c, p):
        from .evaluate.bdfi import fused
        return fused(c, p["alpha"], p["flow_weight"])


SELECTORS = {"bdfi": BdfiSelector}


def _distance(p, paper):
    return sum(abs(p[k] - paper[k]) for k in paper)


def rate_checkpoint(selector, model, videos) -> dict:
    """Pseudo-anomaly AUCs of one model: each component, the paper's score and every candidate;
    the best candidate (ties: nearest the paper's weights)."""
    from .metrics import minmax
    raw = [selector.scores(model, v.frames) for v in videos]
    norm = [{k: minmax(s[k]) for k in s} for s in raw]
    comps = {label: pseudo_auc(videos, [s[key] for s in raw]) for label, key in selector.components.items()}
    rated = []
    for p in selector.candidates():
        rated.append((p, pseudo_auc(videos, [selector.fuse(c, p) for c in norm])))
    best_p, best = max(rated, key=lambda r: (round(r[1]["all"], 9), -_distance(r[0], selector.paper)))
    paper = pseudo_auc(videos, [selector.fuse(c, selector.paper) for c in norm])
    return {"components": comps, "paper": {"params": selector.paper, "auc": paper},
            "best": {"params": best_p, "auc": best},
            "grid": [{"params": p, "auc": a["all"]} for p, a in rated]}


def select(name, checkpoints, data, seed=0, log=print) -> dict:
    """Rates every checkpoint on the pseudo-anomalies of the clips in `data` and returns
    {"videos", "checkpoints": [{checkpoint, ...rate_checkpoint}], "chosen": {checkpoint, params, auc}}."""
    from .checkpoint import load
    if name not in SELECTORS:
        raise SystemExit(f"vigil-zoo select --model {name}: no pseudo-anomaly scorer for this model yet "
                         f"(have: {', '.join(SELECTORS)}); `vigil-zoo scene` falls back to the validation loss")
    selector = SELECTORS[name]()
    videos = pseudo_videos(load_videos(data), seed=seed)
    out = {"data": data, "seed": seed,
           "videos": [{"name": v.name, "frames": int(len(v.labels)), "anomalous": int(v.labels.sum())} for v in videos],
           "checkpoints": []}
    for path in checkpoints:
        t0 = time.time()
        model, _ = load(name, path)
        r = rate_checkpoint(selector, model, videos)
        r["checkpoint"] = path
        out["checkpoints"].append(r)
        b = r["best"]
        log(f"{path}: paper score {r['paper']['auc']['all']:.4f}; "
            + ", ".join(f"{k} {a['all']:.4f}" for k, a in r["components"].items())
            + f"; best {b['params']} {b['auc']['all']:.4f} "
            + "(" + ", ".join(f"{k} {v:.4f}" for k, v in b["auc"].items() if k != "all") + f") [{time.time() - t0:.0f} s]")
    win = max(out["checkpoints"], key=lambda r: r["best"]["auc"]["all"])
    out["chosen"] = {"checkpoint": win["checkpoint"], "params": win["best"]["params"], "auc": win["best"]["auc"]}
    return out


def main(argv=None, prog="vigil-zoo select"):
    ap = parser(__doc__, prog)
    ap.add_argument("--model", required=True, choices=sorted(SELECTORS))
    ap.add_argument("--data", required=True, help="`vigil dataset export` folder of held-out normal clips")
    ap.add_argument("--checkpoint", required=True, nargs="+", help="checkpoints to compare (e.g. one per epoch)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pseudo-anomaly draws")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write every rating here")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    res = select(args.model, args.checkpoint, args.data, args.seed)
    c = res["chosen"]
    print(f"chosen: {c['checkpoint']} with {c['params']}: pseudo-anomaly AUC {c['auc']['all']:.4f} "
          f"over {len(res['videos'])} pseudo-videos")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0
