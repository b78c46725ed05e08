#!/usr/bin/env bash
# `kvant quantize` on models kvant was not built against (issue 9):
#  - a CNN written at opsets 9 and 11 (Softmax over a non-last axis, Upsample /
#    Resize-11, Clip, Pad, Split, Squeeze, Dropout, BatchNormalization;
#    tests/cli/make_old_opset_models.py), quantized static and dynamic: each
#    output declares opset 13, passes onnx.checker (full_check), runs in ONNX
#    Runtime 1.30 with outputs matching kvant's, and agrees with FP32;
#  - a model with a custom-domain operator (com.example.Foo) quantizes in
#    both modes: Foo and what only it feeds stay FP32, the report names Foo;
#  - a model with nothing to quantize is written unchanged with a warning.
# KEEP=1 keeps the work folder (printed) for a look at the files.
# The ONNX Runtime checks are skipped (with a note) when onnxruntime-node is
# not installed, unless KVANT_REQUIRE_ORT is set.
#   usage: opset_test.sh PATH/TO/kvant
set -u

KVANT=$(realpath "${1:?usage: opset_test.sh PATH/TO/kvant}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
[[ -n "${KEEP:-}" ]] && echo "work: $WORK" || trap 'rm -rf "$WORK"' EXIT
cd "$WORK" || exit 1

# shellcheck source=expect.sh
source "$ROOT/tests/cli/expect.sh"

/usr/bin/python3 "$ROOT/tests/cli/make_old_opset_models.py" "$WORK" || {
  echo "FAIL: could not write the test models"
  exit 1
}
have_ort=1
if [[ ! -d "$ROOT/node_modules/onnxruntime-node" ]] || ! command -v node >/dev/null; then
  have_ort=0
  [[ -n "${KVANT_REQUIRE_ORT:-}" ]] && fail "onnxruntime-node is not installed and KVANT_REQUIRE_ORT is set"
  echo "note: onnxruntime-node not installed: ONNX Runtime checks skipped"
fi

# ONNX Runtime's fused u8 x s8 integer kernels can saturate int16 pair sums
# (docs/interop.md): static models are compared with ORT's unfused execution
# (--opt-level basic: the QDQ semantics), dynamic ones with 7-bit weights
# (--reduce-range); ORT's default (fused) run of every model must work, and
# stay within 15 dB SQNR of FP32 where its integer kernels are exact: 7-bit
# weights anywhere, 8-bit static weights on CPUs with VNNI (without it, ORT
# takes vpmaddubsw, whose pair sums saturate: see docs/interop.md).
mkdir -p out
ort() {  # ort MODEL TAG [ARGS...]
  local q=$1 tag=$2
  shift 2
  node "$ROOT/scripts/ort_run.js" "$q" --input input.npy --output-dir "ort/$tag" "$@" >/dev/null 2>run.err ||
    fail "ONNX Runtime could not run $q $*: $(cat run.err)"
}
for opset in 9 11; do
  m=cnn_opset$opset.onnx
  expect_ok "static, opset $opset" "% of FP32" "$KVANT" quantize "$m" -o "out/s$opset.onnx" --calib calib
  expect_ok "dynamic, opset $opset" "dynamic" "$KVANT" quantize "$m" -o "out/d$opset.onnx" --mode dynamic
  expect_ok "dynamic 7-bit, opset $opset" "dynamic" \
    "$KVANT" quantize "$m" -o "out/r$opset.onnx" --mode dynamic --reduce-range
  for q in "$m" "out/s$opset.onnx" "out/d$opset.onnx" "out/r$opset.onnx"; do
    tag=$(basename "$q" .onnx)
    "$KVANT" run "$q" --input input.npy --output-dir "kv/$tag" >/dev/null 2>run.err || fail "kvant run $q: $(cat run.err)"
    if ((have_ort)); then
      ort "$q" "$tag"
      [[ $tag == s* ]] && ort "$q" "$tag.basic" --opt-level basic
    fi
  done
done
/usr/bin/python3 "$ROOT/tests/cli/check_models.py" out "$ROOT" && pass || fail "a quantized model fails the ONNX checker"

# Opset declared, and outputs: each quantized model vs its FP32 original in
# kvant, and ONNX Runtime vs kvant on the same file (SQNR, dB).
/usr/bin/python3 - "$have_ort" <<'PY' && pass || fail "outputs disagree (see above)"
import sys
import numpy as np, onnx
have_ort = sys.argv[1] == "1"
flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "").split()
vnni = "avx512_vnni" in flags or "avx_vnni" in flags
bad = []
def sqnr(ref, x):
    noise = np.sum((ref.astype(np.float64) - x) ** 2)
    return np.inf if noise == 0 else 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise)
