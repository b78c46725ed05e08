#!/usr/bin/env bash
# Installs what kvant needs to build and test, from Debian's packages (and
# ONNX Runtime from npm for the interop tests). Idempotent and quiet when
# everything is already there.
#   scripts/install_deps.sh            build + test dependencies
#   scripts/install_deps.sh --fixtures also PyTorch, for generating model fixtures
set -euo pipefail

packages=(build-essential cmake ccache pkg-config libprotobuf-dev protobuf-compiler libonnx-dev
  libonnx-testdata libgtest-dev libbenchmark-dev libcli11-dev dataset-fashion-mnist clang
  libclang-rt-14-dev zlib1g-dev libpng-dev libjpeg-dev)
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
