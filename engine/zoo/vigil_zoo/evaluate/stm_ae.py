"""Frame-level ROC AUC of an STM-AE checkpoint (or its ONNX export) with the paper's PSNR score.

    vigil-zoo evaluate --model stm-ae --checkpoint engine/zoo/checkpoints/ped2-stm-ae.pt \
        --data engine/zoo/data/ped2-test-128x192 \
        --labels ../shared/datasets/ped2/testing/labels.json
        # (--onnx engine/models/ped2-stm-ae/model.onnx evaluates the export with onnxruntime)

The test folder must hold the flows (`vigil dataset export --flow`). Per test video and frame
t >= n_frames (4): the network sees frames t-4..t-1 and the flows t-4->t-3, t-3->t-2,
t-2->t-1 and predicts frame t; both images are mapped from [-1, 1] to [0, 1] and

    PSNR_t = 10 log10(1 / mean((pred_t - I_t)^2))        (peak 1)

Frames 0..3 have no full window and take the score of frame 4. Paper protocol: the anomaly
score is S_t = 1 - minmax(PSNR) per video, all labelled frames of all videos are pooled into
one ROC curve. Also printed: the per-video AUC (where a video has both classes), and, for
reference, the AUC of the same PSNR min-maxed over the whole test set (`global`) instead of per
video, and of the mean squared error of the prediction's 16x16 patches at stride 8 (max over
patches, the localisation the package's [scoring] table describes).
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load
from ..data import load_flows
from ..metrics import auc_table, labels_for, minmax
from ..options import eval_arg_parser, parse_eval_args


def psnr01(pred, frame):
    """Per-item PSNR [B] (numpy float64) of [-1, 1] images, compared on [0, 1]."""
    mse = (((pred.double() - frame.double()) / 2.0) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return (10.0 * torch.log10(1.0 / mse)).numpy()


def patch_max_mse(pred, frame, patch=16, stride=8):
    err = ((pred.double() - frame.double()) / 2.0) ** 2
    return F.avg_pool2d(err, patch, stride).amax(dim=(1, 2, 3)).numpy()


def make_runner(args):
    if args.onnx:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])

        def run(frames, flows):  # the export has a static batch of 1
            outs = [sess.run(["pred"], {"frames": frames[i:i + 1].numpy(), "flows": flows[i:i + 1].numpy()})[0]
                    for i in range(frames.shape[0])]
            return torch.from_numpy(np.concatenate(outs))
        return run, 4
    model, _ = load("stm-ae", args.checkpoint)

    def run(frames, flows):
        with torch.no_grad():
            return model(frames, flows)
    return run, model.cfg.n_frames


def windows(arr, flows, ts, n):
    """Batched inputs for target frames ts: frames [B,n,H,W], flows [B,2(n-1),H,W], target [B,1,H,W]."""
    fr = np.stack([arr[t - n:t, 0] for t in ts])
    fl = np.stack([flows[t - n:t - 1].reshape(2 * (n - 1), *flows.shape[-2:]) for t in ts])
    tg = np.stack([arr[t] for t in ts])
    g = lambda x: torch.from_numpy(np.ascontiguousarray(x, np.float32))
    return g(fr), g(fl), g(tg)


PROG = "vigil-zoo evaluate --model stm-ae"


def main(argv=None, prog=PROG):
    ap = eval_arg_parser(__doc__, prog=prog)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16, help="windows per forward pass (PyTorch)")
    ap.add_argument("--json", help="also write the results here")
    args, labels = parse_eval_args(ap, argv)
    run, n = make_runner(args)

    psnrs, patch_mse, ys, vids = [], [], [], []
    t0, passes = time.time(), 0
    for vid, arr, flows in load_flows(args.data, mmap=True):
        if vid not in labels["videos"]:
            continue
        T = arr.shape[0]
        p = np.zeros(T)
        q = np.zeros(T)
        for b in range(n, T, args.batch):
            ts = list(range(b, min(b + args.batch, T)))
            frames, fl, target = windows(arr, flows, ts, n)
            pred = run(frames, fl)
            p[ts] = psnr01(pred, target)
            q[ts] = patch_max_mse(pred, target)
            passes += len(ts)
        p[:n] = p[n]      # frames without a full window take the first scored frame's value
        q[:n] = q[n]
        psnrs.append(p)
        patch_mse.append(q)
        ys.append(labels_for(labels, vid, T))
        vids.append(vid)
    dt = time.time() - t0
    y = np.concatenate(ys)
    scores = {
        "psnr": [1.0 - minmax(p) for p in psnrs],                    # the paper's score
        "psnr_global": list(np.split(1.0 - minmax(np.concatenate(psnrs)), np.cumsum([len(p) for p in psnrs])[:-1])),
        "patch_mse": [minmax(q) for q in patch_mse],
    }
    names = {"psnr": "S = 1 - minmax(PSNR) per video (paper)",
             "psnr_global": "1 - minmax(PSNR) over the test set",
             "patch_mse": "max 16x16/8 patch MSE, minmax per video"}
    print(f"{len(ys)} videos, {len(y)} frames ({y.mean():.1%} anomalous), {passes} forward passes in "
          f"{dt:.1f} s ({1000 * dt / max(1, passes):.1f} ms/frame, batch {1 if args.onnx else args.batch}, "
          f"{args.threads} thread(s)); mean PSNR {np.mean(np.concatenate(psnrs)):.2f} dB")
    res = auc_table(scores, names, ys, vids, 42)
    res["mean_psnr"] = {v: float(p[n:].mean()) for v, p in zip(vids, psnrs)}
    print("  mean PSNR per video: " + " ".join(f"{v} {res['mean_psnr'][v]:.2f}" for v in vids))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
