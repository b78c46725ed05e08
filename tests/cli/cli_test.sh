#!/usr/bin/env bash
# End-to-end tests of the kvant command: usage: cli_test.sh PATH/TO/kvant
#
# Runs tiny ONNX backend test models (libonnx-testdata) through `kvant run`
# and compares the .npy outputs with the stored output_K.pb; checks inspect
# and bench; and checks that every bad input ends with exit status 1 and one
# line "kvant: error: ..." on stderr naming the problem.
set -u

KVANT=$(realpath "${1:?usage: cli_test.sh PATH/TO/kvant}")
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
CASE_PY="$HERE/onnx_case.py"
DATA=/usr/share/libonnx-testdata/data/node
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"

# shellcheck source=expect.sh
source "$HERE/expect.sh"

# ---- general ---------------------------------------------------------------
expect_ok "--version" "kvant 0." "$KVANT" --version
expect_ok "help" "inspect" "$KVANT" help
expect_ok "help run" "--reference" "$KVANT" help run
expect_ok "run --help" "--allow-nonfinite" "$KVANT" run --help
expect_ok "run --help" "--compare-reference" "$KVANT" run --help
expect_error "help for an unknown command" 'no command named "frobnicate"' "$KVANT" help frobnicate
expect_error "unknown command" "frobnicate" "$KVANT" frobnicate
expect_error "run without a model" "model" "$KVANT" run --output-dir o
# Usage lines say what to type (issue 15: they read "quantize [OPTIONS]").
for c in inspect run bench quantize eval; do
  expect_ok "help $c usage" "Usage: kvant $c [OPTIONS]" "$KVANT" help "$c"
done
expect_ok "help" "Usage: kvant [OPTIONS] [SUBCOMMAND]" "$KVANT" help

# ---- inspect ---------------------------------------------------------------
CONV=$DATA/test_conv_with_strides_padding
expect_ok "inspect conv" "MACs        108 " "$KVANT" inspect "$CONV/model.onnx"
expect_ok "inspect --layers" "Conv_0" "$KVANT" inspect "$CONV/model.onnx" --layers
expect_ok "inspect --json" '"macs"' "$KVANT" inspect "$CONV/model.onnx" --json
if ! $PY -c 'import json,sys; d=json.load(open("out.txt")); assert d["macs"]["total"] == 108, d; assert [i["name"] for i in d["inputs"]] == ["x", "W"]; assert d["inputs"][0]["shape"] == [1, 1, 7, 5]' 2>err.txt; then
  fail "inspect --json content: $(cat err.txt)"
fi
$PY "$CASE_PY" symbolic sym.onnx
expect_ok "inspect symbolic" "float32[batch,4]" "$KVANT" inspect sym.onnx
grep -q "symbolic leading dim 'batch' taken as 1" out.txt && grep -q "MACs        0 " out.txt && pass || fail "inspect batch note: $(cat out.txt)"
expect_ok "inspect --batch" '"batch": 3' "$KVANT" inspect sym.onnx --batch 3 --json
if ! $PY -c 'import json; d=json.load(open("out.txt")); assert d["inputs"][0]["shape"] == ["batch", 4], d["inputs"]; assert d["macs"]["batch_dims_assumed"] == ["batch"], d["macs"]' 2>err.txt; then
  fail "inspect --batch content: $(cat err.txt)"
fi
expect_error "inspect --batch 0" "--batch must be at least 1, got 0" "$KVANT" inspect sym.onnx --batch 0
expect_ok "inspect --shape" '"shape": [' "$KVANT" inspect sym.onnx --shape x=2x4 --json
if ! $PY -c 'import json; d=json.load(open("out.txt")); assert d["inputs"][0]["shape"] == [2, 4], d["inputs"]; assert d["parameters"]["total"] == 4' 2>err.txt; then
  fail "inspect --shape content: $(cat err.txt)"
