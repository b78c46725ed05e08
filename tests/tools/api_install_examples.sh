#!/usr/bin/env bash
# The installed C++ package end to end (docs/api.md): `cmake --install` the
# build into a temporary prefix, build examples/ against that prefix alone
# (find_package(kvant), and once with pkg-config), then check that
#   - classify on an INT8 model writes the scores `kvant run` writes (same bytes),
#   - quantize_custom (a C++ CalibrationDataReader over .npy files) writes the
#     model file `kvant quantize --calib` writes for the same files (same
#     bytes), and its run of it gives `kvant run`'s outputs (same bytes).
#   api_install_examples.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(cd "${1:?BUILD_DIR}" && pwd)
src=$(cd "${2:?SOURCE_DIR}" && pwd)
tmp=$build/api-install-examples
rm -rf "$tmp"
mkdir -p "$tmp/calib" "$tmp/run"
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
kvant=$prefix/bin/kvant
for f in include/kvant/kvant.h include/kvant/status.h lib/libkvant.so lib/cmake/kvant/kvantConfig.cmake \
  lib/pkgconfig/kvant.pc; do
  [[ -e $prefix/$f ]] || { echo "FAIL: $f was not installed"; exit 1; }
done
# Only the public headers: nothing of src/, protobuf or ONNX.
if grep -rlE '#include "(ir|onnx|runtime|quant)/|onnx\.pb|google/protobuf' "$prefix/include"; then
  echo "FAIL: an installed header includes an internal one"; exit 1
fi

cmake -S "$src/examples" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" >"$tmp/configure.log"
grep -q "^kvant_DIR:PATH=$prefix/lib/cmake/kvant$" "$tmp/build/CMakeCache.txt" ||
  { echo "FAIL: the examples did not find the installed package"; grep kvant_DIR "$tmp/build/CMakeCache.txt"; exit 1; }
cmake --build "$tmp/build" -j2 >"$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
classify=$tmp/build/classify/classify
quantize_custom=$tmp/build/quantize_custom/quantize_custom
libs=$(ldd "$classify")
grep -q "libkvant.so.* => $prefix/lib/" <<<"$libs" ||
  { echo "FAIL: classify does not load the installed libkvant"; echo "$libs"; exit 1; }
# pkg-config: a program built from kvant.pc alone.
PKG_CONFIG_PATH=$prefix/lib/pkgconfig c++ -std=c++17 -o "$tmp/classify_pc" "$src/examples/classify/classify.cc" \
  $(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs kvant) -Wl,-rpath,"$prefix/lib"

model=$src/models/fashion_mnist_cnn.onnx
cp "$src"/models/samples/fashion_mnist_*.npy "$tmp/calib/"
image=$src/models/samples/fashion_mnist_2.npy

# 1. quantize_custom against the command.
"$kvant" quantize "$model" -o "$tmp/cli.int8.onnx" --calib "$tmp/calib" --no-speed-check >"$tmp/quantize.log"
"$quantize_custom" "$model" "$tmp/api.int8.onnx" "$image" "$tmp/api_out.npy" "$tmp"/calib/*.npy
cmp "$tmp/cli.int8.onnx" "$tmp/api.int8.onnx" || { echo "FAIL: quantize_custom's model differs from kvant quantize's"; exit 1; }
"$kvant" run "$tmp/cli.int8.onnx" --input "$image" -o "$tmp/run" >"$tmp/run.log"
cmp "$tmp/run/logits.npy" "$tmp/api_out.npy" || { echo "FAIL: quantize_custom's outputs differ from kvant run's"; exit 1; }
"$quantize_custom" "$model" "$tmp/random.int8.onnx" "$image" "$tmp/random_out.npy" --random 4 >/dev/null

# 2. classify on the INT8 model against the command.
"$classify" "$tmp/cli.int8.onnx" "$image" "$tmp/classify_out.npy" | tee "$tmp/classify.log"
cmp "$tmp/run/logits.npy" "$tmp/classify_out.npy" || { echo "FAIL: classify's scores differ from kvant run's"; exit 1; }
argmax=$(grep -oE 'argmax [0-9]+' "$tmp/run.log" | cut -d' ' -f2)
grep -q "#1  class $argmax " "$tmp/classify.log" || { echo "FAIL: top-1 is not kvant run's argmax $argmax"; exit 1; }
"$tmp/classify_pc" "$tmp/cli.int8.onnx" "$image" >/dev/null

# 3. Errors come back as messages, not crashes.
if "$classify" "$tmp/missing.onnx" "$image" 2>"$tmp/err.log"; then echo "FAIL: a missing model succeeded"; exit 1; fi
grep -q "missing.onnx" "$tmp/err.log" || { echo "FAIL: the error does not name the file"; cat "$tmp/err.log"; exit 1; }
echo "ok: examples built against $prefix; classify and quantize_custom match kvant run and kvant quantize byte for byte"
