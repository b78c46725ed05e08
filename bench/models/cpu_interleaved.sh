#!/usr/bin/env bash
# CPU time per run of several (engine, file) pairs, interleaved in rounds: for
# a machine shared with other jobs, where wall-clock latency mostly measures
# the queue for a core. Each pair is run twice per round under
# `perf stat -e task-clock`, with 1 and with N timed runs (after one warm-up),
# and the difference / (N - 1) is its CPU ms per run (loading, packing and
# the first run cancel out). Prints, per pair, the median over rounds, the
# minimum wall-clock latency seen, and the ratio of its CPU time to the first
# pair's in each round (median, min-max).
# --self: instead of perf, one process per pair and round with N timed runs,
# its own CPU time per timed run (`kvant bench`'s `cpu` line, ort_run.js's
# cpu_ms_per_run: what scripts/zoo.py --speed reads), in ms to 3 decimals:
# for models under a few ms, where the difference of two process totals
# (node's start-up among them) is mostly noise.
#
#   bench/models/cpu_interleaved.sh --inputs DIR [--rounds 5] [--runs 6] [--self] [--shape NAME=DIMS ...] \
#       LABEL=ENGINE:MODEL.onnx ...
#
# ENGINE: `ort` (scripts/ort_run.js, ONNX Runtime, 1 thread, inputs from DIR)
# or the path of a kvant binary (`kvant bench --threads 1`, the --shape
# arguments). DIR holds one .npy per model input (bench/models/prepare.py
# inputs MODEL DIR). Needs perf (task-clock is a software event: no PMU
# access is required).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
inputs="" rounds=5 runs=6 self=0 shapes=() pairs=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --inputs) inputs=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --shape) shapes+=(--shape "$2"); shift 2 ;;
    --self) self=1; shift ;;
    -*) echo "cpu_interleaved.sh: unknown option $1" >&2; exit 2 ;;
    *) pairs+=("$1"); shift ;;
  esac
done
[[ -n $inputs && ${#pairs[@]} -ge 1 && $runs -ge 2 ]] || { sed -n 2,23p "$0" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# measure ENGINE MODEL RUNS -> "task-clock-ms min-wall-ms"
measure() {
  local out
  if [[ $1 == ort ]]; then
    out=$(perf stat -x, -e task-clock -o "$tmp/stat" node "$root/scripts/ort_run.js" "$2" --inputs-dir "$inputs" \
      --threads 1 --bench "$3" 2>/dev/null | sed -nE 's/.*"min_ms":([0-9.]+).*/\1/p')
  else
    out=$(perf stat -x, -e task-clock -o "$tmp/stat" "$1" bench "$2" "${shapes[@]}" --threads 1 --runs "$3" \
      --warmup 1 2>/dev/null | sed -nE 's/^latency .* min ([0-9.]+) ms.*/\1/p')
  fi
  [[ -n $out ]] || { echo "cpu_interleaved.sh: $1 failed on $2" >&2; exit 1; }
  echo "$(awk -F, '/task-clock/ {print $1}' "$tmp/stat") $out"
}
# measure_self ENGINE MODEL RUNS -> "cpu-ms-per-run min-wall-ms" (the process's own counters)
measure_self() {
  local out c w
  if [[ $1 == ort ]]; then
    out=$(node "$root/scripts/ort_run.js" "$2" --inputs-dir "$inputs" --threads 1 --bench "$3" 2>/dev/null)
    c=$(sed -nE 's/.*"cpu_ms_per_run":([0-9.]+).*/\1/p' <<<"$out") w=$(sed -nE 's/.*"min_ms":([0-9.]+).*/\1/p' <<<"$out")
  else
    out=$("$1" bench "$2" "${shapes[@]}" --threads 1 --runs "$3" --warmup 2 2>/dev/null)
    c=$(sed -nE 's/^cpu +([0-9.]+) ms per run.*/\1/p' <<<"$out") w=$(sed -nE 's/^latency .* min ([0-9.]+) ms.*/\1/p' <<<"$out")
  fi
  [[ -n $c && -n $w ]] || { echo "cpu_interleaved.sh: $1 failed on $2" >&2; exit 1; }
  echo "$c $w"
}
declare -A cpu wall ratio
for ((r = 0; r < rounds; r++)); do
  first=""
  for p in "${pairs[@]}"; do
    label=${p%%=*} rest=${p#*=}
    engine=${rest%%:*} model=${rest#*:}
    if ((self)); then
      read -r c w <<<"$(measure_self "$engine" "$model" "$runs")"
      c=$(awk -v c="$c" 'BEGIN {printf "%.3f", c}')
    else
      read -r a _ <<<"$(measure "$engine" "$model" 1)"
      read -r b w <<<"$(measure "$engine" "$model" "$runs")"
      c=$(awk -v a="$a" -v b="$b" -v n="$runs" 'BEGIN {printf "%.3f", (b - a) / (n - 1)}')
    fi
    [[ -n $first ]] || first=$c
    cpu[$label]+="$c " wall[$label]+="$w "
    ratio[$label]+="$(awk -v c="$c" -v f="$first" 'BEGIN {printf "%.3f", c / f}') "
    echo "round $r: $label cpu $c ms, wall min $w ms" >&2
  done
done
echo "$rounds rounds x $runs runs$( ((self)) && echo ' (--self: in-process CPU time)'), 1 thread; $(sed -nE 's/^model name\s*: (.*)/\1/p' /proc/cpuinfo | head -1)"
echo "| run | CPU ms per run (median) | wall min ms | CPU vs ${pairs[0]%%=*} (median, min-max) |"
echo "|---|---:|---:|---:|"
for p in "${pairs[@]}"; do
  label=${p%%=*}
  c=$(tr ' ' '\n' <<<"${cpu[$label]}" | grep . | median)
  w=$(tr ' ' '\n' <<<"${wall[$label]}" | grep . | sort -g | head -1)
  rs=$(tr ' ' '\n' <<<"${ratio[$label]}" | grep . | sort -g)
  echo "| $label | $c | $w | $(median <<<"$rs") ($(head -1 <<<"$rs")-$(tail -1 <<<"$rs")) |"
done
