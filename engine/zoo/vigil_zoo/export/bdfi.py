"""Export a trained BDFI checkpoint as a Vigil model package (docs/model-package.md).

    vigil-zoo export --model bdfi --checkpoint engine/zoo/checkpoints/ped2-bdfi.pt \
        --out-dir engine/models/ped2-bdfi --sample-data engine/zoo/data/ped2-test-128x192 [--tract]

1. exports ONNX (opset 17, static shapes, inputs prev/next, outputs frame/mem_err/flow, no dynamic
   axes, constant folding, weights embedded in the file), with the sampler's gather indices as
   INT32 so that TensorRT 8.x (JetPack 5.1, 6.0) can parse it;
2. checks the graph with onnx.checker and runs it in onnxruntime against PyTorch on real test
   triplets (or random frames) and prints the max abs difference per output;
3. optionally (--tract) runs it in the Rust tract backend through the `onnx_run` example and
   compares again;
4. writes model.onnx and model.toml (sha256 of the ONNX file, interface shapes, [params],
   [scoring], [provenance]). The [calibration] table is left out on purpose: it is filled by
   `vigil calib scores`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

from ..checkpoint import load
from ..manifest import manifest_head, provenance_lines, save_manifest, sha256_file, train_provenance
from ..onnx_tools import compare_with_torch, int32_gather_indices, onnx_interface, ort_session
from ..options import export_arg_parser
from ..paths import REPO
TOL = 1e-4
OUTPUTS = ("frame", "mem_err", "flow")  # the order of BDFI.forward


def sample_inputs(h, w, folder, n=4, seed=0):
    """A few real (prev, next) pairs from an exported folder, else random frames."""
    rng = np.random.default_rng(seed)
    pairs = []
    if folder and os.path.exists(os.path.join(folder, "index.json")):
        from ..data import load_videos
        vids = load_videos(folder, mmap=True)
        for i in range(n):
            _, a = vids[i % len(vids)]
            t = int(rng.integers(1, a.shape[0] - 1))
            pairs.append((np.ascontiguousarray(a[t - 1:t], np.float32),
                          np.ascontiguousarray(a[t + 1:t + 2], np.float32)))
    else:
        for _ in range(n):
            pairs.append(tuple(rng.uniform(-1, 1, (1, 1, h, w)).astype(np.float32) for _ in range(2)))
    return pairs


def export_onnx(model, path, h, w, opset):
    from ..models.bdfi import Warp
    for m in model.modules():  # GridSample -> gathers in the graph (see Warp.gather)
        if isinstance(m, Warp):
            m.gather = True
    dummy = (torch.zeros(1, 1, h, w), torch.zeros(1, 1, h, w))
    torch.onnx.export(model, dummy, path, input_names=["prev", "next"],
                      output_names=list(OUTPUTS), opset_version=opset,
                      do_constant_folding=True, dynamic_axes=None, dynamo=False)
    n = int32_gather_indices(path)  # TensorRT 8.x has no INT64 (docs/tensorrt.md)
    print(f"gather indices: {n} casts to INT64 rewritten as INT32")
    for m in model.modules():  # the checks below compare against the trained (GridSample) model
        if isinstance(m, Warp):
            m.gather = False


PROG = "vigil-zoo export --model bdfi"


def main(argv=None, prog=PROG):
    ap = export_arg_parser(__doc__, "ped2-bdfi", trained_on="2 CPU cores (no GPU)", prog=prog)
    ap.add_argument("--alpha", type=float, default=1.0,
                    help="[params] alpha, weight of S_int against S_con (paper: 0.3; see docs/models.md)")
    ap.add_argument("--flow-weight", type=float, default=0.5,
                    help="[params] flow_weight, weight of the flow component (0 = the paper's score)")
    ap.add_argument("--sample-data", help="exported test folder for the comparison inputs")
    ap.add_argument("--tract", action="store_true", help="also check with the Rust tract backend")
    ap.add_argument("--tract-bin", help="a built onnx_run example (default: cargo run --release)")
    args = ap.parse_args(argv)

    torch.set_num_threads(2)
    model, ckpt = load("bdfi", args.checkpoint)
    cfg = model.cfg
    h, w = cfg.height, cfg.width
    os.makedirs(args.out_dir, exist_ok=True)
    onnx_path = os.path.join(args.out_dir, "model.onnx")
    export_onnx(model, onnx_path, h, w, args.opset)

    ins, outs = onnx_interface(onnx_path)
    assert list(ins) == ["prev", "next"] and tuple(outs) == OUTPUTS, (ins, outs)
    print(f"inputs {ins} outputs {outs}")

    pairs = sample_inputs(h, w, args.sample_data)
    compare_with_torch(ort_session(onnx_path), model, ("prev", "next"), OUTPUTS, pairs, tol=TOL)

    if args.tract:
        tract_check(onnx_path, model, pairs[:2], args.tract_bin)

    sha = sha256_file(onnx_path)
    write_manifest(args, cfg, ckpt, sha, ins, outs)
    print(f"wrote {onnx_path} ({os.path.getsize(onnx_path) / 1e6:.2f} MB, sha256 {sha})")


def tract_check(onnx_path, model, pairs, tract_bin=None):
    worst = {k: 0.0 for k in OUTPUTS}
    for prev, nxt in pairs:
        with tempfile.TemporaryDirectory() as d:
            np.save(os.path.join(d, "prev.npy"), prev)
            np.save(os.path.join(d, "next.npy"), nxt)
            runner = [tract_bin] if tract_bin else ["cargo", "run", "-q", "--release", "-p",
                                                    "vigil-engine", "--example", "onnx_run", "--"]
            cmd = runner + [onnx_path, os.path.join(d, "out"),
                            f"prev={os.path.join(d, 'prev.npy')}", f"next={os.path.join(d, 'next.npy')}"]
            r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"tract failed:\n{r.stdout}\n{r.stderr}")
            print("tract:", r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "", flush=True)
            with torch.no_grad():
                ref = [t.numpy() for t in model(torch.from_numpy(prev), torch.from_numpy(nxt))]
            for k, rr in zip(OUTPUTS, ref):
                got = np.load(os.path.join(d, "out", f"{k}.npy"))
                assert got.shape == rr.shape, (k, got.shape, rr.shape)
                worst[k] = max(worst[k], float(np.abs(got - rr).max()))
    print(f"tract vs PyTorch max abs diff over {len(pairs)} inputs: "
          + ", ".join(f"{k}={v:.2e}" for k, v in worst.items()))
    if max(worst.values()) > TOL:
        sys.exit(f"tract differs from PyTorch by more than {TOL}")


def write_manifest(args, cfg, ckpt, sha, ins, outs):
    me = outs["mem_err"]
    lines = manifest_head(
        args.name, "bdfi",
        "BDFI (Deng et al., WACV 2023): bi-directional frame interpolation with a jointly trained "
        "U-Net flow estimator and a top-K dynamic memory, trained on UCSD Ped2 at 128x192 "
        "(scaled-down widths, see engine/zoo/README.md)",
        (cfg.height, cfg.width), sha, args.opset,
        inputs=[("prev", "frame t-1", ins["prev"]),
                ("next", "frame t+1", ins["next"])],
        outputs=[("frame", "interpolated frame t, in [-1, 1]", outs["frame"]),
                 ("mem_err", f"||v_ij - q_ij|| per position, at {me[2]}x{me[3]}", me),
                 ("flow", "0.5 (|F_t->t-1| + |F_t->t+1|) in pixels", outs["flow"])])
    lines += [
        "[params]",
        f"alpha = {args.alpha}              # paper: 0.3 (S_int vs S_con)",
        f"flow_weight = {args.flow_weight}        # not in the paper; 0 = the paper's score (docs/models.md)",
        f"memory_slots = {cfg.memory_slots}",
        f"top_k = {cfg.top_k}",
        "",
        "[scoring]",
        "patch = [16, 16]",
        "stride = [8, 8]",
        "",
    ]
    lines += provenance_lines(train_provenance(args, ckpt), args.checkpoint)
    save_manifest(args.out_dir, lines)


if __name__ == "__main__":
    main()
