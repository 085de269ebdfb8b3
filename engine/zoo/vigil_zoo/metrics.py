"""Frame-level evaluation (paper protocol): per-video min-max, labels, ROC AUC tables."""
from __future__ import annotations

import numpy as np


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


def auc(y, s) -> float:
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(y, s))


def auc_or_none(y, s):
    """ROC AUC, or None where the video has only one class."""
    return auc(y, s) if 0 < y.sum() < len(y) else None


def auc_table(scores, names, ys, vids, width):
    """Pooled and per-video AUC of each score series (`scores[k]` = one array per video), printed
    as a table; returns {"overall": {k: auc}, "per_video": {k: {video: auc or None}}}."""
    y = np.concatenate(ys)
    res = {"overall": {}, "per_video": {}}
    for k, s in scores.items():
        res["overall"][k] = auc(y, np.concatenate(s))
        res["per_video"][k] = {v: auc_or_none(yv, sv) for v, yv, sv in zip(vids, ys, s)}
    fmt = lambda a: "  n/a " if a is None else f"{a:.4f}"
    print(f"  {'score':{width}s} {'AUC':>7s}   per video " + " ".join(f"{v:>6s}" for v in vids))
    for k in scores:
        print(f"  {names[k]:{width}s} {res['overall'][k]:.4f}   {'':9s} "
              + " ".join(fmt(res["per_video"][k][v]) for v in vids))
    print("  (n/a: the video has no normal frame, or no abnormal one)")
    return res
