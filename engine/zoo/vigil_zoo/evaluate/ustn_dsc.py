"""Frame-level ROC AUC of a USTN-DSC checkpoint (or its ONNX export), two protocols.

    vigil-zoo evaluate --model ustn-dsc --checkpoint engine/zoo/checkpoints/ped2-ustn-dsc.pt \
        --data engine/zoo/data/ped2-test-128x192 \
        --labels ../shared/datasets/ped2/testing/labels.json
        # (--onnx engine/models/ped2-ustn-dsc/model.onnx evaluates the export with onnxruntime)

Clip score (paper): the network restores the 9 frames of a clip from its keyframes 0, 4, 8;
both images are mapped from [-1, 1] to [0, 1], MSE_i = mean((R_i - I_i)^2) per restored frame,
and the clip's score is the PSNR of its worst frame, 10 log10(1 / max_i MSE_i).

* **sliding** (how the Rust runtime scores a stream, causal): frame t >= 8 gets the score of the
  clip t-8..t (keyframes t-8, t-4, t); frames 0..7 have no full clip and take frame 8's score;
* **paper** (non-overlapping clips): every frame of clip [9j, 9j+8] gets that clip's score; the
  last T mod 9 frames of a video, which no full clip covers, take the last clip's score. The
  clip [9j, 9j+8] is exactly the sliding clip ending at 9j+8, so both protocols come from the
  same forward passes.

Anomaly score S = 1 - minmax(PSNR) per video (paper); all labelled frames of all videos are
pooled into one ROC curve, per-video AUCs are printed where a video has both classes. For
reference also: the sliding score min-maxed over the whole test set instead of per video (what a
stream without per-video normalisation would see, up to calibration), and the largest 16x16/8
patch MSE over the 9 restored frames (the package's [scoring] patches), sliding, per video.
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load
from ..data import load_videos
from ..metrics import auc_table, labels_for, minmax
from ..options import eval_arg_parser, parse_eval_args


def make_runner(args):
    if args.onnx:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])

        def run(key):  # the export has a static batch of 1
            return torch.from_numpy(np.concatenate(
                [sess.run(["clip"], {"keyframes": key[i:i + 1].numpy()})[0] for i in range(key.shape[0])]))
        return run, 9, (0, 4, 8)
    model, _ = load("ustn-dsc", args.checkpoint)

    def run(key):
        with torch.no_grad():
            return model(key)
    return run, model.cfg.clip, model.cfg.keyframes


def clip_scores(pred, clip, patch=16, stride=8):
    """[B] worst-frame PSNR and [B] largest patch MSE of restored clips [B, T, H, W]."""
    err = ((pred.double() - clip.double()) / 2.0) ** 2
    mse = err.mean(dim=(2, 3)).clamp_min(1e-12)                       # [B, T]
    psnr = 10.0 * torch.log10(1.0 / mse.max(dim=1).values)
    pm = F.avg_pool2d(err, patch, stride).amax(dim=(1, 2, 3))
    return psnr.numpy(), pm.numpy()


PROG = "vigil-zoo evaluate --model ustn-dsc"


def main(argv=None, prog=PROG):
    ap = eval_arg_parser(__doc__, prog=prog)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8, help="clips per forward pass (PyTorch)")
    ap.add_argument("--json", help="also write the results here")
    args, labels = parse_eval_args(ap, argv)
    run, T, key = make_runner(args)

    slide, paper, slide_patch, ys, vids = [], [], [], [], []
    t0, passes = time.time(), 0
    for vid, arr in load_videos(args.data, mmap=True):
        if vid not in labels["videos"]:
            continue
        n = arr.shape[0]
        p = np.zeros(n)
        q = np.zeros(n)
        ends = list(range(T - 1, n))
        for b in range(0, len(ends), args.batch):
            ts = ends[b:b + args.batch]
            clip = torch.from_numpy(np.stack([np.asarray(arr[t - T + 1:t + 1, 0], np.float32) for t in ts]))
            pred = run(clip[:, list(key)].contiguous())
            p[ts], q[ts] = clip_scores(pred, clip)
            passes += len(ts)
        p[:T - 1], q[:T - 1] = p[T - 1], q[T - 1]   # no full clip yet: the first scored frame's value
        pp = np.zeros(n)
        nclips = n // T
        for j in range(nclips):
            pp[j * T:(j + 1) * T] = p[j * T + T - 1]
        pp[nclips * T:] = p[nclips * T - 1]          # uncovered tail: the last clip's score
        slide.append(p)
        paper.append(pp)
        slide_patch.append(q)
        ys.append(labels_for(labels, vid, n))
        vids.append(vid)
    dt = time.time() - t0
    y = np.concatenate(ys)
    split = np.cumsum([len(p) for p in slide])[:-1]
    scores = {
        "sliding": [1.0 - minmax(p) for p in slide],
        "paper": [1.0 - minmax(p) for p in paper],
        "sliding_global": list(np.split(1.0 - minmax(np.concatenate(slide)), split)),
        "sliding_patch": [minmax(q) for q in slide_patch],
    }
    names = {"sliding": "sliding clip ending at t, 1-minmax(PSNR)/video",
             "paper": "paper: non-overlapping clips, 1-minmax(PSNR)/video",
             "sliding_global": "sliding, 1-minmax(PSNR) over the test set",
             "sliding_patch": "sliding, max 16x16/8 patch MSE, minmax/video"}
    print(f"{len(ys)} videos, {len(y)} frames ({y.mean():.1%} anomalous), {passes} forward passes in "
          f"{dt:.1f} s ({1000 * dt / max(1, passes):.1f} ms/clip, batch {1 if args.onnx else args.batch}, "
          f"{args.threads} thread(s)); mean worst-frame PSNR {np.mean([p[T - 1:].mean() for p in slide]):.2f} dB")
    res = auc_table(scores, names, ys, vids, 50)
    res["mean_score_psnr"] = {v: float(p[T - 1:].mean()) for v, p in zip(vids, slide)}
    print("  mean worst-frame PSNR per video: " + " ".join(f"{v} {res['mean_score_psnr'][v]:.2f}" for v in vids))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
