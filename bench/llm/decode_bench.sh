#!/usr/bin/env bash
# One decode step (one new token after PAST cached ones, batch 1) of a
# LLaMA-architecture decoder with random weights (bench/llm/make_decoder.py,
# written under .bench-models/, not committed): kvant FP32, kvant INT4 (the
# MatMulNBits file of `--format ort`, W4A32, and the opset-21 QDQ file),
# kvant W4A8 (the MatMulNBits file with accuracy_level 4, ONNX Runtime's
# "int8 compute"), ONNX Runtime FP32 and ONNX Runtime on the same two
# MatMulNBits files; interleaved in rounds so machine noise hits all alike.
# Prints a markdown table of medians (median over rounds of each burst's
# median), ratios, and the file sizes; then kvant's process CPU time per run
# (`kvant bench`'s cpu line: on a shared machine far steadier than wall
# time; ONNX Runtime's runs have wall times only).
#
#   bench/llm/decode_bench.sh [--size 155m|tiny] [--threads "1 2"] [--rounds 3] [--runs 10]
#                             [--group-size 32] [--kind decode|prefill] [--dir DIR]
#
# --dir DIR: a decoder folder already made by make_decoder.py (model.onnx,
# decode_inputs/, prefill_inputs/) instead of .bench-models/llama<size>; the
# INT4 files are written there when missing.
# --kind prefill times PAST tokens with an empty cache instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
size=155m
threads_list=1
rounds=3
runs=10
group=32
kind=decode
past=128
dir=
while [[ $# -gt 0 ]]; do
  case $1 in
    --size) size=$2; shift 2 ;;
    --threads) threads_list=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --group-size) group=$2; shift 2 ;;
    --kind) kind=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "decode_bench.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
kvant=${KVANT:-build/release/kvant}
dir=${dir:-.bench-models/llama$size}
[[ -f $dir/model.onnx ]] || /usr/bin/python3 bench/llm/make_decoder.py "$dir" --size "$size" --past $past
fp32=$dir/model.onnx
ort4=$dir/int4_g${group}_ort.onnx
qdq4=$dir/int4_g${group}_qdq.onnx
[[ -f $ort4 ]] || "$kvant" quantize "$fp32" -o "$ort4" --mode weight-only --bits 4 --group-size "$group" --format ort >/dev/null
[[ -f $qdq4 ]] || "$kvant" quantize "$fp32" -o "$qdq4" --mode weight-only --bits 4 --group-size "$group" >/dev/null
a84=$dir/int4_g${group}_ort_a8.onnx
[[ -f $a84 ]] || "$kvant" quantize "$fp32" -o "$a84" --mode weight-only --bits 4 --group-size "$group" --format ort --accuracy-level 4 >/dev/null
inputs=$dir/${kind}_inputs
# kvant bench's shapes from the .npy inputs ORT reads (kvant fills them with its own random values).
shapes=()
for f in "$inputs"/*.npy; do
  name=$(basename "$f" .npy)
  dims=$(/usr/bin/python3 -c "import numpy as np, sys; print('x'.join(map(str, np.load(sys.argv[1], mmap_mode='r').shape)))" "$f")
  shapes+=(--shape "$name=$dims")
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
cpu_log=$(mktemp)
trap 'rm -f "$cpu_log"' EXIT
kv_time() {  # MODEL THREADS -> median ms (wall); appends "THREADS MODEL CPU-MS" to $cpu_log
  local out
  out=$("$kvant" bench "$1" "${shapes[@]}" --threads "$2" --runs "$runs" --warmup 2 2>/dev/null)
  echo "$2 $1 $(sed -nE 's/^cpu +([0-9.]+) ms per run.*/\1/p' <<<"$out")" >>"$cpu_log"
  sed -nE 's/^latency +median ([0-9.]+) ms.*/\1/p' <<<"$out"
}
ort_time() {
  node scripts/ort_run.js "$1" --inputs-dir "$inputs" --threads "$2" --bench "$runs" | sed -nE 's/.*"median_ms":([0-9.]+).*/\1/p'
}
mb() { awk -v b="$(stat -L -c %s "$1")" 'BEGIN {printf "%.1f", b / 1048576}'; }

echo "| threads | kvant FP32 ms | kvant W4A32 (MatMulNBits) ms | kvant W4A32 (QDQ) ms | kvant W4A8 ms | ORT FP32 ms | ORT INT4 (MatMulNBits) ms | ORT W4A8 ms | kvant W4A32 speedup vs kvant FP32 | kvant W4A32 vs ORT INT4 | kvant W4A8 vs ORT W4A8 | kvant W4A8 speedup vs kvant FP32 |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for t in $threads_list; do
  kf=() k4=() kq=() k8=() of=() o4=() o8=()
  for ((r = 0; r < rounds; r++)); do
    kf+=("$(kv_time "$fp32" "$t")")
    k4+=("$(kv_time "$ort4" "$t")")
    kq+=("$(kv_time "$qdq4" "$t")")
    k8+=("$(kv_time "$a84" "$t")")
    of+=("$(ort_time "$fp32" "$t")")
    o4+=("$(ort_time "$ort4" "$t")")
    o8+=("$(ort_time "$a84" "$t")")
  done
  a=$(printf '%s\n' "${kf[@]}" | median); b=$(printf '%s\n' "${k4[@]}" | median)
  c=$(printf '%s\n' "${kq[@]}" | median); g=$(printf '%s\n' "${k8[@]}" | median)
  d=$(printf '%s\n' "${of[@]}" | median); e=$(printf '%s\n' "${o4[@]}" | median)
  h=$(printf '%s\n' "${o8[@]}" | median)
  awk -v t="$t" -v a="$a" -v b="$b" -v c="$c" -v d="$d" -v e="$e" -v g="$g" -v h="$h" \
    'BEGIN {printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.2fx | %.2fx |\n", t, a, b, c, g, d, e, h, a / b, e / b, h / g, a / g}'
done
echo
echo "kvant process CPU ms per run (median over rounds):"
echo
echo "| threads | kvant FP32 | kvant W4A32 (MatMulNBits) | kvant W4A32 (QDQ) | kvant W4A8 | W4A32 vs FP32 | W4A8 vs FP32 |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for t in $threads_list; do
  cpu_of() { awk -v t="$t" -v m="$1" '$1 == t && $2 == m {print $3}' "$cpu_log" | median; }
  a=$(cpu_of "$fp32"); b=$(cpu_of "$ort4"); c=$(cpu_of "$qdq4"); g=$(cpu_of "$a84")
  awk -v t="$t" -v a="$a" -v b="$b" -v c="$c" -v g="$g" \
    'BEGIN {printf "| %s | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx |\n", t, a, b, c, g, a / b, a / g}'
done
echo
echo "files: FP32 $(mb "$fp32") MB, INT4 MatMulNBits $(mb "$ort4") MB, INT4 QDQ $(mb "$qdq4") MB; $kind, past $past, group $group, $rounds rounds x $runs runs, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), flags: $(grep -m1 flags /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|avx512f|avx512_vnni|avx_vnni|amx_int8)$' | tr '\n' ' ')"
