"""Train and export the TEST detector: a tiny one-class YOLOv8-layout ONNX for the Rust decoder.

    OMP_NUM_THREADS=1 vigil-zoo detector train \
        --data engine/zoo/data/ped2-train-128x192 --holdout 16 --epochs 30 --threads 1 --seed 0 \
        --out engine/tests/fixtures/detector/ped2-people-yolov8.onnx

What it is: a stand-in for a user's COCO YOLOv8 export (`yolo export format=onnx`), so that the
engine's "user-supplied detector ONNX" path can be tested and documented without COCO weights.
It is a test fixture, not a model to ship. Labels are pseudo-labels: the motion boxes written by
`vigil dataset export --objects` (`<video>.obj_boxes.npy`, rows (t, x0, y0, x1, y1) in
128x192 frame pixels, frames t >= 4 only; frames 0..3 have no boxes and are not used). The
detector sees one frame, so it learns "person-like blob on the walkway"; class 0 = person /
moving object.

ONNX contract (= Ultralytics YOLOv8 export layout, see detector/ref.py):
  input  `images`  float32 [1, 3, 160, 160], RGB in [0, 1], letterboxed frame (pad 114/255);
  output `output0` float32 [1, 5, 400]: rows cx, cy, w, h (160x160 input pixels, decoded in
         the graph), class-0 confidence (sigmoid in the graph); anchors = the 20x20 cells of
         the single stride-8 head, row-major (anchor = gy * 20 + gx).

Model: Conv(3x3)+BN+SiLU backbone 3-16-32-48-48-48 (strides 2, 2, 2, 1, 1) and three 1x1 heads
per stride-8 cell: dxy (2), dwh (2), class logit (1). Decode (only Sigmoid/Mul/Sub/Add/Exp, no
Tanh/Clip, which the contract excludes; tanh(x) is written as 2*sigmoid(2x) - 1):
  cx = (gx + 0.5 + tanh(dx)) * 8,  cy = (gy + 0.5 + tanh(dy)) * 8      (+-1 cell)
  w  = 8 * exp(2.5 * tanh(dw)),    h  = 8 * exp(2.5 * tanh(dh))        (0.66 .. 97 px)
  score = sigmoid(logit)
Assignment (anchor-free, centre sampling): a cell is positive for a box if its centre lies in
the box's central region (the middle half of its width and height) or it is the cell holding
the box centre; a cell claimed by several boxes takes the smallest. Cells whose centre lies in
a box but are not positive are ignored by the class loss. Losses: BCE on the class logit (sum
over non-ignored cells / number of positives) + 2 x (1 - GIoU) + L1 on (cx/8, cy/8, log w,
log h) over positives. Augmentation: horizontal flip (p = 0.5), brightness/contrast jitter on
the image content (padding stays 114/255). AdamW, cosine learning rate, fixed seed,
deterministic algorithms.

Export: BatchNorm folded into the convolutions, torch.onnx.export (TorchScript exporter,
opset 17, static shapes), onnx.checker, op whitelist, onnxruntime-vs-PyTorch max abs diff on
real held-out frames; then held-out recall/precision (IoU >= 0.5 and >= 0.3, against the
pseudo-labels) with the reference post-processing of detector/ref.py (score >= 0.5, NMS 0.45,
max 16). The checkpoint (state_dict + config + provenance) goes to --ckpt.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import save_checkpoint
from ..data import load_index
from ..onnx_tools import onnx_interface
from ..options import parser
from ..training import command_line
from .ref import letterbox, frame_from_export, postprocess, match, OrtDetector, PAD_VALUE

SIZE = 160
STRIDE = 8
GRID = SIZE // STRIDE
ALLOWED_OPS = {"Conv", "Relu", "LeakyRelu", "Sigmoid", "Add", "Mul", "Sub", "Div", "Exp", "Concat",
               "Reshape", "Transpose", "MaxPool", "Resize", "Constant"}
WH_RANGE = 2.5  # w = 8 * exp(WH_RANGE * tanh(dw))


def tanh_sig(x):
    """tanh(x) = 2 * sigmoid(2x) - 1, written with ops the contract allows."""
    return 2.0 * torch.sigmoid(2.0 * x) - 1.0


class ConvBNAct(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.fused = None

    def forward(self, x):
        if self.fused is not None:
            return F.silu(self.fused(x))
        return F.silu(self.bn(self.conv(x)))

    @torch.no_grad()
    def fuse(self):
        """Folds the (eval-mode) BatchNorm into a biased convolution, for export."""
        c, bn = self.conv, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        f = nn.Conv2d(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding, bias=True)
        f.weight.copy_(c.weight * scale[:, None, None, None])
        f.bias.copy_(bn.bias - bn.running_mean * scale)
        self.fused = f


class TinyDet(nn.Module):
    def __init__(self, widths=(16, 32, 48, 48, 48), strides=(2, 2, 2, 1, 1)):
        super().__init__()
        layers, cin = [], 3
        for w, s in zip(widths, strides):
            layers.append(ConvBNAct(cin, w, s))
            cin = w
        self.body = nn.Sequential(*layers)
        self.head_xy = nn.Conv2d(cin, 2, 1)
        self.head_wh = nn.Conv2d(cin, 2, 1)
        self.head_cls = nn.Conv2d(cin, 1, 1)
        nn.init.zeros_(self.head_xy.weight); nn.init.zeros_(self.head_xy.bias)
        nn.init.normal_(self.head_wh.weight, std=0.01)
        # start near 10 x 18 px (a typical walker in the 160x160 input)
        with torch.no_grad():
            self.head_wh.bias.copy_(torch.atanh(torch.tensor([np.log(10 / 8), np.log(18 / 8)]) / WH_RANGE))
        nn.init.normal_(self.head_cls.weight, std=0.01)
        nn.init.constant_(self.head_cls.bias, -4.6)  # prior 0.01
        gy, gx = torch.meshgrid(torch.arange(GRID, dtype=torch.float32), torch.arange(GRID, dtype=torch.float32),
                                indexing="ij")
        self.register_buffer("grid", (torch.stack([gx, gy])[None] + 0.5), persistent=False)  # [1,2,G,G]

    def raw(self, x):
        f = self.body(x)
        return self.head_xy(f), self.head_wh(f), self.head_cls(f)

    def decode(self, dxy, dwh):
        xy = (self.grid + tanh_sig(dxy)) * float(STRIDE)
        wh = torch.exp(tanh_sig(dwh) * WH_RANGE) * float(STRIDE)
        return xy, wh

    def forward(self, x):
        dxy, dwh, logit = self.raw(x)
        xy, wh = self.decode(dxy, dwh)
        out = torch.cat([xy, wh, torch.sigmoid(logit)], dim=1)
        return out.reshape(-1, 5, GRID * GRID)

    def fuse(self):
        for m in self.body:
            m.fuse()
        return self


# ---------------------------------------------------------------------------------- data

def load_split(folder, ids):
    """Letterboxed gray images [N, 160, 160] (0..1) and per-image boxes in input pixels."""
    index = load_index(folder)
    imgs, boxes, keys = [], [], []
    lb = None
    for v in index["videos"]:
        if v["id"] not in ids:
            continue
        arr = np.load(os.path.join(folder, v["file"]), mmap_mode="r")
        b = np.load(os.path.join(folder, v["objects"]["boxes_file"]))
        for t in range(4, arr.shape[0]):  # the motion extractor writes boxes from frame 4 on
            x, lb = letterbox(frame_from_export(arr[t]), SIZE)
            imgs.append(x[0, 0])
            bb = b[b[:, 0] == t][:, 1:].astype(np.float64)
            bb = bb * lb["r"] + np.array([lb["left"], lb["top"], lb["left"], lb["top"]])
            boxes.append(bb.astype(np.float32))
            keys.append((v["id"], t))
    return np.stack(imgs), boxes, keys, lb


def assign(bx):
    """Targets of one image: (cls [G*G] in {0, 1}, ignore [G*G] bool, box [G*G, 4] xyxy)."""
    n = GRID * GRID
    cls = np.zeros(n, np.float32)
    ign = np.zeros(n, bool)
    tgt = np.zeros((n, 4), np.float32)
    best_area = np.full(n, np.inf)
    c = (np.arange(GRID) + 0.5) * STRIDE
    cy, cx = np.meshgrid(c, c, indexing="ij")
    cx, cy = cx.ravel(), cy.ravel()
    for x0, y0, x1, y1 in bx:
        w, h = x1 - x0, y1 - y0
        if w <= 0 or h <= 0:
            continue
        mx, my = (x0 + x1) / 2, (y0 + y1) / 2
        inside = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
        central = (np.abs(cx - mx) <= w / 4) & (np.abs(cy - my) <= h / 4)
        pos = inside & central
        gi = min(max(int(mx // STRIDE), 0), GRID - 1) + GRID * min(max(int(my // STRIDE), 0), GRID - 1)
        pos[gi] = True
        ign |= inside
        area = w * h
        take = pos & (area < best_area)
        best_area[take] = area
        tgt[take] = (x0, y0, x1, y1)
        cls[take] = 1.0
    ign &= cls == 0
    return cls, ign, tgt


def make_batch(imgs, boxes, idx, rng, augment):
    pad = PAD_VALUE / 255.0
    xs, cl, ig, tg = [], [], [], []
    for i in idx:
        x = imgs[i].copy()
        bx = boxes[i].copy()
        if augment:
            if rng.random() < 0.5:
                x = x[:, ::-1].copy()
                bx = np.stack([SIZE - bx[:, 2], bx[:, 1], SIZE - bx[:, 0], bx[:, 3]], 1) if len(bx) else bx
            a, b = rng.uniform(0.7, 1.3), rng.uniform(-0.1, 0.1)
            padmask = x == pad  # exact: the padding was written as 114/255 and never resized
            x = np.clip((x - 0.5) * a + 0.5 + b, 0.0, 1.0)
            x[padmask] = pad
        c, g, t = assign(bx)
        xs.append(x); cl.append(c); ig.append(g); tg.append(t)
    x = torch.from_numpy(np.stack(xs))[:, None].expand(-1, 3, -1, -1).contiguous()
    return x, torch.from_numpy(np.stack(cl)), torch.from_numpy(np.stack(ig)), torch.from_numpy(np.stack(tg))


def giou(p, t):
    """GIoU of xyxy boxes [K, 4]."""
    iw = (torch.min(p[:, 2], t[:, 2]) - torch.max(p[:, 0], t[:, 0])).clamp(min=0)
    ih = (torch.min(p[:, 3], t[:, 3]) - torch.max(p[:, 1], t[:, 1])).clamp(min=0)
    inter = iw * ih
    ap = (p[:, 2] - p[:, 0]) * (p[:, 3] - p[:, 1])
    at = (t[:, 2] - t[:, 0]) * (t[:, 3] - t[:, 1])
    union = ap + at - inter + 1e-7
    cw = torch.max(p[:, 2], t[:, 2]) - torch.min(p[:, 0], t[:, 0])
    ch = torch.max(p[:, 3], t[:, 3]) - torch.min(p[:, 1], t[:, 1])
    c = cw * ch + 1e-7
    iou = inter / union
    return iou - (c - union) / c


def losses(model, x, cls, ign, tgt):
    dxy, dwh, logit = model.raw(x)
    xy, wh = model.decode(dxy, dwh)
    B = x.shape[0]
    logit = logit.reshape(B, -1)
    xy = xy.reshape(B, 2, -1).transpose(1, 2)
    wh = wh.reshape(B, 2, -1).transpose(1, 2)
    npos = cls.sum().clamp(min=1.0)
    w = (~ign).float()
    l_cls = (F.binary_cross_entropy_with_logits(logit, cls, reduction="none") * w).sum() / npos
    pos = cls > 0
    if pos.any():
        pxy, pwh, t = xy[pos], wh[pos], tgt[pos]
        pb = torch.cat([pxy - pwh / 2, pxy + pwh / 2], 1)
        l_giou = (1 - giou(pb, t)).mean()
        txy = (t[:, :2] + t[:, 2:]) / 2
        twh = (t[:, 2:] - t[:, :2]).clamp(min=1.0)
        l_l1 = ((pxy - txy).abs() / STRIDE).sum(1).mean() + (torch.log(pwh) - torch.log(twh)).abs().sum(1).mean()
    else:
        l_giou = l_l1 = logit.sum() * 0
    return l_cls, l_giou, l_l1


# ---------------------------------------------------------------------------------- eval

def evaluate(run, imgs, boxes, lb, frame_hw, thr=0.5, nms=0.45, max_det=16):
    """Recall / precision against the pseudo-labels at IoU >= 0.5 and >= 0.3.
    `run(x [1,3,160,160] numpy) -> output0`; boxes are in input pixels and mapped back here."""
    off = np.array([lb["left"], lb["top"], lb["left"], lb["top"]])
    n_gt = n_det = 0
    m5 = m3 = 0
    for x, bx in zip(imgs, boxes):
        inp = np.ascontiguousarray(np.repeat(x[None, None], 3, axis=1))
        dets, _ = postprocess(run(inp), lb, frame_hw, thr, nms, max_det)
        gts = [list((b - off) / lb["r"]) for b in bx]
        n_gt += len(gts); n_det += len(dets)
        m5 += match(dets, gts, 0.5)
        m3 += match(dets, gts, 0.3)
    d = lambda a, b: a / b if b else float("nan")
    return {"frames": len(imgs), "gt": n_gt, "det": n_det,
            "recall@0.5": d(m5, n_gt), "precision@0.5": d(m5, n_det),
            "recall@0.3": d(m3, n_gt), "precision@0.3": d(m3, n_det)}


def fmt_eval(e):
    return (f"{e['frames']} frames, {e['gt']} pseudo-label boxes, {e['det']} detections; "
            f"IoU>=0.5 recall {e['recall@0.5']:.3f} precision {e['precision@0.5']:.3f}; "
            f"IoU>=0.3 recall {e['recall@0.3']:.3f} precision {e['precision@0.3']:.3f}")


# ---------------------------------------------------------------------------------- export

def export(model, path, sample):
    import onnx
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fused = TinyDet()
    fused.load_state_dict(model.state_dict())
    fused.eval().fuse()
    dummy = torch.from_numpy(sample[:1])
    torch.onnx.export(fused, dummy, path, input_names=["images"], output_names=["output0"],
                      opset_version=17, do_constant_folding=True, dynamic_axes=None, dynamo=False)
    m = onnx.load(path)
    ops = {n.op_type for n in m.graph.node}
    ins, outs = onnx_interface(path, forbidden_ops=ops - ALLOWED_OPS)
    assert ins == {"images": [1, 3, SIZE, SIZE]}, ins
    assert outs == {"output0": [1, 5, GRID * GRID]}, outs
    assert 13 <= m.opset_import[0].version <= 17
    det = OrtDetector(path)
    diff = 0.0
    with torch.no_grad():
        for i in range(sample.shape[0]):
            x = sample[i:i + 1]
            ref = model(torch.from_numpy(x)).numpy()
            got = det.sess.run(["output0"], {"images": x})[0]
            diff = max(diff, float(np.abs(ref - got).max()))
    size = os.path.getsize(path)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"exported {path}: {size} bytes, {len(m.graph.node)} nodes, ops {sorted(ops)}, "
          f"{n_params} parameters; onnxruntime vs PyTorch (trained, BN unfused) max abs diff "
          f"{diff:.3g} over {sample.shape[0]} frames")
    return {"bytes": size, "nodes": len(m.graph.node), "ops": sorted(ops), "params": n_params,
            "ort_vs_torch_max_abs": diff, "opset": m.opset_import[0].version}


PROG = "vigil-zoo detector train"


def main(argv=None, prog=PROG):
    ap = parser(__doc__, prog)
    ap.add_argument("--data", default="engine/zoo/data/ped2-train-128x192")
    ap.add_argument("--out", default="engine/tests/fixtures/detector/ped2-people-yolov8.onnx")
    ap.add_argument("--ckpt", default="engine/zoo/runs/ped2-detector.pt")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout", nargs="*", default=["16"], help="training video ids not trained on (reported)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(args.seed)
    cmd = command_line(prog, argv)
    print(f"command: {cmd}", flush=True)

    t0 = time.time()
    ids = [v["id"] for v in load_index(args.data)["videos"]]
    train_ids = [i for i in ids if i not in set(args.holdout)]
    imgs, boxes, _, lb = load_split(args.data, set(train_ids))
    h_imgs, h_boxes, _, _ = load_split(args.data, set(args.holdout))
    frame_hw = tuple(load_index(args.data)["geometry"][k] for k in ("height", "width"))
    print(f"train videos {train_ids}: {len(imgs)} frames, {sum(len(b) for b in boxes)} boxes; "
          f"holdout {args.holdout}: {len(h_imgs)} frames; letterbox {lb}; prep {time.time() - t0:.1f} s", flush=True)

    model = TinyDet()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = len(imgs) // args.batch
    total = steps_per_epoch * args.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=total, pct_start=0.1,
                                                anneal_strategy="cos", final_div_factor=50)
    history = []
    t_train = time.time()
    for ep in range(args.epochs):
        model.train()
        te = time.time()
        sums = np.zeros(3)
        order = rng.permutation(len(imgs))
        for s in range(steps_per_epoch):
            idx = order[s * args.batch:(s + 1) * args.batch]
            x, c, g, t = make_batch(imgs, boxes, idx, rng, augment=True)
            l_cls, l_giou, l_l1 = losses(model, x, c, g, t)
            loss = l_cls + 2.0 * l_giou + l_l1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            sums += [l_cls.item(), l_giou.item(), l_l1.item()]
        model.eval()
        with torch.no_grad():
            ev = evaluate(lambda x: model(torch.from_numpy(x)).numpy(), h_imgs, h_boxes, lb, frame_hw)
        m = sums / steps_per_epoch
        history.append({"epoch": ep + 1, "cls": m[0], "giou": m[1], "l1": m[2], "holdout": ev,
                        "seconds": time.time() - te})
        print(f"epoch {ep + 1}/{args.epochs}: cls {m[0]:.4f} 1-giou {m[1]:.4f} l1 {m[2]:.4f} "
              f"({time.time() - te:.0f} s); holdout: {fmt_eval(ev)}", flush=True)
        save_checkpoint(args.ckpt, {"state_dict": model.state_dict(), "args": vars(args), "command": cmd,
                                    "history": history, "torch": torch.__version__})
    train_s = time.time() - t_train
    print(f"training wall time {train_s:.0f} s ({train_s / 60:.1f} min), {total} steps", flush=True)

    model.eval()
    sample = np.ascontiguousarray(np.repeat(h_imgs[::30][:, None], 3, axis=1))
    info = export(model, args.out, sample)
    sess = OrtDetector(args.out).sess
    ev = evaluate(lambda x: sess.run(["output0"], {"images": x})[0], h_imgs, h_boxes, lb, frame_hw)
    print(f"held-out {args.holdout} (onnxruntime, score >= 0.5, NMS 0.45, max 16): {fmt_eval(ev)}")
    summary = {"command": cmd, "train_seconds": train_s, "export": info, "holdout": ev, "history": history}
    save_checkpoint(args.ckpt, {"state_dict": model.state_dict(), "args": vars(args), "command": cmd,
                                "history": history, "torch": torch.__version__, "summary": summary})
    print(json.dumps({k: summary[k] for k in ("train_seconds", "export", "holdout")}, indent=1))


if __name__ == "__main__":
    main()
