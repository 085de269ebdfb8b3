"""Frame-level ROC AUC of a BDFI checkpoint (or its ONNX export) on labelled test videos.

    vigil-zoo evaluate --model bdfi --checkpoint engine/zoo/checkpoints/ped2-bdfi.pt \
        --data engine/zoo/data/ped2-test-128x192 \
        --labels /work/shared/datasets/ped2/testing/labels.json

Paper protocol: every score is min-max normalised per video, then all frames of all videos are
pooled into one ROC curve. Frame t is scored from (t-1, t+1); the first and last frame of a video
have no triplet and take the score of their neighbour.

Score variants printed:
  S_int mean      mean squared interpolation error of the frame (the paper's L2 S_int)
  S_int psnr      1 - minmax(PSNR) of the same error (common in prediction papers)
  S_int patchmax  max over PxP patches (stride S) of the mean squared error
  S_con mean      mean of mem_err (the paper's S_con)
  S_con patchmax  max over patches of mem_err (upsampled to the frame if coarser)
  fused paper     alpha*minmax(S_int mean) + (1-alpha)*minmax(S_con mean), alpha = 0.3
  fused patch     alpha*minmax(S_int patchmax) + (1-alpha)*minmax(S_con patchmax)
  flow patchmax   max over patches of the `flow` output (mean magnitude of the two estimated flows)
  shipped         (1-w)*(alpha*S_int + (1-alpha)*S_con) + w*flow, the `bdfi` recipe's score with
                  [params] alpha and flow_weight = w (--alpha, --flow-weight; docs/models.md)
and, for reference, the motion-energy baseline (max over patches of the squared difference of
consecutive frames), computed on the same tensors.
"""
from __future__ import annotations

import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load
from ..data import load_videos
from ..metrics import auc, labels_for, minmax
from ..options import eval_arg_parser, parse_eval_args


def patch_max(err, patch, stride):
    """err [B,1,H,W] -> per-item max over patches of the patch mean, as a numpy [B]."""
    return F.avg_pool2d(err, patch, stride).amax(dim=(1, 2, 3)).double().numpy()


def make_runner(args):
    if args.onnx:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])

        def run(prev, nxt):  # the export has a static batch of 1
            outs = [sess.run(["frame", "mem_err", "flow"], {"prev": prev[i:i + 1].numpy(),
                                                            "next": nxt[i:i + 1].numpy()})
                    for i in range(prev.shape[0])]
            return tuple(torch.from_numpy(np.concatenate([o[k] for o in outs])) for k in range(3))
        return run
    return torch_runner(load("bdfi", args.checkpoint)[0])


def torch_runner(model):
    """(prev, next) -> (frame, mem_err, flow) of a PyTorch BDFI, without gradients."""
    def run(prev, nxt):
        with torch.no_grad():
            return model(prev, nxt)
    return run


KEYS = ("int_mean", "int_psnr", "int_patch", "con_mean", "con_patch", "motion_patch", "flow_patch")