fi
expect_error "inspect missing file" "nope.onnx: no such file" "$KVANT" inspect nope.onnx
echo "this is not protobuf" >garbage.onnx
expect_error "inspect garbage" "garbage.onnx" "$KVANT" inspect garbage.onnx
expect_error "inspect --shape unknown input" '"z", which is not an input' "$KVANT" inspect sym.onnx --shape z=1x4
expect_error "inspect --shape bad dims" '"q" is not a dimension' "$KVANT" inspect sym.onnx --shape x=1x1xq
expect_error "inspect --shape wrong rank" "rank 2" "$KVANT" inspect sym.onnx --shape x=1x4x4

# ---- run: outputs match ONNX's stored results -----------------------------
for case in test_conv_with_strides_padding test_conv_with_strides_no_padding test_add test_add_bcast test_relu; do
  mkdir -p "in_$case"
  mapfile -t args < <($PY "$CASE_PY" prepare "$DATA/$case" "in_$case")
  if "$KVANT" run "$DATA/$case/model.onnx" "${args[@]}" --output-dir "out_$case" >out.txt 2>err.txt; then
    if $PY "$CASE_PY" check "$DATA/$case" "out_$case" 2>err.txt; then pass; else fail "run $case: $(cat err.txt)"; fi
  else
    fail "run $case: $(cat err.txt)"
  fi
done
if ls -a out_test_add | grep -q tmp; then fail "run left a temporary file: $(ls -a out_test_add)"; else pass; fi

# A single-input model takes an unnamed --input; dynamic dims come from it.
$PY "$CASE_PY" npy batch3 b3.npy
expect_ok "run unnamed single input" "float32[3,4]" "$KVANT" run sym.onnx --input b3.npy --output-dir sym_out
if [[ -f sym_out/y.npy ]] && [[ "$($PY "$CASE_PY" load sym_out/y.npy)" == "[1.0, 3.0, 5.0, 7.0, 5.0, 7.0, 9.0, 11.0, 9.0, 11.0, 13.0, 15.0]" ]]; then
  pass
else
  fail "run sym.onnx: wrong or missing output"
fi
expect_error "existing output without --force" "already exists; pass --force" \
  "$KVANT" run sym.onnx --input x=b3.npy --output-dir sym_out
expect_ok "existing output with --force" "sym_out/y.npy" "$KVANT" run sym.onnx --input x=b3.npy --output-dir sym_out --force
expect_ok "run --compare-reference" "compared 1 of 1 compiled step outputs" "$KVANT" run sym.onnx --input x=b3.npy \
  --output-dir sym_out --force --compare-reference

# ---- run: bad inputs ---------------------------------------------------------
ADD=$DATA/test_add/model.onnx  # x, y: float32[3,4,5]
for kind in good f64 rank2 dim2 nan inf fortran bigendian truncated text; do
  $PY "$CASE_PY" npy $kind $kind.npy
done
expect_error "input file missing" "nope.npy: no such file" "$KVANT" run "$ADD" --input x=nope.npy --input y=good.npy -o o1
expect_error "input not .npy" "not a .npy file" "$KVANT" run "$ADD" --input x=text.npy --input y=good.npy -o o1
expect_error "wrong dtype" "wrong element type" "$KVANT" run "$ADD" --input x=f64.npy --input y=good.npy -o o1
# Issue 15: float64 data gets the cast to make (NumPy saves float64 by default).
expect_error "float64 input suggests a cast" "arr.astype(numpy.float32)" "$KVANT" run "$ADD" --input x=f64.npy --input y=good.npy -o o1
[[ -e o1 ]] && fail "a failed run left its output folder o1" || pass
expect_error "wrong rank" "wrong rank" "$KVANT" run "$ADD" --input x=good.npy --input y=rank2.npy -o o1
expect_error "wrong dim" "dimension 2 differs" "$KVANT" run "$ADD" --input x=good.npy --input y=dim2.npy -o o1
expect_error "unknown input name" 'no input named "z"' "$KVANT" run "$ADD" --input z=good.npy --input y=good.npy -o o1
expect_error "missing input" 'input "y"' "$KVANT" run "$ADD" --input x=good.npy -o o1
expect_error "input given twice" "given twice" "$KVANT" run "$ADD" --input x=good.npy --input x=good.npy -o o1
expect_error "unnamed input, two-input model" "has no input name" "$KVANT" run "$ADD" --input good.npy -o o1
expect_error "NaN input" 'input "x" (nan.npy): element 33 at index [1,2,3] is NaN' \
  "$KVANT" run "$ADD" --input x=nan.npy --input y=good.npy -o o1
