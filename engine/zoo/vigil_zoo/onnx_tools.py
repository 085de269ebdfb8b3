"""Checks and graph rewrites of exported ONNX files."""
from __future__ import annotations

import sys


def onnx_interface(path, forbidden_ops=()):
    """Loads and fully checks an exported ONNX file, prints its op set and returns
    ({input: dims}, {output: dims}) in graph order; exits if it uses a forbidden op and fails if
    any dimension is dynamic (Vigil's packages are static-shape)."""
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})
    bad = set(forbidden_ops).intersection(ops)
    if bad:
        sys.exit(f"exported graph uses {sorted(bad)}, which the deployment contract excludes")
    print(f"onnx ok: opset {m.opset_import[0].version}, {len(m.graph.node)} nodes, ops: {', '.join(ops)}")

    def dims(vi):
        return [d.dim_value for d in vi.type.tensor_type.shape.dim]
    ins = {i.name: dims(i) for i in m.graph.input}
    outs = {o.name: dims(o) for o in m.graph.output}
    assert all(all(d > 0 for d in s) for s in list(ins.values()) + list(outs.values())), "dynamic dims"
    return ins, outs


def int32_gather_indices(path):
    """Rewrites, in place, every Cast to INT64 whose result only becomes the indices of a
    GatherElements (through Reshape/Expand, which keep the type) into a Cast to INT32; returns
    how many. TensorRT 8.x (JetPack 5.1 and 6.0) has no INT64 tensors and its ONNX parser
    refuses such casts, while GatherElements takes INT32 indices as well; PyTorch's gather
    only takes int64, so the export cannot write INT32 itself. The indices are whole numbers
    far below 2^31, so every output is bit-identical. Any other INT64 cast is left alone (and
    the operator check of engine/tensorrt/tests/onnx_support.rs reports it)."""
    import onnx
    from onnx import TensorProto
    m = onnx.load(path)
    consumers = {}
    for n in m.graph.node:
        for i, name in enumerate(n.input):
            consumers.setdefault(name, []).append((n, i))

    def only_gather_indices(tensor):
        uses = consumers.get(tensor, [])
        if not uses or tensor in {o.name for o in m.graph.output}:
            return False
        for node, slot in uses:
            if node.op_type == "GatherElements" and slot == 1:
                continue
            if node.op_type in ("Reshape", "Expand") and slot == 0:
                if only_gather_indices(node.output[0]):
                    continue
            return False
        return True

    changed = 0
    for n in m.graph.node:
        if n.op_type != "Cast":
            continue
        to = next(a for a in n.attribute if a.name == "to")
        if to.i == TensorProto.INT64 and only_gather_indices(n.output[0]):
            to.i = TensorProto.INT32
            changed += 1
    if changed:
        del m.graph.value_info[:]  # stale INT64 annotations; shape inference redoes them
        m = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, path)
    return changed


def ort_session(path, threads=None):
    """An onnxruntime CPU session of `path`; `threads` limits its intra-op threads."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def compare_with_torch(sess, model, inputs, outputs, samples, what="inputs", tol=1e-4):
    """Max abs difference of every output of the exported graph against the PyTorch model over
    `samples` (tuples of float32 arrays in the order of `inputs`); printed, and the export
    refused above `tol`. Returns {output: max abs difference}."""
    import numpy as np
    import torch
    worst = {k: 0.0 for k in outputs}
    for xs in samples:
        with torch.no_grad():
            ref = model(*[torch.from_numpy(x) for x in xs])
        ref = ref if isinstance(ref, (tuple, list)) else (ref,)
        got = sess.run(list(outputs), dict(zip(inputs, xs)))
        for k, r, g in zip(outputs, ref, got):
            worst[k] = max(worst[k], float(np.abs(r.numpy() - g).max()))
    print(f"onnxruntime vs PyTorch max abs diff over {len(samples)} {what}: "
          + ", ".join(f"{k}={v:.2e}" for k, v in worst.items()))
    if max(worst.values()) > tol:
        sys.exit(f"onnxruntime differs from PyTorch by more than {tol}")
    return worst


def time_session(sess, outputs, feed, reps, what):
    """Milliseconds per run of the session on `feed` (after 3 untimed runs), printed."""
    import time
    for _ in range(3):
        sess.run(list(outputs), feed)
    t0 = time.time()
    for _ in range(reps):
        sess.run(list(outputs), feed)
    ms = 1000 * (time.time() - t0) / reps
    print(f"onnxruntime, 1 thread: {ms:.1f} ms per {what}")
    return ms