for opset in (9, 11):
    fp32 = f"cnn_opset{opset}"
    for out in ("probs", "spatial"):
        ref = np.load(f"kv/{fp32}/{out}.npy")
        if have_ort:  # kvant's old-opset semantics = ONNX Runtime's
            err = np.max(np.abs(np.load(f"ort/{fp32}/{out}.npy") - ref))
            if err > 1e-5: bad.append(f"{fp32} {out}: kvant vs ORT max diff {err}")
        for q, what in ((f"s{opset}", "static"), (f"d{opset}", "dynamic"), (f"r{opset}", "dynamic 7-bit")):
            declared = {o.domain: o.version for o in onnx.load(f"out/{q}.onnx").opset_import}
            if declared.get("", 0) != 13: bad.append(f"{q}: opset {declared}, want 13")
            got = np.load(f"kv/{q}/{out}.npy")
            line = f"opset {opset} {what:13s} {out:7s}: kvant vs FP32 {sqnr(ref, got):6.1f} dB"
            if sqnr(ref, got) < 25: bad.append(f"{q} {out}: kvant vs FP32 below 25 dB")
            if have_ort:
                fused = sqnr(ref, np.load(f"ort/{q}/{out}.npy"))
                line += f", ORT (default) vs FP32 {fused:6.1f} dB"
                exact_fused = q[0] == "r" or (q[0] == "s" and vnni)
                if fused < 15 and exact_fused: bad.append(f"{q} {out}: ORT (default) vs FP32 below 15 dB")
                exact = {"s": f"{q}.basic", "r": q}.get(q[0])
                if exact:
                    agree = sqnr(got, np.load(f"ort/{exact}/{out}.npy"))
                    line += f", ORT ({'basic' if q[0] == 's' else 'default'}) vs kvant {agree:6.1f} dB"
                    if agree < 60: bad.append(f"{q} {out}: ORT vs kvant below 60 dB")
            print(line)
for b in bad: print("  FAIL " + b)
sys.exit(1 if bad else 0)
PY

# ---- never refuse a whole model for one node ----------------------------------------
expect_ok "static with a custom-domain op" "com.example.Foo" \
  "$KVANT" quantize custom_op.onnx -o out/c_static.onnx --calib calib8 --report c.json
/usr/bin/python3 - <<'PY' && pass || fail "custom op: wrong nodes quantized (see above)"
import json, onnx, sys
r = json.load(open("c.json"))
reasons = {e["node"]: e["reason"] for e in r["fp32_reasons"]}
m = onnx.load("out/c_static.onnx")
dq_inputs = {i for n in m.graph.node if n.op_type == "DequantizeLinear" for i in n.output}
conv_in = {n.name: n.input[1] for n in m.graph.node if n.op_type == "Conv"}
ok = ("foo" in reasons and "com.example.Foo" in reasons["foo"] and "conv_b" in reasons
      and conv_in["conv_a"] in dq_inputs and conv_in["conv_c"] in dq_inputs and conv_in["conv_b"] not in dq_inputs
      and any(n.op_type == "Foo" and n.domain == "com.example" for n in m.graph.node))
print(reasons, conv_in) if not ok else None
sys.exit(0 if ok else 1)
PY
expect_ok "dynamic with a custom-domain op" "com.example.Foo" \
  "$KVANT" quantize custom_op.onnx -o out/c_dynamic.onnx --mode dynamic
[[ $(/usr/bin/python3 -c "import onnx; print(sum(n.op_type == 'ConvInteger' for n in onnx.load('out/c_dynamic.onnx').graph.node))") == 3 ]] &&
  pass || fail "dynamic: not every Conv became ConvInteger"
/usr/bin/python3 "$ROOT/tests/cli/check_models.py" out "$ROOT" >/dev/null && pass || fail "the custom-op outputs fail the checker"

expect_ok "dynamic with nothing to quantize" "written unchanged" \
  "$KVANT" quantize relu_only.onnx -o out/r.onnx --mode dynamic
grep -q "warning" out.txt && pass || fail "no warning for nothing to quantize: $(cat out.txt)"
expect_ok "static with nothing to quantize" "written unchanged" \
  "$KVANT" quantize relu_only.onnx -o out/rs.onnx --calib calib

