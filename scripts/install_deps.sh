#!/usr/bin/env bash
# Installs what kvant needs to build and test, from Debian's packages (and
# ONNX Runtime from npm for the interop tests). Idempotent and quiet when
# everything is already there.
#   scripts/install_deps.sh            build + test dependencies
#   scripts/install_deps.sh --fixtures also PyTorch, for generating model fixtures
set -euo pipefail

packages=(build-essential cmake ccache pkg-config libprotobuf-dev protobuf-compiler libonnx-dev
  libonnx-testdata libgtest-dev libbenchmark-dev libcli11-dev dataset-fashion-mnist clang
  libclang-rt-14-dev zlib1g-dev libpng-dev libjpeg-dev nodejs time g++-aarch64-linux-gnu
  python3-dev python3-numpy pybind11-dev python3-pytest chromium libsentencepiece-dev sentencepiece)
# Debian's npm; skipped where npm came with nodejs (NodeSource's package
# bundles it, and conflicts with Debian's npm).
command -v npm >/dev/null || packages+=(npm)
if [[ "${1:-}" == "--fixtures" ]]; then
  packages+=(python3-torch python3-torchvision python3-onnx python3-numpy libopenblas0-pthread)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ONNX Runtime for the interop tests (tests/interop/, scripts/ort_run.js):
# onnxruntime-node at the version package.json pins, into node_modules/ at the
# repository root, from package-lock.json. --ignore-scripts: the package
# already holds the Linux x64 binding and libonnxruntime.so
# (bin/napi-v6/linux/x64/); its install script would only fetch GPU extras.
root=$(cd "$(dirname "$0")/.." && pwd)
want=$(sed -nE 's/.*"onnxruntime-node": *"([^"]+)".*/\1/p' "$root/package.json" | head -1)
have=""
if [[ -f "$root/node_modules/onnxruntime-node/package.json" ]]; then
  have=$(sed -nE 's/^  "version": *"([^"]+)".*/\1/p' "$root/node_modules/onnxruntime-node/package.json" | head -1)
fi
if [[ "$have" != "$want" ]]; then
  echo "installing onnxruntime-node $want (npm)"
  (cd "$root" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
fi
