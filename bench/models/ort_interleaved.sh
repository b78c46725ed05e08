#!/usr/bin/env bash
# ONNX Runtime latency of several files of one model, interleaved: each round
# times every file once (scripts/ort_run.js --bench RUNS, 1 thread), so machine
# noise hits all alike. Prints each file's median over rounds of the burst
# medians, and its ratio to the first file's.
#
#   bench/models/ort_interleaved.sh --inputs DIR [--rounds 7] [--runs 10] [--threads 1] A.onnx B.onnx ...
#
# DIR holds one .npy per model input (bench/models/prepare.py inputs MODEL DIR).
# Used for docs/interop.md: kvant's static INT8 file against one written in
# ONNX Runtime's own quantizer's conventions.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
inputs="" rounds=7 runs=10 threads=1 files=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --inputs) inputs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    -*) echo "ort_interleaved.sh: unknown option $1" >&2; exit 2 ;;
    *) files+=("$1"); shift ;;
  esac
done
[[ -n $inputs && ${#files[@]} -ge 1 ]] || { sed -n 2,10p "$0" >&2; exit 2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A times
for ((r = 0; r < rounds; r++)); do
  for f in "${files[@]}"; do
    t=$(node "$root/scripts/ort_run.js" "$f" --inputs-dir "$inputs" --threads "$threads" --bench "$runs" 2>/dev/null |
      sed -nE 's/.*"median_ms":([0-9.]+).*/\1/p')
    [[ -n $t ]] || { echo "ort_interleaved.sh: ONNX Runtime failed on $f" >&2; exit 1; }
    times[$f]+="$t "
  done
done
base=""
echo "ONNX Runtime $(node -p "require('$root/node_modules/onnxruntime-node/package.json').version"), $threads thread(s), $rounds rounds x $runs runs; $(sed -nE 's/^model name\s*: (.*)/\1/p' /proc/cpuinfo | head -1)"
for f in "${files[@]}"; do
  m=$(tr ' ' '\n' <<<"${times[$f]}" | grep . | median)
  [[ -n $base ]] || base=$m
  awk -v f="$f" -v m="$m" -v b="$base" -v all="${times[$f]}" 'BEGIN {printf "%8.2f ms  %5.2fx  %s  (rounds: %s)\n", m, m / b, f, all}'
done
