#!/usr/bin/env bash
# Calibration memory does not grow with the number of samples: calibrates the
# bundled Fashion-MNIST CNN (static INT8, histogram calibrator) on 500 and on
# 5,000 training images and prints each run's peak resident memory as
# /usr/bin/time -v measures it.
#   scripts/calib_memory.sh [calibrator]   (default entropy)
set -euo pipefail
cd "$(dirname "$0")/.."
kvant=build/release/kvant
calibrator=${1:-entropy}
data=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for n in 500 5000; do
  /usr/bin/time -v "$kvant" quantize models/fashion_mnist_cnn.onnx -o "$out/q$n.onnx" --calib "$data" \
    --preprocess mean=0.2860,std=0.3530 --samples "$n" --calibrator "$calibrator" --report-samples 0 \
    >"$out/log$n" 2>"$out/time$n"
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$out/time$n")
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$out/time$n")
  echo "samples $n: peak RSS $rss KB, wall $wall ($calibrator)"
done
