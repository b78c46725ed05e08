#!/usr/bin/env bash
# Interop with ONNX Runtime: usage: interop_test.sh PATH/TO/kvant PATH/TO/compare_outputs
#
# For each model among models/fashion_mnist_cnn.onnx and models/fmnist/*.onnx
# (except qat_*), quantizes it with `kvant quantize`: static (64 calibration
# images; also with --reduce-range), dynamic, and weight-only (int4, group 32;
# as QDQ and as com.microsoft.MatMulNBits with --format ort). Runs the FP32
# model and each quantized model on 16 Fashion-MNIST test images with
# `kvant run` (kvant's reference executor, i.e. its QDQ simulation) and with
# ONNX Runtime (scripts/ort_run.js, onnxruntime-node), and checks with
# compare_outputs that they agree to within one output quantization step on at
# least 99.9% of the elements (1e-4 x max|output| where no DequantizeLinear
# gives a step). models/fmnist/qat_*.onnx (PyTorch QAT exports, already QDQ)
# run as they are. Prints one summary line per model and mode; exits 1 on any
# failure. Exits 77 (ctest: skipped) only when onnxruntime-node is not
# installed and KVANT_REQUIRE_ORT is unset.
set -u

KVANT=$(realpath "${1:?usage: interop_test.sh PATH/TO/kvant PATH/TO/compare_outputs}")
COMPARE=$(realpath "${2:?usage: interop_test.sh PATH/TO/kvant PATH/TO/compare_outputs}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ORT_RUN="$ROOT/scripts/ort_run.js"
NUM_INPUTS=${KVANT_INTEROP_INPUTS:-16}

# shellcheck source=require_ort.sh
source "$HERE/require_ort.sh" "$ROOT"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT" || exit 1

failures=0
passes=0
summary=()
# report STATUS MODEL MODE TEXT
report() {
  local line
  line=$(printf '%-4s %-28s %-12s %s' "$1" "$2" "$3" "$4")
  summary+=("$line")
  echo "$line"
  if [[ $1 == PASS ]]; then passes=$((passes + 1)); else failures=$((failures + 1)); fi
}

echo "ONNX Runtime: onnxruntime-node $(node -p "require('$ROOT/node_modules/onnxruntime-node/package.json').version"), node $(node --version)"
# ORT's integer kernels differ by CPU (AVX2 u8s8 uses VPMADDUBSW, whose int16
# pair sums can saturate; VNNI does not): say which this is.
echo "CPU: $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//');" \
  "$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' | grep -xE 'avx2|avx512f|avx512_vnni|avx_vnni|amx_int8' | tr '\n' ' ')"
node "$HERE/make_inputs.js" "$WORK/inputs" --set test --count "$NUM_INPUTS" || exit 1
node "$HERE/make_inputs.js" "$WORK/calib" --set train --count 64 || exit 1
inputs=("$WORK"/inputs/sample_*.npy)

# check MODEL_NAME MODE Q.onnx: runs Q.onnx on every input with kvant and with
# ONNX Runtime, then compares every output.
check() {
  local name=$1 mode=$2 model=$3
  local dir="$WORK/run/$name.$mode"
  local pairs=() err
  mkdir -p "$dir"
  for input in "${inputs[@]}"; do
    local sample
    sample=$(basename "$input" .npy)
    if ! err=$("$KVANT" run "$model" --input "$input" --output-dir "$dir/kvant/$sample" 2>&1 >/dev/null); then
      report FAIL "$name" "$mode" "kvant run failed on $sample: $err"
      return
    fi
    if ! err=$(node "$ORT_RUN" "$model" "${ORT_ARGS[@]}" --input "$input" --output-dir "$dir/ort/$sample" 2>&1 >/dev/null); then
      report FAIL "$name" "$mode" "ONNX Runtime failed on $sample: $err"
      return
    fi
  done
  local outputs=("$dir/kvant/sample_000"/*.npy)
  local out
  for out in "${outputs[@]}"; do
    local file
    file=$(basename "$out")
    pairs=()
    for input in "${inputs[@]}"; do
      local sample
      sample=$(basename "$input" .npy)
      pairs+=("$dir/kvant/$sample/$file" "$dir/ort/$sample/$file")
    done
    local line args=()
    ((${#outputs[@]} > 1)) && args=(--output "${file%.npy}")
    if line=$("$COMPARE" "$model" "${pairs[@]}" "${args[@]}" "${CMP_ARGS[@]}" 2>&1); then
      report PASS "$name" "$mode" "$line${ORT_NOTE:+ [$ORT_NOTE]}"
    elif [[ -n "${INFO_ONLY:-}" ]]; then
      echo "INFO $name $mode (not counted: $INFO_ONLY): $line"
    else
      report FAIL "$name" "$mode" "$line"
      diagnose "$name" "$mode" "$model" "$file" "${args[@]}"
    fi
  done
}

# diagnose MODEL_NAME MODE Q.onnx OUTPUT_FILE [--output NAME]: after a failed
# comparison, runs ONNX Runtime again with graph optimizations at "basic",
# which leaves QuantizeLinear/DequantizeLinear unfused (no integer kernels), to
# tell a difference in ORT's fused integer kernels from one in the QDQ
# arithmetic itself. Informational: the failure stands.
diagnose() {
  local name=$1 mode=$2 model=$3 file=$4
  shift 4
  local dir="$WORK/run/$name.$mode" pairs=() input sample line
  for input in "${inputs[@]}"; do
    sample=$(basename "$input" .npy)
    node "$ORT_RUN" "$model" --opt-level basic --input "$input" --output-dir "$dir/ort-basic/$sample" \
      >/dev/null 2>&1 || return
    pairs+=("$dir/kvant/$sample/$file" "$dir/ort-basic/$sample/$file")
  done
  line=$("$COMPARE" "$model" "${pairs[@]}" "$@" 2>&1)
  echo "     diagnosis: with ORT graph optimizations at basic (QDQ not fused into integer kernels): $line"
}

# quantize MODEL_NAME MODE FP32.onnx ARGS...: kvant quantize, then check.
quantize_and_check() {
  local name=$1 mode=$2 model=$3
  shift 3
  local q="$WORK/$name.$mode.onnx" err
  if ! err=$("$KVANT" quantize "$model" -o "$q" "$@" 2>&1 >/dev/null); then
    report FAIL "$name" "$mode" "kvant quantize $* failed: $err"
    return
  fi
  check "$name" "$mode" "$q"
}

# compare_outputs itself: an output against itself passes, against itself
# shifted by 1000 fails (exit 1).
self_check() {
  local model=models/fashion_mnist_cnn.onnx out="$WORK/self"
  "$KVANT" run "$model" --input "${inputs[0]}" --output-dir "$out" >/dev/null || return 1
  node -e '
    const fs = require("fs");
    const b = Buffer.from(fs.readFileSync(process.argv[1]));
    const start = 10 + b.readUInt16LE(8);
    for (let i = start; i + 4 <= b.length; i += 4) b.writeFloatLE(b.readFloatLE(i) + 1000, i);
    fs.writeFileSync(process.argv[2], b);' "$out/logits.npy" "$out/shifted.npy" || return 1
  "$COMPARE" "$model" "$out/logits.npy" "$out/logits.npy" >/dev/null || return 1
  "$COMPARE" "$model" "$out/logits.npy" "$out/shifted.npy" >/dev/null
  [[ $? -eq 1 ]]
}
if [[ -f models/fashion_mnist_cnn.onnx ]]; then
  if self_check; then
    report PASS compare_outputs self-check "equal outputs pass, outputs 1000 apart fail"
  else
    report FAIL compare_outputs self-check "equal outputs must pass and outputs 1000 apart must fail"
  fi
fi

# What is checked where (docs/interop.md): ONNX Runtime's fused u8 x s8
# integer kernels on CPUs without VNNI sum pairs of products in int16
# (VPMADDUBSW) and saturate, so there its fused 8-bit results are not exact
# QDQ arithmetic. On such CPUs the 8-bit static models (and PyTorch's QAT
# export) are compared with ORT's unfused execution (graph optimizations
# "basic": DQ -> float op -> Q, exactly the QDQ semantics), the fused result
# is printed for information, and the fused integer path is checked on the
# 7-bit models (--reduce-range), which cannot saturate; on VNNI CPUs the
# fused 8-bit path is checked directly. Dynamic models have no output step:
# an activation that rounds the other way after a 1-ulp difference moves an
# output by one activation step times a weight, so they are compared within
# 1% of max|output|. ORT rewrites int4 DQ -> MatMul into MatMulNBits with
# int8-quantized activations by default (accuracy level 4); the QDQ semantics
# are its accuracy level 0, which the weight-only check asks for.
ORT_ARGS=()
CMP_ARGS=()
ORT_NOTE=""
INFO_ONLY=""
if grep -qwE 'avx512_vnni|avx_vnni' /proc/cpuinfo; then vnni=1; else vnni=0; fi
echo "VNNI: $([[ $vnni == 1 ]] && echo yes || echo 'no (8-bit static models are compared with ORT unfused; fused 8-bit is shown as INFO)')"

# check_8bit NAME MODE MODEL: the policy above for 8-bit QDQ models.
check_8bit() {
  if ((vnni)); then
    check "$@"
  else
    INFO_ONLY="ORT fused u8s8 on a CPU without VNNI"
    check "$1" "$2-fused" "$3"
    INFO_ONLY=""
    ORT_ARGS=(--opt-level basic)
    ORT_NOTE="ORT unfused"
    check "$@"
    ORT_ARGS=()
    ORT_NOTE=""
  fi
}

shopt -s nullglob
models=0
for model in models/fashion_mnist_cnn.onnx models/fmnist/*.onnx; do
  [[ -f "$model" ]] || continue
  models=$((models + 1))
  name=$(basename "$model" .onnx)
  # mobilenet_relu has mobilenet_skewed's graph and operators (only the
  # weights differ): one of them is enough here (steering_test.sh runs skewed).
  [[ $name == mobilenet_relu ]] && continue
  if [[ $name == qat_* ]]; then
    check_8bit "$name" qat "$model"
    continue
  fi
  check "$name" fp32 "$model"
  q="$WORK/$name.static.onnx"
  if "$KVANT" quantize "$model" -o "$q" --mode static --calib "$WORK/calib" --samples 64 >/dev/null 2>"$WORK/err"; then
    check_8bit "$name" static "$q"
  else
    report FAIL "$name" static "kvant quantize failed: $(cat "$WORK/err")"
  fi
  quantize_and_check "$name" static-7bit "$model" --mode static --calib "$WORK/calib" --samples 64 --reduce-range
  range=()
  ((vnni)) || range=(--reduce-range)
  CMP_ARGS=(--rel-tol 0.01)
  quantize_and_check "$name" dynamic "$model" --mode dynamic "${range[@]}"
  CMP_ARGS=()
  ORT_ARGS=(--config session.qdq_matmulnbits_accuracy_level=0)
  ORT_NOTE="MatMulNBits accuracy level 0"
  quantize_and_check "$name" weight-only "$model" --mode weight-only --bits 4 --group-size 32
  ORT_ARGS=()
  ORT_NOTE=""
  quantize_and_check "$name" wo-matmulnbits "$model" --mode weight-only --bits 4 --group-size 32 --format ort
done
if ((models == 0)); then
  echo "FAIL: no models found (models/fashion_mnist_cnn.onnx, models/fmnist/*.onnx)"
  exit 1
fi

# Every model written above passes onnx.checker / ONNX Runtime's checks
# (tests/cli/check_models.py; issue 15, defect 4).
if (cd "$WORK" && /usr/bin/python3 "$ROOT/tests/cli/check_models.py" . "$ROOT"); then
  passes=$((passes + 1))
else
  failures=$((failures + 1))
fi

echo
echo "interop summary ($NUM_INPUTS inputs each):"
printf '%s\n' "${summary[@]}"
echo "interop: $passes passed, $failures failed"
((failures == 0))
