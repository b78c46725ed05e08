#!/usr/bin/env bash
# ONNX Runtime takes its fused integer path on kvant's static INT8 CNNs:
#   ort_fusion_test.sh PATH/TO/kvant
#
# For each CNN: the Fashion-MNIST models (models/fashion_mnist_cnn.onnx,
# models/fmnist/resnet_small.onnx, mobilenet_small.onnx; 16 calibration
# images; fashion_mnist_cnn with its Conv biases zero and aliased, as PyTorch
# exports BatchNorm-folded nets with untrained statistics; a Conv-Relu-MaxPool
# stem concatenated with a signed Conv output) and, when present in $KVANT_FIXTURES (default .fixtures, made by
# scripts/make_fixtures.py), mobilenet_v2, efficientnet_b0_opset13/17 and
# resnet50 (4 random calibration samples, bench/models/prepare.py): runs
# `kvant quantize --mode static`, has ONNX Runtime save the graph it runs
# (scripts/ort_run.js --save-optimized: graph optimizations at ONNX Runtime's
# default level, all), and fails when any Conv, Gemm, MatMul or Add is left in
# float there (tests/interop/ort_ops.py): each must have become QLinearConv,
# QGemm, QLinearMatMul, QLinearAdd, ... It also checks that kvant's own
# compiled runtime still runs the file without reference fallbacks (`kvant
# bench` plan line). A fixture that is missing is reported and skipped; the
# Fashion-MNIST models are always there. Exits 77 (ctest: skipped) only when
# onnxruntime-node is not installed and KVANT_REQUIRE_ORT is unset.
set -u

KVANT=$(realpath "${1:?usage: ort_fusion_test.sh PATH/TO/kvant}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FIXTURES=${KVANT_FIXTURES:-$ROOT/.fixtures}
PY=/usr/bin/python3

# shellcheck source=require_ort.sh
source "$HERE/require_ort.sh" "$ROOT"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT" || exit 1
passes=0
failures=0

node "$HERE/make_inputs.js" "$WORK/fmnist-calib" --set train --count 16 >/dev/null || exit 1

# check NAME FP32.onnx CALIB_DIR SAMPLES
check() {
  local name=$1 model=$2 calib=$3 samples=$4
  local q="$WORK/$name.int8.onnx" opt="$WORK/$name.ort-optimized.onnx" out plan
  if ! out=$("$KVANT" quantize "$model" -o "$q" --mode static --calib "$calib" --samples "$samples" \
    --report-samples 0 --no-speed-check 2>&1 >/dev/null); then
    echo "FAIL $name: kvant quantize failed: $out"
    failures=$((failures + 1))
    return
  fi
  if ! out=$(node scripts/ort_run.js "$q" --save-optimized "$opt" 2>&1 | grep -v 'W:onnxruntime'); then
    :
  fi
  if [[ ! -f $opt ]]; then
    echo "FAIL $name: ONNX Runtime did not save its optimized graph: $out"
    failures=$((failures + 1))
    return
  fi
  if out=$("$PY" "$HERE/ort_ops.py" "$opt" 2>&1); then
    echo "PASS $name: no float Conv/Gemm/MatMul/Add in ONNX Runtime's graph; $(head -1 <<<"$out")"
    passes=$((passes + 1))
  else
    echo "FAIL $name: ONNX Runtime left compute in float: $(tr '\n' ' ' <<<"$out")"
    failures=$((failures + 1))
  fi
  plan=$("$KVANT" bench "$q" --runs 1 --warmup 0 2>&1 | grep '^plan')
  if [[ $plan == *" 0 reference fallbacks"* ]]; then
    echo "PASS $name: kvant compiled: $(sed -E 's/^plan +//' <<<"$plan")"
    passes=$((passes + 1))
  else
    echo "FAIL $name: kvant's compiled runtime falls back to reference kernels: ${plan:-no plan line}"
    failures=$((failures + 1))
  fi
}

for model in models/fashion_mnist_cnn.onnx models/fmnist/resnet_small.onnx models/fmnist/mobilenet_small.onnx; do
  check "$(basename "$model" .onnx)" "$model" "$WORK/fmnist-calib" 16
done
# As PyTorch exports BatchNorm-folded nets with untrained BN statistics:
# equal (zero) biases aliased through Identity nodes, one initializer read by
# several Convs (each Conv needs its own int32 bias for QLinearConv).
if "$PY" - models/fashion_mnist_cnn.onnx "$WORK/cnn_shared_bias.onnx" <<'PYEOF'
import sys
import numpy as np
import onnx
from onnx import helper, numpy_helper
m = onnx.load(sys.argv[1])
g = m.graph
inits = {t.name: t for t in g.initializer}
shared = {}
for n in list(g.node):
    if n.op_type == "Conv" and len(n.input) > 2 and n.input[2] in inits:
        c = numpy_helper.to_array(inits[n.input[2]]).shape[0]
        if c not in shared:
            shared[c] = f"zero_bias_{c}"
            g.initializer.append(numpy_helper.from_array(np.zeros(c, np.float32), shared[c]))
        alias = n.output[0] + "_bias"
        g.node.insert(list(g.node).index(n), helper.make_node("Identity", [shared[c]], [alias]))
        n.input[2] = alias
onnx.save(m, sys.argv[2])
PYEOF
then
  check cnn_shared_bias "$WORK/cnn_shared_bias.onnx" "$WORK/fmnist-calib" 16
else
  echo "FAIL cnn_shared_bias: could not write the model"
  failures=$((failures + 1))
fi
# A DenseNet stem: Conv -> Relu -> MaxPool, concatenated with a signed Conv
# output. The Concat's range must not reach back into the Relu (a zero point
# there keeps ONNX Runtime from fusing the first Conv; docs/zoo.md finding 9).
if "$PY" - "$WORK/relu_pool_concat.onnx" <<'PYEOF'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
rng = np.random.default_rng(0)
w = lambda name, *shape: numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), name)
nodes = [
    helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c0"], ["r0"]),
    helper.make_node("MaxPool", ["r0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
    helper.make_node("Concat", ["p0", "c1"], ["cat"], axis=1),
    helper.make_node("Conv", ["cat", "w2", "b2"], ["y"]),
]
graph = helper.make_graph(nodes, "relu_pool_concat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 14, 14])],
                          [w("w0", 8, 1, 3, 3), w("b0", 8), w("w1", 8, 8, 3, 3), w("b1", 8), w("w2", 4, 16, 1, 1), w("b2", 4)])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), sys.argv[1])
PYEOF
then
  check relu_pool_concat "$WORK/relu_pool_concat.onnx" "$WORK/fmnist-calib" 16
else
  echo "FAIL relu_pool_concat: could not write the model"
  failures=$((failures + 1))
fi
for name in mobilenet_v2 efficientnet_b0_opset13 efficientnet_b0_opset17 resnet50; do
  model=$FIXTURES/$name/model.onnx
  if [[ ! -f $model ]]; then
    echo "SKIP $name: no fixture at $model (scripts/make_fixtures.py makes it)"
    continue
  fi
  if ! "$PY" bench/models/prepare.py calib "$model" "$WORK/$name-calib" 4 >/dev/null 2>"$WORK/err"; then
    echo "FAIL $name: calibration data: $(cat "$WORK/err")"
    failures=$((failures + 1))
    continue
  fi
  check "$name" "$model" "$WORK/$name-calib" 4
done
echo "ort fusion: $passes passed, $failures failed"
((failures == 0 && passes > 0))
