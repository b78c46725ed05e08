#!/usr/bin/env bash
# Regenerates docs/report-example.png, the screenshot in docs/report.md: the
# bundled Fashion-MNIST CNN quantized static INT8 with per-tensor weights,
# 200 calibration images, and an accuracy target of 0.05 points top-1 on
# the 10,000 test images, its HTML report rendered by headless Chromium.
#   scripts/report_example.sh [path/to/kvant]   (default build/release/kvant)
set -euo pipefail
cd "$(dirname "$0")/.."
kvant=${1:-build/release/kvant}
data=/usr/share/datasets/fashion-mnist
prep="mean=0.2860,std=0.3530"
out=build/report-example
mkdir -p "$out"
"$kvant" quantize models/fashion_mnist_cnn.onnx -o "$out/cnn.int8.onnx" --force --per-tensor \
  --calib "$data/train-images-idx3-ubyte.gz" --preprocess "$prep" --samples 200 \
  --eval "$data/t10k-images-idx3-ubyte.gz" --labels "$data/t10k-labels-idx1-ubyte.gz" \
  --accuracy-target 0.05 --report "$out/report.html"
chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$out/profile" \
  --hide-scrollbars --window-size=1060,2300 --screenshot="$(pwd)/docs/report-example.png" \
  "file://$(pwd)/$out/report.html" 2>/dev/null
echo "wrote docs/report-example.png from $out/report.html"
