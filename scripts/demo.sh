#!/usr/bin/env bash
# The main job on the built-in example (README.md): builds the `kvant` tool,
# quantizes the bundled Fashion-MNIST CNN (models/fashion_mnist_cnn.onnx) to
# static INT8 (calibrated on 500 training images) and to INT4 weight-only,
# and measures FP32 vs quantized size and top-1 accuracy on the 10,000
# Fashion-MNIST test images (Debian's dataset-fashion-mnist).
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=1
scripts/install_deps.sh
echo "== building kvant (build/release; the first build takes a few minutes)"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"${KVANT_JOBS:-2}" --target kvant
kvant=build/release/kvant
model=models/fashion_mnist_cnn.onnx
data=/usr/share/datasets/fashion-mnist
prep="mean=0.2860,std=0.3530"  # the normalisation the model was trained with
# The quantized models are kept (and replaced by the next run): build/demo/.
out=build/demo
mkdir -p "$out"

echo "== kvant inspect $model"
"$kvant" inspect "$model" --shape image=1x1x28x28 | sed -n '1,12p'

echo
echo "== kvant quantize: static INT8, calibrated on 500 training images"
"$kvant" quantize "$model" -o "$out/cnn.int8.onnx" --force --mode static --calibrator percentile \
  --calib "$data/train-images-idx3-ubyte.gz" --preprocess "$prep" --samples 500 --report "$out/report.html"

echo
echo "== kvant quantize: INT4 weight-only (group size 32)"
"$kvant" quantize "$model" -o "$out/cnn.int4.onnx" --force --mode weight-only --bits 4 --group-size 32 \
  --calib "$data/train-images-idx3-ubyte.gz" --preprocess "$prep" --report-samples 32

echo
echo "== kvant eval: the 10,000 test images, FP32 vs quantized"
"$kvant" eval "$model" "$out/cnn.int8.onnx" "$out/cnn.int4.onnx" \
  --data "$data/t10k-images-idx3-ubyte.gz" --preprocess "$prep"

echo
echo "The quantized models are in $out/ (cnn.int8.onnx, cnn.int4.onnx);"
echo "the INT8 model's report, with plots, is $out/report.html (open it in a browser)."
