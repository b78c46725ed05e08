#!/usr/bin/env python3
"""How far kvant's compiled plan is from its own QDQ simulation on a static
file, and how far the simulation is from itself when one input code moves.

  qdq_agreement.py MODEL.onnx INPUT.npy [--kvant build/release/kvant] [--moves 3]

For a single-input static QDQ file (as scripts/zoo.py writes them) it prints:
  - SQNR (dB) of `kvant run` (compiled) against `kvant run --reference` (the
    Q/DQ simulation), and the share of output elements within one output
    step (the scale of the DequantizeLinear the output comes from, through a
    Resize/Reshape/... when there is one);
  - the same SQNR of the simulation against itself when ONE element of the
    input is moved by one step of the input's QuantizeLinear (so that one
    input code changes by one), for --moves random elements (seed 1): how
    strongly the network amplifies a one-code difference. When that is as
    low as the first number, the compiled/simulation gap is the network's
    sensitivity, not a kernel error (docs/zoo.md, finding 7);
  - the steps whose own output differs from the simulation (kvant run
    --compare-reference, runtime/compare_values.h).
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np


def sqnr(test, ref):
    noise = float(((test.astype(np.float64) - ref) ** 2).sum())
    signal = float((ref.astype(np.float64) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(signal / noise)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("input")
    ap.add_argument("--kvant", default="build/release/kvant")
    ap.add_argument("--moves", type=int, default=3)
    args = ap.parse_args()
    import onnx
    from onnx import numpy_helper

    model = onnx.load(args.model)
    g = model.graph
    if len(g.input) != 1 or len(g.output) != 1:
        sys.exit("qdq_agreement.py: needs a model with one input and one output")
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    x_name, y_name = g.input[0].name, g.output[0].name
    in_q = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == x_name]
    node = producer.get(y_name)
    while node is not None and node.op_type != "DequantizeLinear" and node.input:
        node = producer.get(node.input[0])
    if not in_q or node is None:
        sys.exit("qdq_agreement.py: the input is not quantized or the output does not come from a DequantizeLinear")
    in_step = float(init[in_q[0].input[1]].reshape(-1)[0])
    out_step = float(init[node.input[1]].reshape(-1)[0])
    x = np.load(args.input)
    with tempfile.TemporaryDirectory() as tmp:

        def run(feed, reference, extra=()):
            path = os.path.join(tmp, "x.npy")
            np.save(path, feed)
            out = os.path.join(tmp, "out")
            cmd = [args.kvant, "run", args.model, "--input", f"{x_name}={path}", "--output-dir", out, "--force"]
            cmd += (["--reference"] if reference else []) + list(extra)
            text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            name = "".join(c if c.isalnum() or c in "._-" else "_" for c in y_name)
            return np.load(os.path.join(out, name + ".npy")), text

        ref, _ = run(x, True)
        compiled, report = run(x, False, ["--compare-reference"])
        within = float(np.mean(np.abs(compiled.astype(np.float64) - ref) <= out_step * 1.0001))
        print(f"compiled vs simulation: {sqnr(compiled, ref):.1f} dB, {100 * within:.2f}% of output elements "
              f"within one output step ({out_step:.4g})")
        rng = np.random.default_rng(1)
        moved = []
        for _ in range(args.moves):
            x1 = x.copy()
            x1.flat[int(rng.integers(x.size))] += np.float32(in_step)
            moved.append(sqnr(run(x1, True)[0], ref))
        print(f"simulation vs simulation with one input code moved by one: "
              + ", ".join(f"{v:.1f}" for v in moved) + " dB")
        print("steps whose own output differs from the simulation:")
        for line in report.splitlines():
            if "compared" in line or "alone" in line:
                print("  " + line.strip())


if __name__ == "__main__":
    main()
