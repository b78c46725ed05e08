#!/usr/bin/env bash
# Seed corpus for tests/fuzz/fuzz_onnx_reader: ~50 small, varied model.onnx
# files from the ONNX backend test data (libonnx-testdata).
#   scripts/make_fuzz_corpus.sh [corpus_dir] [count]
set -euo pipefail
out="${1:-build-fuzz/corpus}"
count="${2:-50}"
src="/usr/share/libonnx-testdata/data/node"
if [[ ! -d "$src" ]]; then
  echo "make_fuzz_corpus.sh: $src not found (install libonnx-testdata)" >&2
  exit 1
fi
mkdir -p "$out"
# Models under 2 KB, sorted by test name, then every k-th so the set spans
# many operators (and a few If/Loop models with subgraphs) instead of 50
# variants of one.
mapfile -t models < <(find "$src" -name model.onnx -size -2k | sort)
total=${#models[@]}
if (( total == 0 )); then
  echo "make_fuzz_corpus.sh: no model.onnx under $src" >&2
  exit 1
fi
step=$(( total / count ))
(( step < 1 )) && step=1
copied=0
for (( i = 0; i < total && copied < count; i += step )); do
  m="${models[$i]}"
  name="$(basename "$(dirname "$m")")"
  cp "$m" "$out/$name.onnx"
  copied=$((copied + 1))
done
for extra in test_if test_loop11 test_scan9_sum test_range_float_type_positive_delta_expanded; do
  if [[ -f "$src/$extra/model.onnx" ]]; then cp "$src/$extra/model.onnx" "$out/$extra.onnx"; fi
done
echo "make_fuzz_corpus.sh: $(ls "$out" | wc -l) seed models in $out"
