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
