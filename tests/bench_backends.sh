#!/usr/bin/env bash
# The five shipped models on the two CPU backends and in PyTorch eager, for docs/benchmarks.md
# ("CPU backends"). Not part of the test suite: timings vary with the machine's load, so compare
# the ratios within one run, not numbers across runs.
#
#   cargo build --release -p vigil && bash tests/bootstrap.sh test && bash tests/bench_backends.sh
#
# Per model: one `vigil bench --backend tract,onnxruntime` process (both backends on the same
# frames, back to back, one thread each), then one short process per backend under
# /usr/bin/time for its peak RSS, then ONNX Runtime's Python API on the same model.onnx and
# `vigil-zoo bench` (PyTorch eager, network only), one thread each, on the same input shapes.
# Env: VIGIL_BIN (default target/release/vigil), PED2 (default ../shared/datasets/ped2),
#      MODELS (default: all five), VIDEO (default 01), OUT (JSON lines, default stdout only).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${VIGIL_BIN:-target/release/vigil}
ped2=${PED2:-../shared/datasets/ped2}
models=${MODELS:-bdfi maam-net stm-ae hf2vad ustn-dsc}
video=${VIDEO:-01}
py=.venv/bin/python
[ -x "$bin" ] || { echo "bench: $bin not found; run: cargo build --release -p vigil" >&2; exit 1; }
[ -x "$py" ] || { echo "bench: $py not found; run: bash tests/bootstrap.sh test" >&2; exit 1; }
lib=${ORT_DYLIB_PATH:-$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | sort | tail -1)}
[ -f "$lib" ] || { echo "bench: no libonnxruntime in .venv; run: bash tests/bootstrap.sh test (or set ORT_DYLIB_PATH)" >&2; exit 1; }
frames="$ped2/testing/frames/$video"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# 30 frames for the memory runs: enough to fill every recipe's window and reach steady state.
mkdir -p "$tmp/short"
ls "$frames" | sort | head -30 | while read -r f; do cp "$frames/$f" "$tmp/short/"; done

echo "== machine: $(nproc) cores, $(uname -m), $(date -u +%FT%TZ), $($bin --version 2>/dev/null || true), onnxruntime $lib"
for m in $models; do
  pkg=engine/models/ped2-$m
  echo "== $m"
  $bin bench --model "$pkg" --frames "$frames" --passes 1 --backend tract,onnxruntime \
    --onnxruntime-lib "$lib" --json > "$tmp/$m.json"
  for b in tract onnxruntime; do
    /usr/bin/time -f "%M" -o "$tmp/$m-$b.rss" $bin bench --model "$pkg" --frames "$tmp/short" \
      --passes 1 --backend "$b" --onnxruntime-lib "$lib" --json > /dev/null
  done
  "$py" -m vigil_zoo bench --model "$m" --threads 1 --iters 30 --json > "$tmp/$m-torch.json"
  # ONNX Runtime's own Python API on the same model.onnx, one thread: what vigil's backend adds
  # or loses around the library.
  "$py" - "$pkg/model.onnx" > "$tmp/$m-ortpy.json" <<'PY'
import json, statistics, sys, time
import numpy as np, onnxruntime as ort
o = ort.SessionOptions()
o.intra_op_num_threads = 1
o.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(0)
feed = {i.name: rng.uniform(-1, 1, i.shape).astype(np.float32) for i in s.get_inputs()}
for _ in range(3):
    s.run(None, feed)
t = []
for _ in range(30):
    a = time.perf_counter(); s.run(None, feed); t.append((time.perf_counter() - a) * 1e3)
print(json.dumps({"mean_ms": statistics.mean(t), "median_ms": statistics.median(t)}))
PY
  /usr/bin/time -f "%M" -o "$tmp/$m-torch.rss" "$py" -m vigil_zoo bench --model "$m" --threads 1 \
    --iters 3 --warmup 1 --json > /dev/null
  "$py" - "$m" "$tmp" <<'PY'
import json, sys
m, tmp = sys.argv[1], sys.argv[2]
v = json.load(open(f"{tmp}/{m}.json"))
t = json.load(open(f"{tmp}/{m}-torch.json"))
op = json.load(open(f"{tmp}/{m}-ortpy.json"))
rss = {b: int(open(f"{tmp}/{m}-{b}.rss").read().split()[-1]) / 1024 for b in ("tract", "onnxruntime", "torch")}
b = {x["backend"]: x for x in v["backends"]}
tr, ort = b["tract"], b["onnxruntime"]
row = {
    "model": m,
    "frames": v["frames"],
    "network_ms": {"tract": tr["network"]["mean_us"] / 1e3, "onnxruntime": ort["network"]["mean_us"] / 1e3,
                   "onnxruntime_python": op["mean_ms"], "pytorch": t["mean_ms"], "pytorch_median": t["median_ms"]},
    "ratio_vigil_onnxruntime_over_python_onnxruntime": ort["network"]["mean_us"] / 1e3 / op["mean_ms"],
    "ratio_onnxruntime_over_tract": ort["network"]["mean_us"] / tr["network"]["mean_us"],
    "pipeline_frames_per_s": {"tract": tr["frames_per_s"], "onnxruntime": ort["frames_per_s"],
                              "pytorch_network_only": 1e3 / t["mean_ms"]},
    "cameras_at_fps": {"tract": tr["cameras"], "onnxruntime": ort["cameras"], "fps": tr["fps"], "cores": tr["cores"]},
    "peak_rss_mb": rss,
    "onnxruntime": ort["library"],
    "per_frame_work_except_network_us": next(s["mean_us"] for s in v["stages"] if s["stage"].startswith("per-frame work")),
}
print(json.dumps(row))
PY
done
