#!/usr/bin/python3
"""Makes models/fmnist/mobilenet_skewed.onnx: the trained mobilenet_relu with the per-channel weight ranges
that BatchNorm folding gives real MobileNetV2 networks, and the same FP32 function.

    /usr/bin/python3 scripts/make_skewed_fixture.py [--spread 1.5] [--seed 0]

Why: trained for 2 epochs on Fashion-MNIST, mobilenet_relu's BatchNorm-folded channels stay within a
narrow band, so per-tensor INT8 loses nothing on it and cross-layer equalization has nothing to fix
(docs/accuracy.md). ImageNet MobileNetV2's do not: Nagel et al. 2019 (arXiv:1906.04721, Fig. 2) show the
output channel ranges of its first depthwise layer differing widely after folding, and per-tensor INT8 of
that network at about 0.1% top-1 (their Table 1). This fixture reproduces that spread without retraining, by the rescaling
that equalization undoes: for every BatchNormalization -> Relu -> Conv in the graph and every channel c,
with f_c = 10^u, u uniform in [-spread, 0] (seeded): some channels of each activation shrink (down to
1/31.6 at the default spread) and the weights that read them grow as much,

    BN scale[c] *= f_c, BN bias[c] *= f_c      (the BN output channel c is multiplied by f_c <= 1;
                                                 Relu(f v) = f Relu(v) for f > 0)
    next Conv's weights reading channel c /= f_c  (W[:, c] for a full Conv, W[c] for a depthwise one)

so the logits are unchanged up to float rounding (checked here with kvant when it is built). Writes
models/fmnist/mobilenet_skewed.onnx and tests/data/fmnist/mobilenet_skewed_{input,logits}.npy (copies
of mobilenet_relu's: the same images and the same PyTorch logits, which the ZooTest model test checks).
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default=os.path.join(ROOT, "models/fmnist/mobilenet_relu.onnx"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models/fmnist/mobilenet_skewed.onnx"))
    ap.add_argument("--spread", type=float, default=1.5, help="log10 of the largest factor (default 1.5: 31.6x)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = onnx.load(args.source)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    arrays = {name: numpy_helper.to_array(t).copy() for name, t in inits.items()}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    rng = np.random.default_rng(args.seed)
    changed = 0
    for bn in g.node:
        if bn.op_type != "BatchNormalization":
            continue
        after = readers.get(bn.output[0], [])
        if len(after) != 1 or after[0].op_type != "Relu":
            continue
        nxt = readers.get(after[0].output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != "Conv" or nxt[0].input[0] != after[0].output[0]:
            continue
        conv = nxt[0]
        group = next((a.i for a in conv.attribute if a.name == "group"), 1)
        gamma, beta, w = arrays[bn.input[1]], arrays[bn.input[2]], arrays[conv.input[1]]
        channels = gamma.shape[0]
        f = (10.0 ** rng.uniform(-args.spread, 0.0, channels)).astype(np.float32)
        gamma *= f
        beta *= f
        if group == 1:
            w /= f[None, :, None, None]
        elif group == channels and w.shape[1] == 1:
            w /= f[:, None, None, None]
        else:
            sys.exit(f"{conv.name}: group {group} is neither 1 nor depthwise")
        changed += 1
    for name, t in inits.items():
        t.CopyFrom(numpy_helper.from_array(arrays[name], name))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, args.out)
    print(f"{args.out}: {changed} BatchNormalization -> Relu -> Conv channel sets rescaled by 10^U(-{args.spread}, 0), "
          f"seed {args.seed}")

    data = os.path.join(ROOT, "tests/data/fmnist")
    for kind in ("input", "logits"):
        shutil.copyfile(os.path.join(data, f"mobilenet_relu_{kind}.npy"),
                        os.path.join(data, f"mobilenet_skewed_{kind}.npy"))
    kvant = os.path.join(ROOT, "build/release/kvant")
    if os.path.exists(kvant):
        tmp = tempfile.mkdtemp()
        for tag, path in (("source", args.source), ("skewed", args.out)):
            subprocess.run([kvant, "run", path, "--input", os.path.join(data, "mobilenet_relu_input.npy"), "-o",
                            os.path.join(tmp, tag)], check=True, capture_output=True)
        a = np.load(os.path.join(tmp, "source", "logits.npy"))
        b = np.load(os.path.join(tmp, "skewed", "logits.npy"))
        err = float(np.abs(a - b).max() / np.abs(a).max())
        print(f"logits of the source and the skewed model (kvant run, 8 test images): max relative difference {err:.2e}")
        if err > 1e-4:
            sys.exit("the rescaling changed the function")
    return 0


if __name__ == "__main__":
    sys.exit(main())
