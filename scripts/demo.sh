#!/usr/bin/env bash
# The main job on the built-in example (README.md): builds the `kvant` tool and
# runs it on the bundled Fashion-MNIST CNN (models/fashion_mnist_cnn.onnx):
# inspect it, classify three bundled test images, and time it.
set -euo pipefail
cd "$(dirname "$0")/.."
export CCACHE_BASEDIR="$(pwd)" CCACHE_NOHASHDIR=1
scripts/install_deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j"${KVANT_JOBS:-2}" --target kvant >/dev/null
kvant=build/release/kvant
model=models/fashion_mnist_cnn.onnx
classes=(T-shirt/top Trouser Pullover Dress Coat Sandal Shirt Sneaker Bag "Ankle boot")

echo "== kvant inspect $model"
"$kvant" inspect "$model" --shape image=1x1x28x28

echo
echo "== kvant run: classify the bundled test images"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in 0 1 2; do
  line=$("$kvant" run "$model" --input "image=models/samples/fashion_mnist_$i.npy" --output-dir "$out/$i")
  echo "$line"
  pred=$(sed -n 's/.*argmax \([0-9]*\).*/\1/p' <<<"$line")
  label=$(sed -n "s/^fashion_mnist_$i.npy: label \([0-9]*\).*/\1/p" models/samples/README.md)
  echo "  image $i: predicted ${classes[$pred]} (class $pred); true label ${classes[$label]} (class $label)"
done

echo
echo "== kvant bench $model"
"$kvant" bench "$model" --shape image=1x1x28x28 --runs 200 --warmup 20
