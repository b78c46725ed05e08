#!/usr/bin/env bash
# End-to-end tests of `kvant sensitivity` and `kvant quantize --accuracy-target`
# on the bundled Fashion-MNIST CNN (3 samples): the ranking and its JSON, the
# search meeting a target that plain INT8 misses by keeping layers in FP32,
# an impossible target (exit status 2, closest model written), and bad input
# refused with one line before any work.
#   usage: sensitivity_test.sh PATH/TO/kvant
set -u

KVANT=$(realpath "${1:?usage: sensitivity_test.sh PATH/TO/kvant}")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# shellcheck source=expect.sh
source "$ROOT/tests/cli/expect.sh"

cp "$ROOT/models/fashion_mnist_cnn.onnx" model.onnx
mkdir calib
cp "$ROOT"/models/samples/fashion_mnist_*.npy calib/
/usr/bin/python3 - <<'PY'
import numpy as np
np.save("labels.npy", np.array([9, 2, 1], dtype=np.int64))
np.save("labels2.npy", np.array([9, 2], dtype=np.int64))
np.save("small.npy", np.zeros((2, 1, 14, 14), np.float32))
PY

# ---- sensitivity -------------------------------------------------------------------
expect_ok "sensitivity sqnr" "only this layer" "$KVANT" sensitivity model.onnx --calib calib --metric sqnr --json s.json
/usr/bin/python3 - <<'PY' && pass || fail "s.json: $(cat s.json)"
import json
r = json.load(open("s.json"))
layers = r["layers"]
assert r["metric"] == "sqnr" and r["samples"] == 3 and len(layers) == 5, r
vals = [l["only"]["value"] for l in layers]
assert all(l["measured"] for l in layers) and vals == sorted(vals), vals  # most sensitive (lowest dB) first
assert [l["rank"] for l in layers] == [1, 2, 3, 4, 5]
# one layer quantized costs less than all of them
assert min(vals) > r["quantized"]["value"], (vals, r["quantized"])
PY
expect_ok "sensitivity top1 with labels, leave-one-out" "all but this layer" \
  "$KVANT" sensitivity model.onnx --calib calib --labels labels.npy --leave-one-out
expect_ok "sensitivity --bits 4 (weight-only INT4)" "weight-only INT4" \
  "$KVANT" sensitivity model.onnx --eval calib --bits 4 --metric mse
expect_ok "help sensitivity" "leave-one-out" "$KVANT" help sensitivity

expect_error "labels of another length" "hold 2 entries for 3 samples" \
  "$KVANT" sensitivity model.onnx --calib calib --labels labels2.npy
expect_error "eval data of another shape" "does not fit input" \
  "$KVANT" sensitivity model.onnx --calib calib --eval small.npy
expect_error "top1 without labels" "needs labels" "$KVANT" sensitivity model.onnx --calib calib --metric top1
expect_error "unknown metric" "--metric must be" "$KVANT" sensitivity model.onnx --calib calib --metric iou
expect_error "bits" "--bits must be 8" "$KVANT" sensitivity model.onnx --calib calib --bits 5

# ---- --metric-cmd: the user's number ranks the layers ---------------------------------
# The score: minus the summed absolute deviation of the outputs from their mean.
cat >score.py <<'PY'
import sys, numpy as np
a = np.load(sys.argv[1])
print("shape", a.shape)
print(-float(np.abs(a - a.mean()).sum()))
PY
expect_ok "--metric-cmd" "ranked by it" "$KVANT" sensitivity model.onnx --calib calib --json mc.json \
  --metric-cmd "/usr/bin/python3 score.py {outputs}" --metric-better higher
/usr/bin/python3 -c "
import json; r = json.load(open('mc.json')); c = r['metric_cmd']
order = [l['node'] for l in r['layers']]
vals = [c['only'][n] for n in order]
assert vals == sorted(vals) and len(vals) == 5, (order, c)" && pass || fail "mc.json: $(cat mc.json)"
expect_error "--metric-cmd that fails" "failed on the fp32 outputs" \
  "$KVANT" sensitivity model.onnx --calib calib --metric-cmd "false {outputs}"
expect_error "--metric-cmd that prints no number" "printed no number" \
  "$KVANT" sensitivity model.onnx --calib calib --metric-cmd "echo hello {outputs}"
expect_error "--metric-cmd without {outputs}" "must contain {outputs}" \
  "$KVANT" sensitivity model.onnx --calib calib --metric-cmd "echo 1"