# ---- layers inside If branches ----------------------------------------------------
/usr/bin/python3 "$ROOT/tests/cli/make_control_flow_model.py" "$WORK"
rc=$?
if ((rc == 77)); then
  echo "note: torch not installed: control-flow checks skipped"
elif ((rc != 0)); then
  fail "could not write the control-flow model"
else
  expect_ok "dynamic inside If branches" "4 quantized" "$KVANT" quantize if_lstm.onnx -o out/cf.onnx --mode dynamic
  expect_ok "dynamic 7-bit inside If branches" "4 quantized" \
    "$KVANT" quantize if_lstm.onnx -o out/cf7.onnx --mode dynamic --reduce-range
  # Static: calibrated on one sample per branch, all three Conv/MatMul and
  # the LSTM (int8 W/R, Q/DQ on its input and output: decision 62); with
  # only the "on" sample the else branch's layers stay FP32 and the report
  # says why.
  mkdir -p cfcalib/x cfcalib/flag cfcalib1/x cfcalib1/flag
  cp x.npy cfcalib/x/s0.npy && cp x.npy cfcalib/x/s1.npy && cp on.npy cfcalib/flag/s0.npy && cp off.npy cfcalib/flag/s1.npy
  cp x.npy cfcalib1/x/s0.npy && cp on.npy cfcalib1/flag/s0.npy
  expect_ok "static inside If branches" "4 quantized" "$KVANT" quantize if_lstm.onnx -o out/cfs.onnx --calib cfcalib
  expect_ok "static, one branch never taken" "never computed during calibration" \
    "$KVANT" quantize if_lstm.onnx -o out/cfs1.onnx --calib cfcalib1
  for flag in on off; do
    for q in if_lstm out/cf out/cf7 out/cfs; do
      tag=$(basename "$q").$flag
      "$KVANT" run "$q.onnx" --input x=x.npy --input flag=$flag.npy --output-dir "kv/$tag" >/dev/null 2>run.err ||
        fail "kvant run $q $flag: $(cat run.err)"
      ((have_ort)) && { node "$ROOT/scripts/ort_run.js" "$q.onnx" --input x=x.npy --input flag=$flag.npy \
        --output-dir "ort/$tag" --opt-level basic >/dev/null 2>run.err ||
        fail "ONNX Runtime could not run $q $flag: $(cat run.err)"; }
    done
  done
  /usr/bin/python3 - "$have_ort" <<'PY' && pass || fail "control flow: outputs disagree (see above)"
import sys
import numpy as np, onnx
have_ort = sys.argv[1] == "1"
def sqnr(ref, x):
    noise = np.sum((ref.astype(np.float64) - x) ** 2)
    return np.inf if noise == 0 else 10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / noise)
bad = []
for q in ("cf", "cf7", "cfs"):
    m = onnx.load(f"out/{q}.onnx")
    branches = {a.name: [n.op_type for n in a.g.node] for n in m.graph.node if n.op_type == "If" for a in n.attribute}
    marker = "QuantizeLinear" if q == "cfs" else "DynamicQuantizeLinear"
    lstm_quantized = "DequantizeLinear" in branches["then_branch"]  # its W and R (static and dynamic)
    if q == "cfs":  # static: the LSTM's input and output are quantized as well
        lstm_quantized = lstm_quantized and branches["then_branch"].count("QuantizeLinear") >= 2
    if marker not in branches["else_branch"] or not lstm_quantized:
        bad.append(f"{q}: branches not quantized: {branches}")
    for flag in ("on", "off"):
        ref = np.load(f"kv/if_lstm.{flag}/y.npy")
        got = np.load(f"kv/{q}.{flag}/y.npy")
        line = f"If branch {flag:3s} {q:4s}: kvant vs FP32 {sqnr(ref, got):6.1f} dB"
        if sqnr(ref, got) < 30: bad.append(f"{q} {flag}: kvant vs FP32 below 30 dB")
        if have_ort and q in ("cf7", "cfs"):  # ORT unfused (--opt-level basic): the QDQ semantics
            agree = sqnr(got, np.load(f"ort/{q}.{flag}/y.npy"))
            line += f", ORT vs kvant {agree:6.1f} dB"
            if agree < 60: bad.append(f"{q} {flag}: ORT vs kvant below 60 dB")
        print(line)
for b in bad: print("  FAIL " + b)
sys.exit(1 if bad else 0)
PY
  /usr/bin/python3 "$ROOT/tests/cli/check_models.py" out "$ROOT" >/dev/null && pass || fail "control-flow outputs fail the checker"
fi

echo "opset_test: $passes passed, $failures failed"
[[ $failures -eq 0 ]]
