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
    --compare-reference, runtime/compare_values.h);
  - with --exact-convs (needs torch): for every DQ -> Conv [-> Relu] -> Q,
    given the simulation's input codes, how many output codes the
    simulation and the integer kernel's formula
    (nearbyint(float32(acc + bias) * float32(x_scale * w_scale / y_scale)))
    each get wrong against the exact value (float64: the int32 sum times
    x_scale * w_scale, plus the int32 bias times its own scale, over
    y_scale), and the exact value of each such element.
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
    ap.add_argument("--exact-convs", action="store_true")
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
        if args.exact_convs:
            exact_convs(args, model, init, producer, x, tmp)


def exact_convs(args, model, init, producer, x, tmp):
    import torch
    from onnx import TensorProto, helper

    g = model.graph
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    quantized = [n.output[0] for n in g.node if n.op_type == "QuantizeLinear"]
    known = {o.name for o in g.output}
    for q in quantized:
        if q not in known:
            g.output.append(helper.make_tensor_value_info(q, TensorProto.UINT8, None))
    path = os.path.join(tmp, "all.onnx")
    import onnx

    onnx.save(model, path)
    np.save(os.path.join(tmp, "x.npy"), x)
    out = os.path.join(tmp, "codes")
    subprocess.run([args.kvant, "run", path, "--input", f"{g.input[0].name}={os.path.join(tmp, 'x.npy')}",
                    "--output-dir", out, "--force", "--reference"], check=True, capture_output=True)

    def codes(name):
        return np.load(os.path.join(out, "".join(c if c.isalnum() or c in "._-" else "_" for c in name) + ".npy"))

    f32 = np.float32
    wrong_sim = wrong_kernel = total = 0
    for n in g.node:
        if n.op_type != "Conv":
            continue
        dqx, dqw = producer.get(n.input[0]), producer.get(n.input[1])
        if dqx is None or dqw is None or dqx.op_type != "DequantizeLinear" or dqw.op_type != "DequantizeLinear":
            continue
        if dqx.input[0] not in quantized or dqw.input[0] not in init:
            continue
        nxt, relu = readers.get(n.output[0], []), False
        if len(nxt) == 1 and nxt[0].op_type == "Relu":
            relu, nxt = True, readers.get(nxt[0].output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != "QuantizeLinear" or init[nxt[0].input[2]].dtype != np.uint8:
            continue
        q = nxt[0]
        xq = codes(dqx.input[0]).astype(np.int64) - (int(init[dqx.input[2]]) if len(dqx.input) > 2 else 0)
        sx, sw = f32(init[dqx.input[1]]), init[dqw.input[1]].astype(f32).reshape(-1)
        w = init[dqw.input[0]].astype(np.int64)
        bias, bias_scale = np.zeros(w.shape[0], np.int64), np.zeros(w.shape[0])
        if len(n.input) > 2 and n.input[2]:
            dqb = producer[n.input[2]]
            bias = init[dqb.input[0]].astype(np.int64)
            bias_scale = np.broadcast_to(init[dqb.input[1]].astype(np.float64).reshape(-1), bias.shape)
        sy, zy = f32(init[q.input[1]]), int(init[q.input[2]])
        a = {at.name: helper.get_attribute_value(at) for at in n.attribute}
        if len(w.shape) != 4 or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            continue
        pads = a.get("pads", [0, 0, 0, 0])
        acc = torch.nn.functional.conv2d(torch.from_numpy(np.pad(xq, ((0, 0), (0, 0), (pads[0], pads[2]),
                                                                      (pads[1], pads[3])))).double(),
                                         torch.from_numpy(w).double(), None, a.get("strides", [1, 1]), 0,
                                         a.get("dilations", [1, 1]), a.get("group", 1)).numpy()
        acc = np.rint(acc).astype(np.int64)
        exact = (acc * (np.float64(sx) * sw.astype(np.float64))[None, :, None, None] +
                 (bias * bias_scale)[None, :, None, None]) / np.float64(sy)
        acc = acc + bias[None, :, None, None]  # the kernel adds the int32 bias to the sum
        lo = zy if relu else 0
        exact_code = np.clip(np.round(exact) + zy, lo, 255)
        mult = ((sx * sw).astype(f32) / sy).astype(f32)
        kernel = np.clip(np.round((acc.astype(f32) * mult[None, :, None, None]).astype(f32)) + zy, lo, 255)
        sim = codes(q.output[0]).astype(np.int64)
        ws, wk = sim != exact_code, kernel != exact_code
        wrong_sim, wrong_kernel, total = wrong_sim + int(ws.sum()), wrong_kernel + int(wk.sum()), total + sim.size
        for idx in np.argwhere(ws | wk):
            i = tuple(idx)
            print(f"  {n.name} {list(i)}: exact {exact[i]:.7f} steps (+ zero point {zy}): simulation "
                  f"{sim[i]}, kernel formula {int(kernel[i])}, exact {int(exact_code[i])}")
    print(f"quantized Convs: of {total} output codes the simulation gets {wrong_sim} and the kernel formula "
          f"{wrong_kernel} different from the exact value")


if __name__ == "__main__":
    main()
