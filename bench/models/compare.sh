#!/usr/bin/env bash
# kvant vs ONNX Runtime 1.30 on real architectures, batch 1: kvant FP32,
# kvant INT8, ORT FP32 and ORT INT8 (the same QDQ file kvant wrote), at each
# thread count, interleaved in rounds so machine noise hits all four alike.
# Prints a markdown table of medians (the median over rounds of each burst's
# median) and the ratios; --write also records it in docs/benchmarks.md.
#
#   bench/models/compare.sh [--models "resnet50 mobilenet_v2 ..."] [--threads "1 2"]
#                           [--rounds 3] [--runs 10] [--quick] [--reduce-range] [--write]
#
# --reduce-range: the INT8 models get 7-bit weights (kvant quantize
# --reduce-range, as ONNX Runtime's quantizer offers for CPUs without VNNI);
# --write then records the table in docs/benchmarks-7bit.md.
#
# Models (random weights, fixed seeds; ResNet-50 .. BERT from
# scripts/make_fixtures.py, the LSTM from bench/models/prepare.py): resnet50,
# mobilenet_v2, efficientnet_b0 (static INT8, 8 random calibration samples),
# bert_base (seq 128, dynamic INT8), lstm (2 x 512, 50 steps, dynamic INT8).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
models="resnet50 mobilenet_v2 efficientnet_b0 bert_base lstm"
threads_list="1 2"
rounds=3
runs=10
write=0
reduce_range=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --models) models=$2; shift 2 ;;
    --threads) threads_list=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --quick) rounds=1; runs=2; shift ;;
    --write) write=1; shift ;;
    --reduce-range) reduce_range=1; shift ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
py=/usr/bin/python3
kvant=$root/build/release/kvant
cache=$root/.bench-models
mkdir -p "$cache"
if [[ ! -x $kvant ]]; then
  cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build/release -j2 --target kvant
fi
[[ -d node_modules/onnxruntime-node ]] || scripts/install_deps.sh

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

# prepare NAME: sets fp32, int8, inputs, shapes
prepare() {
  local name=$1 fixture=$1
  [[ $name == efficientnet_b0 ]] && fixture=efficientnet_b0_opset13
  local dir=$cache/$name
  mkdir -p "$dir"
  if [[ $name == lstm ]]; then
    fp32=$dir/model.onnx
    [[ -f $fp32 ]] || $py bench/models/prepare.py lstm "$fp32" 2>/dev/null
  else
    fp32=$root/.fixtures/$fixture/model.onnx
    [[ -f $fp32 ]] || $py scripts/make_fixtures.py --out .fixtures --only "$fixture" >/dev/null
  fi
  local range=()
  int8=$dir/model.int8.onnx
  if ((reduce_range)); then
    range=(--reduce-range)
    int8=$dir/model.int8-7bit.onnx
  fi
  if [[ ! -f $int8 ]]; then
    if [[ $name == bert_base || $name == lstm ]]; then
      "$kvant" quantize "$fp32" -o "$int8" --mode dynamic "${range[@]}" >/dev/null
    else
      [[ -d $dir/calib ]] || $py bench/models/prepare.py calib "$fp32" "$dir/calib" 8
      "$kvant" quantize "$fp32" -o "$int8" --mode static --calib "$dir/calib" "${range[@]}" >/dev/null
    fi
  fi
  inputs=$dir/inputs
  [[ -d $inputs ]] || $py bench/models/prepare.py inputs "$fp32" "$inputs"
  read -r -a shapes <<<"$($py bench/models/prepare.py shapes "$fp32")"
}

kv_time() {  # MODEL THREADS -> median ms
  "$kvant" bench "$1" "${shapes[@]}" --threads "$2" --runs "$runs" --warmup 1 2>/dev/null | sed -nE 's/^latency +median ([0-9.]+) ms.*/\1/p'
}
ort_time() {
  node scripts/ort_run.js "$1" --inputs-dir "$inputs" --threads "$2" --bench "$runs" | sed -nE 's/.*"median_ms":([0-9.]+).*/\1/p'
}
rss_mb() {  # CMD... -> peak RSS in MB
  local f
  f=$(mktemp)
  /usr/bin/time -o "$f" -f "%M" "$@" >/dev/null 2>&1
  awk '{printf "%.0f", $1 / 1024}' "$f"
  rm -f "$f"
}