# ---- accuracy target ---------------------------------------------------------------
Q=(quantize model.onnx --calib calib --eval calib --metric sqnr --no-speed-check --report-samples 0 -f)
expect_ok "loose target: met at step 0" "step 0: 0 kept FP32" "$KVANT" "${Q[@]}" -o t0.onnx --accuracy-target 10 --report t0.json
plain=$(/usr/bin/python3 -c "import json; print(json.load(open('t0.json'))['accuracy_target']['frontier'][0]['metric'])")
tight=$(/usr/bin/python3 -c "print(round($plain + 1.0, 3))")
expect_ok "tight target ($tight dB; plain INT8 $plain dB)" ": met" "$KVANT" "${Q[@]}" -o t1.onnx --accuracy-target "$tight" --report t1.json
/usr/bin/python3 - "$tight" <<'PY' && pass || fail "t1.json: $(cat t1.json)"
import json, sys
tight = float(sys.argv[1])
t = json.load(open("t1.json"))["accuracy_target"]
steps = t["frontier"]
assert t["met"] and t["chosen_step"] == len(steps) - 1 >= 1, t
assert steps[0]["kept_fp32"] == [] and steps[0]["metric"] < tight
assert all(s["metric"] < tight for s in steps[:-1]) and steps[-1]["metric"] >= tight, steps
k = len(steps[-1]["kept_fp32"])
assert k == len(steps) - 1 and steps[-1]["kept_fp32"] == t["ranking"][:k], t  # the ranking's first k
rep = json.load(open("t1.json"))
assert sorted(rep["kept_fp32"]) == sorted(steps[-1]["kept_fp32"]), rep["kept_fp32"]
PY
# --search bisect: about log2(layers) steps; every k below linear's first
# meeting k missed there (same quantization, same data), so bisection's k is
# at least linear's.
expect_ok "bisected tight target" ": met" "$KVANT" "${Q[@]}" -o t1b.onnx --accuracy-target "$tight" --search bisect --report t1b.json
/usr/bin/python3 - "$tight" <<'PY' && pass || fail "t1b.json: $(cat t1b.json)"
import json, math, sys
tight = float(sys.argv[1])
lin = json.load(open("t1.json"))["accuracy_target"]
t = json.load(open("t1b.json"))["accuracy_target"]
steps, n = t["frontier"], len(t["ranking"])
chosen = steps[t["chosen_step"]]
k = len(chosen["kept_fp32"])
assert t["met"] and chosen["metric"] >= tight and chosen["kept_fp32"] == t["ranking"][:k], t
assert k >= len(lin["frontier"][lin["chosen_step"]]["kept_fp32"]), (k, lin)
assert len(steps) - 1 <= math.ceil(math.log2(n)) + 1, (len(steps), n)
assert steps[1]["moved"].endswith("most sensitive -> FP32"), steps[1]
PY
expect_ok "the model written runs" "top-1 agreement" "$KVANT" eval model.onnx t1.onnx --data calib --labels labels.npy
if command -v node >/dev/null && [[ -d "$ROOT/node_modules/onnxruntime-node" ]]; then
  node "$ROOT/scripts/ort_run.js" t1.onnx --input calib/fashion_mnist_0.npy --output-dir ort >ort.txt 2>&1 &&
    [[ -n "$(ls ort/*.npy 2>/dev/null)" ]] && pass || fail "t1.onnx does not run in ONNX Runtime: $(cat ort.txt)"
else
  echo "note: ONNX Runtime (node_modules/onnxruntime-node) missing: t1.onnx not run in it"
fi

"$KVANT" "${Q[@]}" -o t2.onnx --accuracy-target 200 --report t2.json >out.txt 2>err.txt
rc=$?
if [[ $rc -ne 2 ]]; then
  fail "impossible target: exit $rc (want 2): $(cat err.txt)"
elif ! tail -1 err.txt | grep -q "^kvant: error: --accuracy-target 200 not met"; then
  fail "impossible target: last stderr line: $(cat err.txt)"
elif [[ ! -s t2.onnx ]]; then
  fail "impossible target: the closest model was not written"
else
  /usr/bin/python3 -c "import json; t=json.load(open('t2.json'))['accuracy_target']; assert not t['met'] and len(t['frontier']) == 5, t" &&
    pass || fail "t2.json: $(cat t2.json)"
