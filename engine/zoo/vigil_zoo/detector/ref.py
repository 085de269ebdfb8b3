"""Reference pre- and post-processing of a YOLOv8-style detector ONNX (the Rust parity reference).

Contract (the same as an Ultralytics YOLOv8 ONNX export, `yolo export format=onnx`):

* input `images`, float32 [1, 3, S, S], RGB in [0, 1], the frame LETTERBOXED into S x S
  (`letterbox` below: aspect-preserving bilinear resize, centred, padding 114/255);
* output `output0`, float32 [1, 4 + C, N]: rows 0..3 = box centre x, centre y, width, height in
  the S x S input pixels (already decoded), rows 4.. = per-class confidences in [0, 1] (sigmoid
  applied); no objectness row. N = anchors (grid cells of all heads, row-major per head).

Post-processing (`postprocess`): candidates whose best class score >= score_threshold,
class-agnostic greedy NMS (sort by score descending, stable; keep a box unless its IoU with an
already kept box exceeds nms_iou), at most max_det boxes, mapped back to frame pixels
(x = (x_in - left) / r, y = (y_in - top) / r) and clipped to [0, W] x [0, H].

CLI: writes the parity fixture for frames of a `vigil dataset export` folder, e.g.

    vigil-zoo detector ref \
        --onnx engine/tests/fixtures/detector/ped2-people-yolov8.onnx \
        --data engine/zoo/data/ped2-test-128x192 --video 01 --frames 100 0 \
        --out engine/tests/fixtures/detector/ped2-test01-f100.json --png /tmp/det_f100.png
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

PAD_VALUE = 114.0  # Ultralytics' letterbox colour, on the 0..255 scale


def letterbox_params(h, w, size):
    """(r, new_h, new_w, top, left) for a h x w frame letterboxed into size = (H, W) or an int.

    r = min(H / h, W / w); new = round(dim * r) (Python round: half to even; the Ped2 case never
    hits a half); the resized image sits at left = floor((W - new_w) / 2),
    top = floor((H - new_h) / 2)."""
    H, W = (size, size) if isinstance(size, int) else size
    r = min(H / h, W / w)
    new_h, new_w = int(round(h * r)), int(round(w * r))
    top, left = (H - new_h) // 2, (W - new_w) // 2
    return r, new_h, new_w, top, left


def letterbox(frame, size):
    """Frame -> detector input [1, 3, H, W] float32 in [0, 1].

    frame: [h, w] (grayscale, replicated to RGB) or [h, w, 3] (RGB), either uint8 or float on
    the 0..255 scale. Resized with bilinear interpolation and half-pixel centres (OpenCV
    INTER_LINEAR; done in float32, so a uint8 frame is not hit by OpenCV's fixed-point uint8
    path), placed at (top, left), the rest filled with 114; finally divided by 255.
    Returns (tensor, {"r", "left", "top", "new_w", "new_h"})."""
    import cv2
    f = np.asarray(frame, dtype=np.float32)
    if f.ndim == 2:
        f = np.repeat(f[:, :, None], 3, axis=2)
    if f.ndim != 3 or f.shape[2] != 3:
        raise ValueError(f"frame must be [h, w] or [h, w, 3], got {list(f.shape)}")
    h, w = f.shape[:2]
    H, W = (size, size) if isinstance(size, int) else size
    r, new_h, new_w, top, left = letterbox_params(h, w, (H, W))
    if (new_h, new_w) != (h, w):
        f = cv2.resize(f, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = np.full((H, W, 3), PAD_VALUE, np.float32)
    out[top:top + new_h, left:left + new_w] = f
    x = (out / 255.0).transpose(2, 0, 1)[None].astype(np.float32)
    return np.ascontiguousarray(x), {"r": r, "left": left, "top": top, "new_w": new_w, "new_h": new_h}


def frame_from_export(v):
    """A `vigil dataset export` frame ([-1, 1], [1, h, w] or [h, w]) -> 0..255 float [h, w]."""
    v = np.asarray(v, np.float32)
    if v.ndim == 3:
        v = v[0]
    return v * 127.5 + 127.5


def iou_xyxy(a, b):
    """IoU of two float boxes (x0, y0, x1, y1)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def postprocess(output0, lb, frame_hw, score_threshold=0.5, nms_iou=0.45, max_det=16):
    """output0 [1, 4 + C, N] -> (boxes [[x0, y0, x1, y1, score, class], ...] in frame pixels,
    sorted by score descending; number of candidates >= score_threshold before NMS).

    Written with plain loops (no vectorised tricks) so that it reads like the Rust decoder."""
    o = np.asarray(output0, np.float32)
    if o.ndim != 3 or o.shape[0] != 1 or o.shape[1] < 5:
        raise ValueError(f"output0 must be [1, 4 + C, N], got {list(o.shape)}")
    o = o[0]
    cand = []
    for i in range(o.shape[1]):
        cls = int(np.argmax(o[4:, i]))
        s = float(o[4 + cls, i])
        if s >= score_threshold:
            cx, cy, w, h = (float(v) for v in o[:4, i])
            cand.append((s, i, cls, (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
    n_raw = len(cand)
    cand.sort(key=lambda c: (-c[0], c[1]))  # score descending, ties by anchor index
    kept = []
    for c in cand:
        if len(kept) >= max_det:
            break
        if all(iou_xyxy(c[3], k[3]) <= nms_iou for k in kept):
            kept.append(c)
    fh, fw = frame_hw
    r, left, top = lb["r"], lb["left"], lb["top"]
    out = []
    for s, _, cls, (x0, y0, x1, y1) in kept:
        fx = lambda x: min(max((x - left) / r, 0.0), float(fw))
        fy = lambda y: min(max((y - top) / r, 0.0), float(fh))
        out.append([fx(x0), fy(y0), fx(x1), fy(y1), s, cls])
    return out, n_raw


def match(dets, gts, thr):
    """Greedy matching (detections by score descending, each to its best unmatched GT with
    IoU >= thr). Returns the number of matched pairs."""
    used = [False] * len(gts)
    m = 0
    for d in sorted(dets, key=lambda d: -d[4]):
        best, bi = thr, -1
        for j, g in enumerate(gts):
            if not used[j]:
                v = iou_xyxy(d[:4], g)
                if v >= best:
                    best, bi = v, j
        if bi >= 0:
            used[bi] = True
            m += 1
    return m


class OrtDetector:
    """onnxruntime session (1 thread by default) + letterbox + postprocess."""

    def __init__(self, path, threads=1):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        shp = self.sess.get_inputs()[0].shape
        self.size = (int(shp[2]), int(shp[3]))

    def raw(self, frame255):
        x, lb = letterbox(frame255, self.size)
        return self.sess.run(["output0"], {"images": x})[0], lb

    def __call__(self, frame255, **kw):
        out, lb = self.raw(frame255)
        return postprocess(out, lb, frame255.shape[:2], **kw), lb


def draw(frame255, boxes, path, gts=(), scale=4):
    """PNG of the frame (upscaled) with detections (green, score) and optional GT (red)."""
    import cv2
    img = np.clip(frame255, 0, 255).astype(np.uint8)
    img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for g in gts:
        cv2.rectangle(img, (int(g[0] * scale), int(g[1] * scale)),
                      (int(g[2] * scale) - 1, int(g[3] * scale) - 1), (0, 0, 255), 1)
    for i, b in enumerate(boxes):
        p0 = (int(round(b[0] * scale)), int(round(b[1] * scale)))
        p1 = (int(round(b[2] * scale)) - 1, int(round(b[3] * scale)) - 1)
        cv2.rectangle(img, p0, p1, (0, 255, 0), 2)
        cv2.putText(img, f"{i}:{b[4]:.2f}", (p0[0], max(p0[1] - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (0, 255, 0), 1)
    cv2.imwrite(path, img)


def fixture_json(obj):
    """JSON with one line per box / per small list (full float precision: Python's repr of the
    float64 values, which round-trip exactly)."""
    def enc(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            items = [f'{pad} {json.dumps(k)}: {enc(v, ind + 1).lstrip()}' for k, v in o.items()]
            return pad + "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list) and o and isinstance(o[0], (list, dict)):
            return pad + "[\n" + ",\n".join(enc(v, ind + 1) for v in o) + "\n" + pad + "]"
        return pad + json.dumps(o)
    return enc(obj, 0) + "\n"


PROG = "vigil-zoo detector ref"


def main(argv=None, prog=PROG):
    ap = argparse.ArgumentParser(prog=prog, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--data", required=True, help="vigil dataset export folder")
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", type=int, nargs="+", required=True, help="0-based frame indices")
    ap.add_argument("--score-threshold", type=float, default=0.5)
    ap.add_argument("--nms-iou", type=float, default=0.45)
    ap.add_argument("--max-det", type=int, default=16)
    ap.add_argument("--out", required=True, help="fixture JSON")
    ap.add_argument("--png", default=None, help="PNG of the first frame with its boxes (green) and pseudo-labels (red)")
    args = ap.parse_args(argv)

    det = OrtDetector(args.onnx)
    arr = np.load(os.path.join(args.data, f"{args.video}.npy"), mmap_mode="r")
    gt_path = os.path.join(args.data, f"{args.video}.obj_boxes.npy")
    gtb = np.load(gt_path) if os.path.exists(gt_path) else np.zeros((0, 5), np.float32)
    entries = []
    for k, t in enumerate(args.frames):
        frame = frame_from_export(arr[t])
        (boxes, n_raw), lb = det(frame, score_threshold=args.score_threshold, nms_iou=args.nms_iou,
                                 max_det=args.max_det)
        entries.append({
            "video": args.video, "frame": t, "input": [1, 3, det.size[0], det.size[1]],
            "letterbox": {"r": lb["r"], "left": lb["left"], "top": lb["top"]},
            "score_threshold": args.score_threshold, "nms_iou": args.nms_iou, "max_det": args.max_det,
            "boxes": [b[:5] for b in boxes],
            "raw_candidates": n_raw,
        })
        print(f"video {args.video} frame {t}: {n_raw} candidates >= {args.score_threshold}, "
              f"{len(boxes)} after NMS")
        for b in boxes:
            print("   [%.2f, %.2f, %.2f, %.2f] %.4f" % tuple(b[:5]))
        if k == 0 and args.png:
            gts = gtb[gtb[:, 0] == t][:, 1:]
            draw(frame, boxes, args.png, gts)
            print(f"wrote {args.png}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(fixture_json(entries[0] if len(entries) == 1 else {"frames": entries}))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
