"""Training/test tensors exported by the Rust runtime (`vigil dataset export`).

Layout (docs/model-package.md, "Dataset export"): a folder with `index.json`
(`{"geometry": {...}, "videos": [{"id", "frames", "file"}]}`) and one `<video>.npy` per video,
float32 [T, C, H, W] in the pixel range of the manifest ([-1, 1] here). Using the runtime's own
preprocessing for training means training and serving cannot drift apart.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch


def load_index(folder):
    with open(os.path.join(folder, "index.json")) as f:
        return json.load(f)


def load_videos(folder, mmap=False):
    """Returns [(video_id, array [T, C, H, W] float32)] in index order."""
    index = load_index(folder)
    out = []
    for v in index["videos"]:
        arr = np.load(os.path.join(folder, v["file"]), mmap_mode="r" if mmap else None)
        if arr.dtype != np.float32 or arr.ndim != 4:
            raise ValueError(f"{v['file']}: expected float32 [T,C,H,W], got {arr.dtype} {arr.shape}")
        if arr.shape[0] != v["frames"]:
            raise ValueError(f"{v['file']}: index says {v['frames']} frames, file has {arr.shape[0]}")
        out.append((v["id"], arr))
    return out


class _Sampler:
    """Shuffled fixed-size batches over `self.items` (built by the subclass, which also provides
    `make_batch(items, rng)`); the last partial batch is dropped."""

    def __len__(self):
        return len(self.items)

    def batches(self, batch_size, rng: np.random.Generator, shuffle=True):
        order = rng.permutation(len(self.items)) if shuffle else np.arange(len(self.items))
        for s in range(0, len(order) - batch_size + 1, batch_size):  # drop the last partial batch
            yield self.make_batch([self.items[i] for i in order[s:s + batch_size]], rng)


class TripletSampler(_Sampler):
    """(I_{t-1}, I_t, I_{t+1}) triplets within each video, t = 1 .. T-2 (never across videos).

    Augmentations (training only): a random crop of size `crop` (the networks are fully
    convolutional; cropping cuts the CPU cost per sample by H*W/crop area) and a random temporal
    reversal (prev <-> next), which keeps a triplet normal (people walk both ways). No spatial
    flips: on Ped2 the layout (walkway vs. grass) is part of what is normal.
    """

    def __init__(self, folder, crop=None, reverse_p=0.5, videos=None):
        self.videos = [a for _, a in load_videos(folder)]
        if videos is not None:
            self.videos = [self.videos[i] for i in videos]
        self.items = [(vi, t) for vi, a in enumerate(self.videos) for t in range(1, a.shape[0] - 1)]
        self.crop = crop
        self.reverse_p = reverse_p

    def make_batch(self, items, rng):
        prevs, curs, nexts = [], [], []
        for vi, t in items:
            a = self.videos[vi]
            trip = a[t - 1:t + 2]                      # [3, C, H, W]
            if self.crop is not None:
                ch, cw = self.crop
                h, w = trip.shape[-2:]
                y = int(rng.integers(0, h - ch + 1))
                x = int(rng.integers(0, w - cw + 1))
                trip = trip[..., y:y + ch, x:x + cw]
            if rng.random() < self.reverse_p:
                trip = trip[::-1]
            prevs.append(trip[0]); curs.append(trip[1]); nexts.append(trip[2])
        f = lambda xs: torch.from_numpy(np.ascontiguousarray(np.stack(xs)))
        return f(prevs), f(curs), f(nexts)


def iter_test_triplets(arr):
    """All (t, prev, cur, next) of one video in order, as [1, C, H, W] tensors."""
    for t in range(1, arr.shape[0] - 1):
        yield t, *(torch.from_numpy(np.ascontiguousarray(arr[i:i + 1])) for i in (t - 1, t, t + 1))


# --------------------------------------------------------------------------------------------
# Frames with their optical flow (maam-net)
# --------------------------------------------------------------------------------------------

def load_flows(folder, mmap=False):
    """Returns [(video_id, frames [T, C, H, W], flows [T-1, 2, H, W])] in index order.

    Flows are written next to the frames by `vigil dataset export --flow` (or, during
    development, by flows_cv2.py): `<video>.flow.npy`, float32, entry t = dense flow from frame t
    to frame t+1, channel 0 = dx, channel 1 = dy, in pixels of the exported geometry; the video's
    index entry names the file under "flow_file"."""
    index = load_index(folder)
    out = []
    for (vid, arr), v in zip(load_videos(folder, mmap), index["videos"]):
        if "flow_file" not in v:
            raise ValueError(f"{folder}: video {vid} has no flow_file in index.json "
                             "(export with `vigil dataset export --flow`)")
        fl = np.load(os.path.join(folder, v["flow_file"]), mmap_mode="r" if mmap else None)
        want = (arr.shape[0] - 1, 2) + tuple(arr.shape[2:])
        if fl.dtype != np.float32 or tuple(fl.shape) != want:
            raise ValueError(f"{v['flow_file']}: expected float32 {list(want)}, got {fl.dtype} {list(fl.shape)}")
        out.append((vid, arr, fl))
    return out


class FrameFlowSampler(_Sampler):
    """(I_t, F_{t->t+1}) pairs within each video, t = 0 .. T-2.

    The only augmentation is a random crop of size `crop`, taken at the same place in the frame
    and in the flow (the network is fully convolutional and its memory is read per position, so
    it does not depend on where a crop comes from; crops should be multiples of the encoder's
    total stride). No flips and no temporal reversal: a flipped or reversed sample would need
    its flow negated, and on Ped2 the layout and the walking directions are part of normality.
    """

    def __init__(self, folder, crop=None, videos=None):
        vids = load_flows(folder)
        if videos is not None:
            vids = [vids[i] for i in videos]
        self.frames = [a for _, a, _ in vids]
        self.flows = [f for _, _, f in vids]
        self.items = [(vi, t) for vi, f in enumerate(self.flows) for t in range(f.shape[0])]
        self.crop = crop

    def make_batch(self, items, rng):
        frames, flows = [], []
        for vi, t in items:
            x, f = self.frames[vi][t], self.flows[vi][t]          # [C, H, W], [2, H, W]
            if self.crop is not None:
                ch, cw = self.crop
                h, w = x.shape[-2:]
                y0 = int(rng.integers(0, h - ch + 1))
                x0 = int(rng.integers(0, w - cw + 1))
                x, f = x[:, y0:y0 + ch, x0:x0 + cw], f[:, y0:y0 + ch, x0:x0 + cw]
            frames.append(x)
            flows.append(f)
        g = lambda xs: torch.from_numpy(np.ascontiguousarray(np.stack(xs)))
        return g(frames), g(flows)


# --------------------------------------------------------------------------------------------
# Object cubes (hf2vad)
# --------------------------------------------------------------------------------------------

def load_objects(folder, mmap=False):
    """Returns [(video_id, frames_in_video, cubes [M, 5, S, S], flows [M, 8, S, S],
    boxes [M, 5])] in index order, for the object cubes written by
    `vigil dataset export --objects` (index.json: "objects" per video with "frames_file",
    "flows_file", "boxes_file", "count"; top-level "objects" = the extractor's parameters).

    cubes: crops of frames t-4..t (oldest first), [-1, 1]; flows: crops of the 4 flows
    t-4->t-3 .. t-1->t, (dx, dy) per flow, pixels at the exported geometry (not rescaled by the
    crop); boxes: (t, x0, y0, x1, y1), t = 0-based frame index in the video (>= 4). A video with
    no object has M = 0. Every shape, dtype and frame index is checked, so a stale or partial
    export fails here rather than as a silent mis-alignment of scores and labels."""
    index = load_index(folder)
    if "objects" not in index:
        raise ValueError(f"{folder}: index.json has no \"objects\" (export with `vigil dataset export --objects`)")
    out = []
    for v in index["videos"]:
        o = v.get("objects")
        if o is None:
            raise ValueError(f"{folder}: video {v['id']} has no \"objects\" entry in index.json")
        load = lambda k: np.load(os.path.join(folder, o[k]), mmap_mode="r" if mmap else None)
        cubes, flows, boxes = load("frames_file"), load("flows_file"), load("boxes_file")
        m = int(o["count"])
        for name, a, tail in (("frames_file", cubes, (5,)), ("flows_file", flows, (8,)), ("boxes_file", boxes, (5,))):
            if a.dtype != np.float32 or a.shape[0] != m or tuple(a.shape[1:len(tail) + 1]) != tail:
                raise ValueError(f"{o[name]}: expected float32 [{m}, {tail[0]}, ...], got {a.dtype} {list(a.shape)}")
        if cubes.shape[2:] != flows.shape[2:] or cubes.ndim != 4 or cubes.shape[2] != cubes.shape[3]:
            raise ValueError(f"video {v['id']}: cube shapes {list(cubes.shape)} / {list(flows.shape)}")
        t = np.asarray(boxes[:, 0]) if m else np.zeros(0)
        if m and (t.min() < 4 or t.max() >= v["frames"] or np.any(t != np.round(t))):
            raise ValueError(f"video {v['id']}: object frame indices must be integers in [4, {v['frames']})")
        out.append((v["id"], int(v["frames"]), cubes, flows, boxes))
    return out


class ObjectCubeSampler(_Sampler):
    """All object cubes of the exported videos, shuffled across videos (objects are independent
    samples): batches of (cubes [B, 5, S, S] = frames t-4..t, flows [B, 8, S, S]).

    The arrays are read into memory once (53 kB per 32x32 object). No augmentation: a flipped
    cube would need its flows transformed, and on Ped2 the walking directions and the scene
    layout are part of normality. `videos` selects videos by index; `exclude` drops videos by
    id and `only` keeps just these ids (a held-out normal video for model selection)."""

    def __init__(self, folder, videos=None, exclude=(), only=None):
        vids = load_objects(folder, mmap=True)
        if videos is not None:
            vids = [vids[i] for i in videos]
        vids = [v for v in vids if v[0] not in set(exclude) and (only is None or v[0] in set(only))]
        if not vids:
            raise ValueError(f"{folder}: no video left after the selection")
        self.video_ids = [v[0] for v in vids]
        self.cubes = np.concatenate([np.asarray(v[2]) for v in vids])
        self.flows = np.concatenate([np.asarray(v[3]) for v in vids])
        self.items = list(range(self.cubes.shape[0]))

    def make_batch(self, items, rng):
        idx = np.sort(np.asarray(items))
        g = lambda a: torch.from_numpy(np.ascontiguousarray(a[idx]))
        return g(self.cubes), g(self.flows)
