#!/usr/bin/env bash
# The compiled runtime end to end: on 2,000 Fashion-MNIST test images, the
# compiled static-INT8 demo CNN scores the same top-1 as the reference
# executor's QDQ simulation (within 0.1 points), 1 and 2 threads give the
# same outputs, `inspect --plan` shows no reference fallback, and run's
# outputs match --reference within one output step.
#   usage: compiled_test.sh PATH/TO/kvant
set -u

KVANT=$(realpath "${1:?usage: compiled_test.sh PATH/TO/kvant}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=/usr/share/datasets/fashion-mnist
PREP="mean=0.2860,std=0.3530"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# shellcheck source=expect.sh
source "$ROOT/tests/cli/expect.sh"

expect_ok "quantize" "% of FP32" "$KVANT" quantize "$ROOT/models/fashion_mnist_cnn.onnx" -o q.onnx --mode static \
  --calib "$DATA/train-images-idx3-ubyte.gz" --preprocess "$PREP" --samples 200
expect_ok "plan" "0 reference fallbacks" "$KVANT" inspect q.onnx --plan --shape image=1x1x28x28
for mode in compiled reference; do
  extra=()
  [[ $mode == reference ]] && extra=(--reference)
  expect_ok "eval $mode" "top-1" "$KVANT" eval q.onnx --data "$DATA/t10k-images-idx3-ubyte.gz" --preprocess "$PREP" \
    --limit 2000 --report "$mode.json" "${extra[@]}"
done
expect_ok "eval 2 threads" "top-1" "$KVANT" eval q.onnx --data "$DATA/t10k-images-idx3-ubyte.gz" --preprocess "$PREP" \
  --limit 2000 --report threads2.json --threads 2
/usr/bin/python3 - <<'PY' && pass || fail "compiled top-1 differs from the simulation's"
import json
c, r, t = (json.load(open(f))["models"][0]["top1"] for f in ("compiled.json", "reference.json", "threads2.json"))
print(f"top-1 compiled {c:.4f}, simulation {r:.4f}, compiled 2 threads {t:.4f}")
assert abs(c - r) <= 0.001 and c == t
PY

cp "$ROOT"/models/samples/fashion_mnist_0.npy x.npy
expect_ok "run compiled" "" "$KVANT" run q.onnx --input x.npy -o out_c
expect_ok "run reference" "" "$KVANT" run q.onnx --input x.npy -o out_r --reference
/usr/bin/python3 - <<'PY' && pass || fail "run: compiled and reference outputs differ by more than one step"
import glob, numpy as np, onnx
from onnx import numpy_helper
m = onnx.load("q.onnx")
out = m.graph.output[0].name
init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
made = {o: n for n in m.graph.node for o in n.output}
if made[out].op_type == "DequantizeLinear":
    scale = init[made[out].input[1]]
else:  # float logits of the last Gemm (design decision 68): one input step times its largest weight
    x_dq, w_dq = made[made[out].input[0]], made[made[out].input[1]]
    scale = init[x_dq.input[1]] * np.abs(init[w_dq.input[0]]).max() * np.abs(init[w_dq.input[1]]).max()
c = np.load(glob.glob("out_c/*.npy")[0]); r = np.load(glob.glob("out_r/*.npy")[0])
assert np.abs(c - r).max() <= float(scale) * 1.001, (c, r)
PY

check_written_models

echo "compiled_test: $passes passed, $failures failed"
[[ $failures -eq 0 ]]
