"""Frame-level ROC AUC of a MAAM-Net checkpoint (or its ONNX export) with the paper's PSCD score.

    vigil-zoo evaluate --model maam-net --checkpoint engine/zoo/checkpoints/ped2-maam-net.pt \
        --data engine/zoo/data/ped2-test-128x192 \
        --labels ../shared/datasets/ped2/testing/labels.json

The test folder must hold the flows (`vigil dataset export --flow`). PSCD (Patch-based Stride
Convolutional Detection), per frame t = 0 .. T-2:

  img map  = (recon - I_t)^2 summed over channels                  [H, W]
  flow map = |flow - F_{t->t+1}| summed over the 2 channels (L1)   [H, W]
  each map is summed over patches: a convolution with an all-ones kernel of --patch (H x W,
  default 30 x 20) and --stride (default 8 x 5), 'valid' (no padding; --padding same reproduces
  the zero padding of the authors' TensorFlow code);
  fused = (hp_flow * flow_patches + hp_img * img_patches) / (hp_flow + hp_img)  (Ped2: 1, 10);
  score = max over patches.

The last frame of a video has no flow t -> t+1 and takes the score of the frame before it. Paper
protocol: every score is min-max normalised per video, then all frames of all videos are pooled
into one ROC curve (--norm global: one min-max over the whole test set, as the authors' test
script does). Printed: the fused score, the image term alone and the flow term alone,
overall and per video (per-video AUC only where the video has both normal and abnormal frames).
"""
from __future__ import annotations

import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import load
from ..data import load_flows
from ..metrics import auc_table, labels_for, minmax
from ..options import eval_arg_parser, parse_eval_args


def patch_sums(err, patch, stride, padding="valid"):
    """err [B,1,H,W] -> [B,1,gh,gw]: sums over patch x patch windows on the stride grid
    (an all-ones convolution). 'same' pads with zeros like TensorFlow's SAME padding."""
    if padding == "same":
        pads = []
        for n, k, s in zip(err.shape[-2:], patch, stride):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        err = F.pad(err, (pads[1][0], pads[1][1], pads[0][0], pads[0][1]))
    ones = torch.ones(1, 1, *patch, dtype=err.dtype)
    return F.conv2d(err, ones, stride=stride)


def pscd(recon, frame, flow_pred, flow, patch, stride, hp_flow, hp_img, padding="valid"):
    """Per-item (fused, image-only, flow-only) PSCD scores as numpy [B] arrays."""
    img = ((recon - frame) ** 2).sum(dim=1, keepdim=True)
    fl = (flow_pred - flow).abs().sum(dim=1, keepdim=True)
    pi = patch_sums(img, patch, stride, padding)
    pf = patch_sums(fl, patch, stride, padding)
    fused = (hp_flow * pf + hp_img * pi) / (hp_flow + hp_img)
    mx = lambda t: t.amax(dim=(1, 2, 3)).double().numpy()
    return mx(fused), mx(pi), mx(pf)


def make_runner(args):
    if args.onnx:
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        inp = sess.get_inputs()[0].name

        def run(frame):  # the export has a static batch of 1
            outs = [sess.run(names, {inp: frame[i:i + 1].numpy()}) for i in range(frame.shape[0])]
            return tuple(torch.from_numpy(np.concatenate([o[k] for o in outs])) for k in range(2))
        return run
    model, _ = load("maam-net", args.checkpoint)

    def run(frame):
        with torch.no_grad():
            return model(frame)
    return run


PROG = "vigil-zoo evaluate --model maam-net"


def main(argv=None, prog=PROG):
    ap = eval_arg_parser(__doc__, prog=prog)
    ap.add_argument("--patch", type=int, nargs=2, default=[30, 20], metavar=("H", "W"))
    ap.add_argument("--stride", type=int, nargs=2, default=[8, 5], metavar=("H", "W"))
    ap.add_argument("--padding", choices=["valid", "same"], default="valid")
    ap.add_argument("--norm", choices=["video", "global"], default="video",
                    help="min-max per video (paper protocol, default) or over the whole test set "
                         "(the authors' test script; the same AUC as raw scores)")
    ap.add_argument("--hp-flow", type=float, default=1.0)
    ap.add_argument("--hp-img", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16, help="frames per forward pass (PyTorch)")
    ap.add_argument("--json", help="also write the AUCs here")
    args, labels = parse_eval_args(ap, argv)
    run = make_runner(args)
    patch, stride = tuple(args.patch), tuple(args.stride)

    keys = ("fused", "img", "flow")
    per_video = {k: [] for k in keys}
    ys, vids = [], []
    t0 = time.time()
    nframes = 0
    for vid, arr, flows in load_flows(args.data):
        if vid not in labels["videos"]:
            continue
        n = arr.shape[0]
        s = {k: np.zeros(n) for k in keys}
        for b in range(0, n - 1, args.batch):
            ts = list(range(b, min(b + args.batch, n - 1)))
            frame = torch.from_numpy(np.ascontiguousarray(arr[ts]))
            flow = torch.from_numpy(np.ascontiguousarray(flows[ts]))
            recon, flow_pred = run(frame)
            for k, v in zip(keys, pscd(recon, frame, flow_pred, flow, patch, stride,
                                       args.hp_flow, args.hp_img, args.padding)):
                s[k][ts] = v
            nframes += len(ts)
        for k in keys:  # the last frame has no flow t -> t+1: the previous frame's score
            s[k][-1] = s[k][-2]
            per_video[k].append(minmax(s[k]) if args.norm == "video" else s[k])
        ys.append(labels_for(labels, vid, n))
        vids.append(vid)
    dt = time.time() - t0
    y = np.concatenate(ys)
    if args.norm == "global":
        for k in keys:
            lo = min(v.min() for v in per_video[k])
            hi = max(v.max() for v in per_video[k])
            per_video[k] = [(v - lo) / (hi - lo) if hi > lo else v * 0 for v in per_video[k]]
    names = {"fused": f"PSCD fused (hp_flow={args.hp_flow:g}, hp_img={args.hp_img:g})",
             "img": "image term alone", "flow": "flow term alone"}
    print(f"{len(ys)} videos, {len(y)} frames ({y.mean():.1%} anomalous), {nframes} forward passes "
          f"in {dt:.1f} s ({1000 * dt / max(1, nframes):.1f} ms/frame, "
          f"batch {1 if args.onnx else args.batch}); patch {patch[0]}x{patch[1]} stride "
          f"{stride[0]}x{stride[1]} ({args.padding}), min-max per {args.norm if args.norm == 'video' else 'test set'}")
    res = auc_table({k: per_video[k] for k in keys}, names, ys, vids, 40)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
