#!/usr/bin/env bash
# The install story of docs/python.md: `cmake --install BUILD --prefix P`
# puts the kvant package in P/lib/python3.X/site-packages, which is the user
# site when P is ~/.local. PYTHONUSERBASE=P makes P the user base here, so
# this checks exactly `--prefix ~/.local` without touching $HOME: the system
# Python imports kvant from P (not from the build tree or the source tree),
# finds P/lib/libkvant.so through the module's RPATH, and runs the demo model.
#   usage: install_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "${1:?usage: install_test.sh BUILD_DIR SOURCE_DIR}")
src=$(realpath "${2:?usage: install_test.sh BUILD_DIR SOURCE_DIR}")
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
cd "$prefix"
env -u PYTHONPATH PYTHONUSERBASE="$prefix" PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 - "$prefix" "$src" <<'PY'
import sys
import numpy as np
import kvant
prefix, src = sys.argv[1], sys.argv[2]
assert kvant.__file__.startswith(prefix + "/lib/python3"), kvant.__file__
sess = kvant.InferenceSession(src + "/models/fashion_mnist_cnn.onnx")
(logits,) = sess.run(None, {"image": np.load(src + "/models/samples/fashion_mnist_0.npy")})
assert logits.argmax() == 9, logits  # the sample's label (models/samples/README.md)
libs = [l for l in (l.split()[-1] for l in open("/proc/self/maps") if "libkvant.so" in l)]
assert libs and all(l.startswith(prefix + "/lib/") for l in libs), libs
print("kvant", kvant.__version__, "imported from", kvant.__file__, "with", libs[0])
try:
    import torch  # noqa: F401  (kvant.torch, docs/python.md: installed with the package)
except ImportError:
    print("no torch: kvant.torch not imported")
else:
    import kvant.torch
    assert kvant.torch.__file__.startswith(prefix + "/lib/python3"), kvant.torch.__file__
    print("kvant.torch imported from", kvant.torch.__file__)
PY
