"""Frame-level ROC AUC of an HF2-VAD checkpoint (or its ONNX export) with the paper's score.

    vigil-zoo evaluate --model hf2vad --checkpoint engine/zoo/checkpoints/ped2-hf2vad.pt \
        --data engine/zoo/data/ped2-test-128x192 \
        --labels ../shared/datasets/ped2/testing/labels.json
        # (--onnx engine/models/ped2-hf2vad/model.onnx evaluates the export with onnxruntime;
        #  the z-score statistics and weights then come from the package's model.toml)

The test folder must hold the object cubes (`vigil dataset export --flow --objects`). The score
is the one of the paper's evaluation code:

  per object:  S_r = sum of squared errors of the reconstructed flows over the cube [8, 32, 32]
               S_p = sum of squared errors of the predicted frame t [1, 32, 32]
               s   = w_r (S_r - mean_r) / std_r + w_p (S_p - mean_p) / std_p
               (mean / std over the *training* objects, stored in the checkpoint; Ped2 w_r = 1.0,
               w_p = 0.1)
  per frame:   the max over the frame's objects; a frame without objects (e.g. frames 0..3,
               which have no full cube) gets the score of zero errors,
               w_r (0 - mean_r) / std_r + w_p (0 - mean_p) / std_p
  per video:   a median filter of width 17 (scipy.signal.medfilt: zeros beyond both ends, the
               same as the engine's `median_filter`)
  AUC:         one ROC over all frames of the labelled videos concatenated (no per-video
               normalisation).

Printed: the fused score, the S_r term alone (w_r z(S_r), w_p = 0) and the S_p term alone, overall
and per video (per-video AUC only where the video has both classes), plus the same without the
median filter, and, for comparison with the other zoo models only, the fused score min-maxed per
video (their papers' protocol, not HF2-VAD's). `--save-scores FILE.npz` writes the per-frame scores (filtered and raw) and labels.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch
from scipy.signal import medfilt

from ..checkpoint import load
from ..data import load_objects
from ..metrics import auc_table, labels_for, minmax
from ..options import eval_arg_parser, parse_eval_args

ONNX_K = 16  # static object slots of the exported graph


def make_runner(args):
    """(run(frames [B,4,S,S], flows [B,8,S,S]) -> (recon, pred) as torch tensors, stats, weights)."""
    if args.onnx:
        import onnxruntime as ort
        import tomllib
        with open(os.path.join(os.path.dirname(os.path.abspath(args.onnx)), "model.toml"), "rb") as f:
            params = tomllib.load(f)["params"]
        stats = {k: float(params[k]) for k in ("sr_mean", "sr_std", "sp_mean", "sp_std")}
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])

        def run(frames, flows):  # static K object slots: pad the last chunk with zeros
            outs_r, outs_p = [], []
            for s in range(0, frames.shape[0], ONNX_K):
                fr, fl = frames[s:s + ONNX_K].numpy(), flows[s:s + ONNX_K].numpy()
                n = fr.shape[0]
                if n < ONNX_K:
                    fr = np.concatenate([fr, np.zeros((ONNX_K - n,) + fr.shape[1:], np.float32)])
                    fl = np.concatenate([fl, np.zeros((ONNX_K - n,) + fl.shape[1:], np.float32)])
                r, p = sess.run(["flow_recon", "pred"], {"frames": fr, "flows": fl})
                outs_r.append(r[:n])
                outs_p.append(p[:n])
            return torch.from_numpy(np.concatenate(outs_r)), torch.from_numpy(np.concatenate(outs_p))
        return run, stats, (float(params.get("w_r", 1.0)), float(params.get("w_p", 0.1)))
    model, ckpt = load("hf2vad", args.checkpoint)
    if not ckpt.get("score_stats"):
        sys.exit("the checkpoint has no score_stats (training did not finish)")

    def run(frames, flows):
        with torch.no_grad():
            return model(frames, flows)
    return run, ckpt["score_stats"], None


def frame_scores(n, t, s, empty):
    """Max over the objects of each frame; `empty` where a frame has no object."""
    out = np.full(n, -np.inf)
    np.maximum.at(out, t, s)
    out[~np.isfinite(out)] = empty
    return out


PROG = "vigil-zoo evaluate --model hf2vad"


def main(argv=None, prog=PROG):
    ap = eval_arg_parser(__doc__, "evaluate this ONNX file with onnxruntime instead (stats from its model.toml)", prog=prog)
    ap.add_argument("--w-r", type=float, default=None, help="flow weight (default 1.0, or the package's)")
    ap.add_argument("--w-p", type=float, default=None, help="frame weight (default 0.1, or the package's)")
    ap.add_argument("--median", type=int, default=17, help="median filter width (odd; 1 = none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256, help="objects per forward pass (PyTorch)")
    ap.add_argument("--json", help="also write the AUCs here")
    ap.add_argument("--save-scores", help="write per-frame scores and labels to this .npz")
    args, labels = parse_eval_args(ap, argv)
    run, st, pkg_w = make_runner(args)
    w_r = args.w_r if args.w_r is not None else (pkg_w[0] if pkg_w else 1.0)
    w_p = args.w_p if args.w_p is not None else (pkg_w[1] if pkg_w else 0.1)
    zr = lambda x: (x - st["sr_mean"]) / st["sr_std"]
    zp = lambda x: (x - st["sp_mean"]) / st["sp_std"]

    keys = ("fused", "sr", "sp")
    empty = {"fused": w_r * zr(0.0) + w_p * zp(0.0), "sr": w_r * zr(0.0), "sp": w_p * zp(0.0)}
    raw = {k: [] for k in keys}
    ys, vids, saved = [], [], {}
    t0, nobj = time.time(), 0
    for vid, n, cubes, flows, boxes in load_objects(args.data, mmap=True):
        if vid not in labels["videos"]:
            continue
        if labels["videos"][vid].get("frames", n) != n:
            sys.exit(f"video {vid}: {n} exported frames, labels.json says {labels['videos'][vid]['frames']}")
        srs, sps = [], []
        for s in range(0, cubes.shape[0], args.batch):
            cb = torch.from_numpy(np.array(cubes[s:s + args.batch], np.float32))  # copy: writable
            fl = torch.from_numpy(np.array(flows[s:s + args.batch], np.float32))
            recon, pred = run(cb[:, :4], fl)
            srs.append(((recon.double() - fl.double()) ** 2).sum(dim=(1, 2, 3)).numpy())
            sps.append(((pred.double() - cb[:, 4:].double()) ** 2).sum(dim=(1, 2, 3)).numpy())
        sr = np.concatenate(srs) if srs else np.zeros(0)
        sp = np.concatenate(sps) if sps else np.zeros(0)
        t = np.asarray(boxes[:, 0], np.int64)
        obj = {"fused": w_r * zr(sr) + w_p * zp(sp), "sr": w_r * zr(sr), "sp": w_p * zp(sp)}
        for k in keys:
            raw[k].append(frame_scores(n, t, obj[k], empty[k]))
        nobj += sr.size
        ys.append(labels_for(labels, vid, n))
        vids.append(vid)
        saved[f"objects_{vid}"] = np.stack([t.astype(np.float64), sr, sp], axis=1)
    dt = time.time() - t0
    smooth = {k: [medfilt(v, args.median) if args.median > 1 else v for v in raw[k]] for k in keys}
    y = np.concatenate(ys)
    nofr = sum(int(np.sum(v == empty["fused"])) for v in raw["fused"])
    print(f"{len(ys)} videos, {len(y)} frames ({y.mean():.1%} anomalous), {nobj} objects "
          f"({nofr} frames without any), {dt:.1f} s ({1000 * dt / max(1, nobj):.2f} ms/object); "
          f"z-score stats: S_r {st['sr_mean']:.3f} +- {st['sr_std']:.3f}, S_p {st['sp_mean']:.3f} +- "
          f"{st['sp_std']:.3f}; w_r={w_r:g} w_p={w_p:g}, median filter {args.median}")
    names = {"fused": f"fused w_r z(S_r) + w_p z(S_p), median {args.median}",
             "sr": f"S_r only (flow reconstruction), median {args.median}",
             "sp": f"S_p only (frame prediction), median {args.median}",
             "fused_raw": "fused, no median filter", "sr_raw": "S_r only, no median filter",
             "sp_raw": "S_p only, no median filter"}
    table = {**smooth, **{k + "_raw": raw[k] for k in keys},
             # not the paper's protocol: the other zoo models' per-video min-max, for comparison
             "fused_minmax": [minmax(v) for v in smooth["fused"]]}
    names["fused_minmax"] = "fused, median, min-max per video (not HF2-VAD's)"
    res = auc_table(table, names, ys, vids, 46)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.save_scores:
        np.savez(args.save_scores, videos=np.array(vids), labels=y,
                 **{k: np.concatenate(table[k]) for k in table}, **saved)
        print(f"wrote {args.save_scores}")


if __name__ == "__main__":
    main()
