#!/usr/bin/env bash
# vigil's ONNX Runtime backend against ONNX Runtime's own Python API on the same ped2-bdfi
# network, both fed Ped2 test video 01, alternated ROUNDS times so that the machine's drift
# hits both (docs/benchmarks.md, "CPU backends"). One thread each. The Python side prepares the
# frames with PIL (grey, bilinear resize to 192x128, [-1, 1]), close to but not exactly the
# runtime's own preprocessing; vigil's side times the network inside `vigil bench`.
#
#   cargo build --release -p vigil && bash tests/bootstrap.sh test && bash tests/bench_ort_ab.sh
#
# Env: VIGIL_BIN (default target/release/vigil), PED2 (default ../shared/datasets/ped2), ROUNDS (3).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin=${VIGIL_BIN:-target/release/vigil}
ped2=${PED2:-../shared/datasets/ped2}
rounds=${ROUNDS:-3}
py=.venv/bin/python
[ -x "$bin" ] || { echo "bench: $bin not found; run: cargo build --release -p vigil" >&2; exit 1; }
[ -x "$py" ] || { echo "bench: $py not found; run: bash tests/bootstrap.sh test" >&2; exit 1; }
lib=${ORT_DYLIB_PATH:-$(ls .venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | sort | tail -1)}
[ -f "$lib" ] || { echo "bench: no libonnxruntime in .venv; set ORT_DYLIB_PATH" >&2; exit 1; }
frames="$ped2/testing/frames/01"
for r in $(seq "$rounds"); do
  $bin bench --model engine/models/ped2-bdfi --frames "$frames" --passes 1 --backend onnxruntime \
    --onnxruntime-lib "$lib" --json 2>/dev/null \
    | "$py" -c "import json,sys; v=json.load(sys.stdin); print('round $r vigil onnxruntime network mean %.2f ms' % (v['backends'][0]['network']['mean_us'] / 1e3))"
  "$py" - "$frames" "$r" <<'PY'
import glob, statistics, sys, time
import numpy as np, onnxruntime as ort
from PIL import Image
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession("engine/models/ped2-bdfi/model.onnx", o, providers=["CPUExecutionProvider"])
names = [i.name for i in s.get_inputs()]
fr = [(np.asarray(Image.open(p).convert("L").resize((192, 128), Image.BILINEAR), np.float32) / 127.5 - 1.0)[None, None]
      for p in sorted(glob.glob(sys.argv[1] + "/*"))]
t = []
for i in range(1, len(fr) - 1):
    a = time.perf_counter(); s.run(None, {names[0]: fr[i - 1], names[1]: fr[i + 1]}); t.append((time.perf_counter() - a) * 1e3)
print("round %s python onnxruntime network mean %.2f ms" % (sys.argv[2], statistics.mean(t)))
PY
done
