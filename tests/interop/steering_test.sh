#!/usr/bin/env bash
# The accuracy-steering options of `kvant quantize` (--equalize,
# --bias-correction, --rounding adaround, --weight-bits 4; design decisions 35, 36, 38) write models that still run in ONNX
# Runtime 1.30 and in kvant's compiled runtime, with the same results:
#   usage: steering_test.sh PATH/TO/kvant PATH/TO/compare_outputs
#
# models/fmnist/mobilenet_skewed.onnx (the per-tensor fixture, ReLU so that
# equalization applies) and resnet_small.onnx are quantized with each option
# and both together (and AdaRound alone): static per-tensor INT8, the same with --reduce-range
# (7-bit weights: ONNX Runtime's fused u8s8 kernels are exact on every CPU),
# and dynamic INT8 with --equalize. Each is run on 8 Fashion-MNIST test
# images by kvant's compiled runtime (`kvant run`), its reference executor
# (`--reference`, the QDQ simulation) and ONNX Runtime (scripts/ort_run.js);
# compare_outputs checks compiled against the reference and against ONNX
# Runtime within one output step (static 8-bit: ORT unfused, graph
# optimizations "basic", as interop_test.sh does on CPUs without VNNI;
# dynamic: within 1% of max|output|). The report must say how many pairs were
# equalized and biases corrected, and every written model passes
# tests/cli/check_models.py. Exits 77 (skipped) only when onnxruntime-node is
# missing and KVANT_REQUIRE_ORT is unset.
set -u

KVANT=$(realpath "${1:?usage: steering_test.sh PATH/TO/kvant PATH/TO/compare_outputs}")
COMPARE=$(realpath "${2:?usage: steering_test.sh PATH/TO/kvant PATH/TO/compare_outputs}")
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ORT_RUN="$ROOT/scripts/ort_run.js"

# shellcheck source=require_ort.sh
source "$HERE/require_ort.sh" "$ROOT"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT" || exit 1
passes=0
failures=0
report() {
  printf '%-4s %-16s %-26s %s\n' "$1" "$2" "$3" "$4"
  if [[ $1 == PASS ]]; then passes=$((passes + 1)); else failures=$((failures + 1)); fi
}

node "$HERE/make_inputs.js" "$WORK/inputs" --set test --count 8 || exit 1
node "$HERE/make_inputs.js" "$WORK/calib" --set train --count 64 || exit 1
inputs=("$WORK"/inputs/sample_*.npy)

# runs NAME VARIANT MODEL ORT_ARGS... : compiled vs reference, compiled vs ORT.
runs() {
  local name=$1 variant=$2 model=$3
  shift 3
  local dir="$WORK/run/$name.$variant" input sample err
  for input in "${inputs[@]}"; do
    sample=$(basename "$input" .npy)
    for how in compiled reference ort; do
      case $how in
        compiled) err=$("$KVANT" run "$model" --input "$input" -o "$dir/$how/$sample" 2>&1 >/dev/null) ;;
        reference) err=$("$KVANT" run "$model" --input "$input" -o "$dir/$how/$sample" --reference 2>&1 >/dev/null) ;;
        ort) err=$(node "$ORT_RUN" "$model" "$@" --input "$input" --output-dir "$dir/$how/$sample" 2>&1 >/dev/null) ;;
      esac
      if [[ $? -ne 0 ]]; then
        report FAIL "$name" "$variant" "$how failed on $sample: $err"
        return
      fi
    done
  done
  local other line pairs
  for other in reference ort; do
    pairs=()
    for input in "${inputs[@]}"; do
      sample=$(basename "$input" .npy)
      pairs+=("$dir/compiled/$sample/logits.npy" "$dir/$other/$sample/logits.npy")
    done
    if line=$("$COMPARE" "$model" "${pairs[@]}" "${CMP_ARGS[@]}" 2>&1); then
      report PASS "$name" "$variant" "compiled vs $other: $line"
    else
      report FAIL "$name" "$variant" "compiled vs $other: $line"
    fi
  done
}

# quantize NAME VARIANT MODEL EXPECT ARGS... : kvant quantize (its report must
# contain EXPECT), then runs.
quantize() {
  local name=$1 variant=$2 model=$3 expect=$4
  shift 4
  local q="$WORK/$name.$variant.onnx" out
  if ! out=$("$KVANT" quantize "$model" -o "$q" --no-speed-check "$@" 2>&1); then
    report FAIL "$name" "$variant" "kvant quantize $* failed: $out"
    return
  fi
  if ! grep -qE "$expect" <<<"$out"; then
    report FAIL "$name" "$variant" "the report lacks \"$expect\": $out"
    return
  fi
  runs "$name" "$variant" "$q" "${ORT_ARGS[@]}"
}

static=(--mode static --calib "$WORK/calib" --samples 64 --report-samples 0 --per-tensor)
eq_note="cross-layer equalization: [1-9][0-9]* layer pair"
bc_note="bias correction: [1-9][0-9]* Conv/Gemm"
for name in mobilenet_skewed resnet_small; do
  model=models/fmnist/$name.onnx
  if [[ ! -f $model ]]; then
    report FAIL "$name" - "$model is missing"
    continue
  fi
  CMP_ARGS=()
  ORT_ARGS=(--opt-level basic)
  quantize "$name" static-equalize "$model" "$eq_note" "${static[@]}" --equalize
  quantize "$name" static-bias-correction "$model" "$bc_note" "${static[@]}" --bias-correction
  quantize "$name" static-both "$model" "$eq_note" "${static[@]}" --equalize --bias-correction
  quantize "$name" static-adaround "$model" "AdaRound: [1-9][0-9]* layer" "${static[@]}" --rounding adaround
  # W4A8 (--weight-bits 4: int4 per-channel weights, opset 21), nearest and AdaRound.
  w4a8=(--mode static --calib "$WORK/calib" --samples 64 --report-samples 0 --weight-bits 4)
  quantize "$name" static-w4a8 "$model" "quantized" "${w4a8[@]}"
  quantize "$name" static-w4a8-adaround "$model" "AdaRound: [1-9][0-9]* layer" "${w4a8[@]}" --rounding adaround
  ORT_ARGS=()
  quantize "$name" static-both-7bit-fused "$model" "$bc_note" "${static[@]}" --equalize --bias-correction \
    --reduce-range
  CMP_ARGS=(--rel-tol 0.01)
  quantize "$name" dynamic-equalize "$model" "$eq_note" --mode dynamic --per-tensor --reduce-range --equalize
done

if (cd "$WORK" && /usr/bin/python3 "$ROOT/tests/cli/check_models.py" . "$ROOT"); then
  passes=$((passes + 1))
else
  failures=$((failures + 1))
fi
echo "steering: $passes passed, $failures failed"
((failures == 0))