expect_error "Inf input" 'input "y" (inf.npy): element 33 at index [1,2,3] is Inf' \
  "$KVANT" run "$ADD" --input x=good.npy --input y=inf.npy -o o1
expect_ok "NaN input with --allow-nonfinite" "o2/" "$KVANT" run "$ADD" --input x=nan.npy --input y=good.npy -o o2 --allow-nonfinite
expect_error "fortran order" "fortran_order" "$KVANT" run "$ADD" --input x=fortran.npy --input y=good.npy -o o1
expect_error "big-endian" "big-endian" "$KVANT" run "$ADD" --input x=bigendian.npy --input y=good.npy -o o1
expect_error "truncated" "truncated" "$KVANT" run "$ADD" --input x=truncated.npy --input y=good.npy -o o1
touch a_file
expect_error "output dir is a file" "is a file, not a folder" "$KVANT" run "$ADD" --input x=good.npy --input y=good.npy -o a_file
expect_error "model missing" "nope.onnx: no such file" "$KVANT" run nope.onnx --input x=good.npy -o o1
if [[ -e o1 ]] && [[ -n "$(ls -A o1)" ]]; then fail "a failed run wrote files: $(ls o1)"; else pass; fi

# ---- bench -------------------------------------------------------------------
expect_ok "bench" "runs/s" "$KVANT" bench "$ADD" --runs 3 --warmup 1 --threads 4
grep -q "median" out.txt && grep -q "p90" out.txt && grep -q "compiled (ISA .*, 4 threads)" out.txt && grep -q "reference fallbacks" out.txt && grep -q "^cpu .* ms per run (process CPU time" out.txt && pass || fail "bench report: $(cat out.txt)"
expect_ok "bench --reference" "reference (plain kernels, 1 thread)" "$KVANT" bench "$ADD" --runs 2 --reference
expect_ok "bench --profile" "by kernel" "$KVANT" bench "$ADD" --runs 2 --profile
expect_error "bench --profile --reference" "--profile" "$KVANT" bench "$ADD" --runs 2 --profile --reference
expect_ok "inspect --plan" "arena" "$KVANT" inspect "$ADD" --plan
expect_ok "inspect --plan batch" "arena" "$KVANT" inspect sym.onnx --plan
$PY "$CASE_PY" symbolic2 sym2.onnx
expect_error "inspect --plan symbolic" "--plan needs every input dim" "$KVANT" inspect sym2.onnx --plan
expect_ok "bench symbolic batch" "taken as 1" "$KVANT" bench sym.onnx --runs 2
grep -q "float32\[1,4\]" out.txt && pass || fail "bench symbolic batch: $(cat out.txt)"
expect_ok "bench --batch" "float32[3,4]" "$KVANT" bench sym.onnx --runs 2 --batch 3
expect_error "bench --batch 0" "--batch must be at least 1" "$KVANT" bench sym.onnx --batch 0
expect_error "bench symbolic inner dim" 'symbolic dim "batch"' "$KVANT" bench sym2.onnx
expect_ok "bench --shape" "float32[2,4]" "$KVANT" bench sym.onnx --shape x=2x4 --runs 2
expect_error "bench --runs 0" "--runs" "$KVANT" bench "$ADD" --runs 0

echo "cli_test: $passes passed, $failures failed"
[[ $failures -eq 0 ]]