def components(run, arr, patch, stride, batch):
    """{key: [T] raw score per frame} of one video [T, C, H, W] for every key of KEYS. Frame t is
    scored from (t-1, t+1); the first and last frame have no triplet and copy their neighbour."""
    n = arr.shape[0]
    s = {k: np.zeros(n) for k in KEYS}
    ts = list(range(1, n - 1))
    for b in range(0, len(ts), batch):
        tb = ts[b:b + batch]
        prev = torch.from_numpy(np.ascontiguousarray(arr[[t - 1 for t in tb]]))
        cur = torch.from_numpy(np.ascontiguousarray(arr[tb]))
        nxt = torch.from_numpy(np.ascontiguousarray(arr[[t + 1 for t in tb]]))
        frame, mem_err, flow_mag = run(prev, nxt)
        err = (frame - cur) ** 2
        me = mem_err
        if me.shape[-2:] != cur.shape[-2:]:
            me = F.interpolate(me, size=cur.shape[-2:], mode="bilinear", align_corners=False)
        mse = err.mean(dim=(1, 2, 3)).double().numpy()
        s["int_mean"][tb] = mse
        # PSNR for images in [-1,1] (peak-to-peak 2): 10 log10(4 / mse); negated = higher is worse
        s["int_psnr"][tb] = -10 * np.log10(4.0 / np.maximum(mse, 1e-10))
        s["int_patch"][tb] = patch_max(err, patch, stride)
        s["con_mean"][tb] = mem_err.mean(dim=(1, 2, 3)).double().numpy()
        s["con_patch"][tb] = patch_max(me, patch, stride)
        s["motion_patch"][tb] = patch_max((cur - prev) ** 2, patch, stride)
        s["flow_patch"][tb] = patch_max(flow_mag, patch, stride)
    for k in KEYS:
        s[k][0], s[k][-1] = s[k][1], s[k][-2]
    return s


def fused(c, alpha, flow_weight):
    """The `bdfi` recipe's frame score from per-video min-max normalised components `c`:
    (1 - w) (alpha S_int + (1 - alpha) S_con) + w S_flow (docs/models.md)."""
    return (1 - flow_weight) * (alpha * c["int_mean"] + (1 - alpha) * c["con_mean"]) + flow_weight * c["flow_patch"]


PROG = "vigil-zoo evaluate --model bdfi"


def main(argv=None, prog=PROG):
    ap = eval_arg_parser(__doc__, prog=prog)
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--flow-weight", type=float, default=0.5)
    ap.add_argument("--patch", type=int, nargs=2, default=[16, 16], metavar=("H", "W"))
    ap.add_argument("--stride", type=int, nargs=2, default=[8, 8], metavar=("H", "W"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="frames per forward pass (PyTorch)")
    ap.add_argument("--json", help="also write the per-variant AUCs here")
    args, labels = parse_eval_args(ap, argv)
    run = make_runner(args)
    patch, stride = tuple(args.patch), tuple(args.stride)

    per_video = {k: [] for k in KEYS}
    ys = []
    t0 = time.time()
    nframes = 0
    for vid, arr in load_videos(args.data):
        if vid not in labels["videos"]:
            continue
        s = components(run, arr, patch, stride, args.batch)
        for k in KEYS:
            per_video[k].append(minmax(s[k]))
        ys.append(labels_for(labels, vid, arr.shape[0]))
        nframes += arr.shape[0] - 2
    dt = time.time() - t0
    y = np.concatenate(ys)
    cat = {k: np.concatenate(v) for k, v in per_video.items()}
    a = args.alpha
    variants = {
        "S_int mean (L2)": cat["int_mean"],
        "S_int psnr": cat["int_psnr"],
        "S_int patchmax": cat["int_patch"],
        "S_con mean": cat["con_mean"],
        "S_con patchmax": cat["con_patch"],
        f"fused paper (a={a})": a * cat["int_mean"] + (1 - a) * cat["con_mean"],
        f"fused patch (a={a})": a * cat["int_patch"] + (1 - a) * cat["con_patch"],
        "fused int-patch + con-mean": a * cat["int_patch"] + (1 - a) * cat["con_mean"],
        "motion-energy patchmax (ref)": cat["motion_patch"],
    }
    variants["flow patchmax"] = cat["flow_patch"]
    w = args.flow_weight
    variants[f"shipped (a={a}, flow_weight={w})"] = fused(cat, a, w)
    res = {}
    print(f"{len(ys)} videos, {len(y)} frames ({y.mean():.1%} anomalous), "
          f"{nframes} forward passes in {dt:.1f} s ({1000 * dt / max(1, nframes):.1f} ms/frame, batch {args.batch if not args.onnx else 1})")
    for name, sc in variants.items():
        res[name] = auc(y, sc)
        print(f"  {name:32s} AUC = {res[name]:.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