table="| model | threads | kvant FP32 ms | kvant INT8 ms | ORT FP32 ms | ORT INT8 ms | kvant INT8 vs kvant FP32 | kvant FP32 / ORT FP32 | kvant INT8 / ORT INT8 |
|---|---:|---:|---:|---:|---:|---:|---:|---:|"
memory="| model | kvant INT8 arena | all tensors | kvant bench INT8 peak RSS | ORT INT8 peak RSS |
|---|---:|---:|---:|---:|"
for name in $models; do
  prepare "$name"
  for t in $threads_list; do
    kf=(); ki=(); of=(); oi=()
    for ((r = 0; r < rounds; r++)); do
      kf+=("$(kv_time "$fp32" "$t")"); ki+=("$(kv_time "$int8" "$t")")
      of+=("$(ort_time "$fp32" "$t")"); oi+=("$(ort_time "$int8" "$t")")
    done
    a=$(printf '%s\n' "${kf[@]}" | median); b=$(printf '%s\n' "${ki[@]}" | median)
    c=$(printf '%s\n' "${of[@]}" | median); d=$(printf '%s\n' "${oi[@]}" | median)
    row=$(awk -v n="$name" -v t="$t" -v a="$a" -v b="$b" -v c="$c" -v d="$d" \
      'BEGIN {printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2f | %.2f |", n, t, a, b, c, d, a / b, a / c, b / d}')
    echo "$row"
    table+=$'\n'"$row"
  done
  plan=$("$kvant" inspect "$int8" --plan "${shapes[@]}" | grep '^arena:')
  arena=$(sed -nE 's/^arena: ([0-9.]+ [KM]iB).*/\1/p' <<<"$plan")
  tensors=$(sed -nE 's/.*tensors totalling ([0-9.]+ [KM]iB).*/\1/p' <<<"$plan")
  kr=$(rss_mb "$kvant" bench "$int8" "${shapes[@]}" --runs 3)
  orr=$(rss_mb node scripts/ort_run.js "$int8" --inputs-dir "$inputs" --bench 3)
  memory+=$'\n'"| $name | $arena | $tensors | $kr MB | $orr MB |"
done
variant_flag=""
variant_text="8-bit weights (kvant quantize defaults)"
if ((reduce_range)); then
  variant_flag=" --reduce-range"
  variant_text="7-bit weights (\`kvant quantize --reduce-range\`)"
fi
cpu=$(sed -nE 's/^model name\s*: (.*)/\1/p' /proc/cpuinfo | head -1)
report="Measured $(date -u +%Y-%m-%d) on $cpu ($(nproc) cores; flags: $(grep -o -w -E 'avx2|avx512f|avx512_vnni|amx_int8' /proc/cpuinfo | sort -u | tr '\n' ' '))
by \`bench/models/compare.sh --rounds $rounds --runs $runs$variant_flag\`; medians in ms, batch 1.
INT8 models: $variant_text; ORT INT8 runs the same file.

$table

Memory (INT8 model, 1 thread; peak RSS by /usr/bin/time, whole process incl. the loaded model):

$memory"
echo
echo "$report"
if [[ $write -eq 1 ]]; then
  out=docs/benchmarks.md
  title="# End-to-end speed: kvant vs ONNX Runtime"
  if ((reduce_range)); then
    out=docs/benchmarks-7bit.md
    title="# End-to-end speed with 7-bit weights (--reduce-range): kvant vs ONNX Runtime"
  fi
  {
    echo "$title"
    echo
    echo "$report"
  } >"$out.new"
  mv "$out.new" "$out"
fi
