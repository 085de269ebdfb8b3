"""Pseudo-anomalies made from normal footage: the label-free yardstick for model selection.

A one-class model is trained on normal footage only, and nothing it is tuned on may come from
labelled test videos. To compare checkpoints, epochs or score-fusion weights anyway, every
held-out normal clip is turned into "test videos" whose anomalous stretch is made from the clip
itself, and scored with the paper protocol (each video min-max normalised, all frames pooled into
one ROC AUC). Two kinds, both the issue's suggestions, chosen before any score was looked at:

- `speed`: the middle of the clip is played `SPEED` times too fast (every third frame): everything
  in view moves three times its normal pace, as a runner or a cyclist does among walkers; each
  frame on its own is normal.
- `patch`: a window of the clip where something moved (at another time and place, its content
  playing on as recorded) is pasted with a feathered edge onto the middle frames and slid across
  the view at a steady pace on top of its own motion: something that moves unlike anything
  normal, in a place it does not belong.

The geometry is relative to the frame (a patch of an eighth of the height by a sixteenth of the
width, sliding a 96th of the width per frame: 16x12 px at 2 px per frame at 128x192, about a
walker's size, twice a walker's pace), so the same rule serves any camera's footage. The speed
stretch plays every second frame. (A first version - three times the pace, a 25x16 patch with
hard edges at 4 px per frame - was separated perfectly by the interpolation error alone, AUC
1.000, so it could not rank anything.)
The draws are seeded: the same clips give the same pseudo-videos on every run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import auc, minmax

SPEED = 2                       # frame step of the `speed` stretch
PATCH_FRACTION = (1 / 8, 1 / 16)  # patch height, width as fractions of the frame's
PATCH_PACE = 1 / 96             # patch displacement per frame, as a fraction of the frame width
KINDS = ("speed", "patch")


@dataclass
class PseudoVideo:
    name: str              # "<clip>:<kind>"
    kind: str
    frames: np.ndarray     # [T, C, H, W] float32, the clip's pixel range
    labels: np.ndarray     # [T] int64, 1 = made anomalous


def speed_up(clip: np.ndarray, name: str) -> PseudoVideo:
    """The first and last quarter as recorded, the half between at SPEED times the pace."""
    t = clip.shape[0]
    head = t // 4
    fast = np.arange(head, t - head, SPEED)
    idx = np.concatenate([np.arange(head), fast, np.arange(t - head, t)])
    labels = np.zeros(len(idx), np.int64)
    labels[head:head + len(fast)] = 1
    return PseudoVideo(f"{name}:speed", "speed", np.ascontiguousarray(clip[idx]), labels)


def paste_patch(clip: np.ndarray, name: str, rng: np.random.Generator) -> PseudoVideo:
    """Where the clip moved most at another time, a window of the clip itself (live: its content
    plays on as recorded) is pasted with a feathered edge and slid left to right across a random
    row of the middle half of the frame, over the middle frames of the clip."""
    t, _, h, w = clip.shape
    ph, pw = max(4, round(h * PATCH_FRACTION[0])), max(4, round(w * PATCH_FRACTION[1]))
    pace = max(1.0, w * PATCH_PACE)
    # a short clip keeps a normal frame at each end: a video needs both classes
    steps = min(t - 2, int((w - pw) // pace) + 1)
    start = (t - steps) // 2
    # the source: the window with the most motion, over the steps its track is played from
    src0 = int(rng.integers(0, t - steps + 1))
    motion = np.abs(np.diff(clip[src0:src0 + steps], axis=0)).sum(axis=(0, 1))      # [H, W]
    ii = np.pad(motion.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = ii[ph:, pw:] - ii[:-ph, pw:] - ii[ph:, :-pw] + ii[:-ph, :-pw]
    sy, sx = np.unravel_index(int(np.argmax(sums)), sums.shape)
    # feathered mask: a linear ramp over the outer 2 px, so the paste has no hard seam
    ramp = lambda n: np.minimum(np.minimum(np.arange(n) + 1, np.arange(n)[::-1] + 1) / 3.0, 1.0)
    mask = (ramp(ph)[:, None] * ramp(pw)[None, :]).astype(np.float32)
    row = int(rng.integers(h // 4, max(h // 4 + 1, 3 * h // 4 - ph)))
    frames = clip.copy()
    labels = np.zeros(t, np.int64)
    for i in range(steps):
        x = int(round(i * pace))
        dst = frames[start + i, :, row:row + ph, x:x + pw]
        src = clip[src0 + i, :, sy:sy + ph, sx:sx + pw]
        frames[start + i, :, row:row + ph, x:x + pw] = mask * src + (1 - mask) * dst
        labels[start + i] = 1
    return PseudoVideo(f"{name}:patch", "patch", frames, labels)


def pseudo_videos(clips, seed=0, kinds=KINDS) -> list:
    """[PseudoVideo] for [(clip id, frames [T, C, H, W])], each kind of each clip in turn."""
    rng = np.random.default_rng(seed)
    out = []
    for name, clip in clips:
        clip = np.asarray(clip, np.float32)
        if clip.shape[0] < 12:
            raise ValueError(f"held-out clip {name}: {clip.shape[0]} frames, at least 12 make a pseudo-anomaly")
        for kind in kinds:
            out.append(speed_up(clip, name) if kind == "speed" else paste_patch(clip, name, rng))
    return out


def pseudo_auc(videos, scores) -> dict:
    """Paper-protocol AUC of one score series per pseudo-video (`scores[i]` for `videos[i]`):
    {"all": pooled AUC, "<kind>": pooled AUC over that kind's videos}."""
    res = {}
    for kind in (None,) + tuple(sorted({v.kind for v in videos})):
        pick = [i for i, v in enumerate(videos) if kind is None or v.kind == kind]
        y = np.concatenate([videos[i].labels for i in pick])
        s = np.concatenate([minmax(scores[i]) for i in pick])
        res[kind or "all"] = auc(y, s) if 0 < y.sum() < len(y) else float("nan")
    return res