fi
# Static W4A8 (--weight-bits 4): layers move to 8-bit weights first, then FP32.
QS=(quantize model.onnx --calib calib --weight-bits 4 --eval calib --metric sqnr --no-speed-check --report-samples 0 -f)
"$KVANT" "${QS[@]}" -o s0.onnx --accuracy-target 1 --report s0.json >/dev/null 2>&1
plain=$(/usr/bin/python3 -c "import json; print(json.load(open('s0.json'))['accuracy_target']['frontier'][0]['metric'])")
tight=$(/usr/bin/python3 -c "print(round($plain + 3.0, 3))")
expect_ok "W4A8 tight target ($tight dB; plain W4A8 $plain dB)" ": met" "$KVANT" "${QS[@]}" -o s1.onnx --accuracy-target "$tight" --report s1.json
/usr/bin/python3 - "$tight" <<'PY' && pass || fail "s1.json: $(cat s1.json)"
import json, sys
t = json.load(open("s1.json"))["accuracy_target"]
steps = t["frontier"]
assert t["met"] and len(steps) >= 2 and steps[-1]["metric"] >= float(sys.argv[1]), steps
assert steps[1]["moved"].endswith("-> INT8") and steps[1]["int8"] == t["ranking"][:1] and steps[1]["kept_fp32"] == [], steps[1]
PY
# Weight-only INT4: layers move INT4 -> INT8 first, then FP32.
QW=(quantize model.onnx --mode weight-only --bits 4 --group-size 32 --eval calib --metric sqnr --no-speed-check -f)
expect_ok "INT4 loose target" "step 0: 0 kept FP32, 0 INT8" "$KVANT" "${QW[@]}" -o w0.onnx --accuracy-target 1 --report w0.json
plain=$(/usr/bin/python3 -c "import json; print(json.load(open('w0.json'))['accuracy_target']['frontier'][0]['metric'])")
tight=$(/usr/bin/python3 -c "print(round($plain + 5.0, 3))")
expect_ok "INT4 tight target ($tight dB; plain INT4 $plain dB)" ": met" "$KVANT" "${QW[@]}" -o w1.onnx --accuracy-target "$tight" --report w1.json
/usr/bin/python3 - "$tight" <<'PY' && pass || fail "w1.json: $(cat w1.json)"
import json, sys
t = json.load(open("w1.json"))["accuracy_target"]
steps = t["frontier"]
assert t["met"] and len(steps) >= 2 and steps[-1]["metric"] >= float(sys.argv[1]), steps
assert steps[1]["moved"].endswith("-> INT8") and steps[1]["int8"] == t["ranking"][:1] and steps[1]["kept_fp32"] == [], steps[1]
assert steps[-1]["bytes"] > steps[0]["bytes"], steps
PY
expect_ok "the INT4/INT8 mix runs" "output SQNR" "$KVANT" eval model.onnx w1.onnx --data calib
if command -v node >/dev/null && [[ -d "$ROOT/node_modules/onnxruntime-node" ]]; then
  node "$ROOT/scripts/ort_run.js" w1.onnx --input calib/fashion_mnist_0.npy --output-dir ortw >ort.txt 2>&1 &&
    [[ -n "$(ls ortw/*.npy 2>/dev/null)" ]] && pass || fail "w1.onnx does not run in ONNX Runtime: $(cat ort.txt)"
fi

# --metric-cmd steering the search, lower is better: the mean absolute difference from
# the FP32 outputs (the first variant scored is FP32's; the script keeps it).
cat >mad.py <<'PY'
import os, sys, numpy as np
a = np.load(sys.argv[1])
if not os.path.exists("fp32_out.npy"):
    np.save("fp32_out.npy", a)
print("scored", a.shape)
print(float(np.abs(a - np.load("fp32_out.npy")).mean()))
PY
QC=(quantize model.onnx --calib calib --eval calib --metric-cmd "/usr/bin/python3 mad.py {outputs}" --metric-better lower
  --no-speed-check --report-samples 0 -f)
rm -f fp32_out.npy
expect_ok "--metric-cmd target met at step 0" "step 0: 0 kept FP32" "$KVANT" "${QC[@]}" -o m0.onnx --accuracy-target 1 --report m0.json
plain=$(/usr/bin/python3 -c "import json; print(json.load(open('m0.json'))['accuracy_target']['frontier'][0]['metric'])")
tight=$(/usr/bin/python3 -c "print($plain * 0.9)")
rm -f fp32_out.npy
expect_ok "--metric-cmd tight target" ": met" "$KVANT" "${QC[@]}" -o m1.onnx --accuracy-target "$tight" --report m1.json
/usr/bin/python3 - "$tight" <<'PY' && pass || fail "m1.json: $(cat m1.json)"
import json, sys
t = json.load(open("m1.json"))["accuracy_target"]
steps = t["frontier"]
assert t["metric"] == "metric-cmd" and t["fp32_value"] == 0 and t["met"], t
assert len(steps) >= 2 and steps[-1]["metric"] <= float(sys.argv[1]) < steps[0]["metric"], steps
PY

expect_error "--eval without --accuracy-target" "applies only with --accuracy-target" \
  "$KVANT" quantize model.onnx -o x.onnx --calib calib --eval calib
expect_error "--search bogus" "--search must be linear or bisect" \
  "$KVANT" quantize model.onnx -o x.onnx --calib calib --accuracy-target 1 --eval calib --search bogus
expect_error "--accuracy-target without --eval" "needs evaluation data" \
  "$KVANT" quantize model.onnx -o x.onnx --calib calib --accuracy-target 1
expect_error "--accuracy-target with labels of another length" "hold 2 entries for 3 samples" \
  "$KVANT" quantize model.onnx -o x.onnx --calib calib --accuracy-target 1 --eval calib --labels labels2.npy

echo "$passes passed, $failures failed"
((failures == 0))
