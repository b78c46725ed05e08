#!/usr/bin/env bash
# Decode cost per token of `kvant generate`, from the lines it prints on
# stderr: wall time (decode tok/s) and CPU time of the process (which a
# shared machine inflates far less), in interleaved rounds.
#
#   bench/llm/generate_bench.sh [--rounds R] [--new N] [--threads T] PROMPT.npy KVANT=MODEL.onnx ...
#
# Each KVANT=MODEL pair names a kvant binary and a decoder, so two builds
# can be compared on one file in the same rounds. Prints a line per run and
# the medians (ms per token, prefill tok/s).
set -euo pipefail
rounds=3
new=32
threads=1
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --new) new=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
prompt=${1:?usage: generate_bench.sh [--rounds R] [--new N] [--threads T] PROMPT.npy KVANT=MODEL ...}
shift
err=$(mktemp)
trap 'rm -f "$err"' EXIT
declare -A cpu wall pre
for ((r = 1; r <= rounds; ++r)); do
  for pair in "$@"; do
    k=${pair%%=*}
    m=${pair#*=}
    "$k" generate "$m" --prompt-ids "$prompt" --max-new-tokens $((new + 1)) --threads "$threads" --print-ids \
      >/dev/null 2>"$err" || { cat "$err" >&2; exit 1; }
    p=$(sed -n 's/^prefill: [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p' "$err")
    w=$(sed -n 's/.*decode: [0-9]* tokens, \([0-9.]*\) tok\/s$/\1/p' "$err" | awk '{printf "%.1f", 1000 / $1}')
    c=$(sed -n 's/^cpu time: .*decode \([0-9.]*\) ms per pass$/\1/p' "$err")
    echo "round $r  $pair  decode: wall $w ms/token, cpu $c ms/token; prefill $p tok/s"
    cpu[$pair]+="$c "
    wall[$pair]+="$w "
    pre[$pair]+="$p "
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR]=$1} END{print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for pair in "$@"; do
  echo "median  $pair  decode: wall $(echo "${wall[$pair]}" | median) ms/token, cpu $(echo "${cpu[$pair]}" | median) ms/token; prefill $(echo "${pre[$pair]}" | median) tok/s"
done
