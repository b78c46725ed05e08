#!/usr/bin/env python3
"""AWQ / GPTQ / SmoothQuant accuracy on the gpt2_tiny fixture (docs/llm.md).

Quantizes .fixtures/gpt2_tiny/model.onnx (and a copy with outlier channels,
below) with `kvant quantize` in each configuration, runs the FP32 and the
quantized files with `kvant run` on held-out prompts, and prints one Markdown
row per configuration: logits SQNR against FP32 (dB) and next-token top-1
agreement with FP32. With --ort, the static INT8 files are run by ONNX Runtime
(scripts/ort_run.js, graph optimizations "basic") as well, to show they load
and agree.

  /usr/bin/python3 bench/llm/scaling_table.py [--kvant build/release/kvant] [--work DIR] [--ort]

Data: 32 calibration prompts and 8 held-out prompts of 64 random token ids
(seeds 0 and 1, vocabulary 2048); the held-out prompts are not in the
calibration set.

"outliers" variant: the same FP32 function with outlier channels in the
LayerNorm outputs, as trained LLMs have them (LLM.int8(), SmoothQuant): in
each decomposed LayerNorm (Mul by gamma, Add beta) that feeds only MatMuls,
gamma and beta are multiplied by 40 on 4 channels and the MatMuls' weight
rows of those channels divided by 40. FP32 outputs stay the same (checked
here, 1e-4 relative); per-tensor activation ranges and AWQ's statistics see
the outliers.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper as nh

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_outlier_model(src, dst, factor=40.0, channels=(3, 50, 131, 200)):
    m = onnx.load(src)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    consts = {}
    for n in g.node:  # Constant nodes hold some parameters in this export
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
    producer = {o: n for n in g.node for o in n.output}
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)

    def tensor(name):  # through the export's Identity nodes
        while name in producer and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        return inits.get(name) or consts.get(name)

    changed = 0
    for add in g.node:
        if add.op_type != "Add" or len(add.input) != 2:
            continue
        beta_name = next((i for i in add.input if tensor(i) is not None), None)
        y = next((i for i in add.input if tensor(i) is None), None)
        if beta_name is None or y is None or y not in producer or producer[y].op_type != "Mul":
            continue
        mul = producer[y]
        gamma_name = next((i for i in mul.input if tensor(i) is not None), None)
        out_readers = [r for r in readers.get(add.output[0], []) if r.op_type != "Shape"]
        if gamma_name is None or not out_readers or any(r.op_type != "MatMul" for r in out_readers):
            continue
        gamma, beta = nh.to_array(tensor(gamma_name)).copy(), nh.to_array(tensor(beta_name)).copy()
        if gamma.shape[-1] <= max(channels):
            continue
        for c in channels:
            gamma[..., c] *= factor
            beta[..., c] *= factor
        # New initializers: the export shares equal constants between norms.
        def replace(node, old_name, value):
            name = f"{old_name}_outliers{changed}"
            g.initializer.append(nh.from_array(value.astype(np.float32), name))
            node.input[list(node.input).index(old_name)] = name

        replace(mul, gamma_name, gamma)
        replace(add, beta_name, beta)
        for r in out_readers:
            w = nh.to_array(tensor(r.input[1])).copy()
            for c in channels:
                w[c, :] /= factor
            replace(r, r.input[1], w)
        changed += 1
    onnx.save(m, dst)
    return changed


def run(cmd, log):
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT)


def kvant_logits(kvant, model, ids, out_dir):
    run([kvant, "run", model, "--input", ids, "-o", out_dir, "--force"], out_dir + ".log")
    return np.load(os.path.join(out_dir, "logits.npy")).astype(np.float64)


def ort_logits(model, ids, out_dir):
    # "basic": ONNX Runtime runs the QDQ graph unfused (DequantizeLinear, float
    # MatMul), which is exact on every CPU; its fused u8 x s8 kernels saturate
    # int16 pair sums on CPUs without VNNI unless weights are 7-bit
    # (--reduce-range), as interop_test.sh explains.
    run(["node", os.path.join(ROOT, "scripts/ort_run.js"), model, "--input", "input_ids=" + ids, "--opt-level",
         "basic", "--output-dir", out_dir], out_dir + ".log")
    return np.load(os.path.join(out_dir, "logits.npy")).astype(np.float64)


def sqnr(ref, y):
    return 10 * np.log10((ref ** 2).sum() / ((ref - y) ** 2).sum())


def agreement(ref, y):
    return float((ref.argmax(-1) == y.argmax(-1)).mean())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvant", default=os.path.join(ROOT, "build/release/kvant"))
    ap.add_argument("--work", default="/tmp/kvant_scaling_table")
    ap.add_argument("--ort", action="store_true", help="also run the static INT8 files in ONNX Runtime")
    ap.add_argument("--only", default="", help="comma-separated configuration names")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    os.chdir(args.work)
    base = os.path.join(ROOT, ".fixtures/gpt2_tiny/model.onnx")
    np.save("ids_calib.npy", np.random.default_rng(0).integers(0, 2048, (32, 1, 64)).astype(np.int64))
    np.save("ids_test.npy", np.random.default_rng(1).integers(0, 2048, (8, 64)).astype(np.int64))
    changed = make_outlier_model(base, "outliers.onnx")
    models = {"gpt2_tiny": base, "gpt2_tiny outliers": "outliers.onnx"}
    fp32 = {name: kvant_logits(args.kvant, path, "ids_test.npy", f"fp32_{i}") for i, (name, path) in
            enumerate(models.items())}
    diff = np.abs(fp32["gpt2_tiny"] - fp32["gpt2_tiny outliers"]).max() / np.abs(fp32["gpt2_tiny"]).max()
    print(f"outlier variant: {changed} LayerNorms changed; FP32 logits differ by {diff:.1e} (relative max)")
    assert diff < 1e-4, diff
    w4 = ["--mode", "weight-only", "--bits", "4", "--group-size", "32", "--calib", "ids_calib.npy"]
    s8 = ["--mode", "static", "--calib", "ids_calib.npy"]
    configs = [
        ("int4 g32 RTN", w4),
        ("int4 g32 GPTQ", w4 + ["--rounding", "gptq"]),
        ("int4 g32 AWQ", w4 + ["--awq"]),
        ("int4 g32 AWQ+GPTQ", w4 + ["--awq", "--rounding", "gptq"]),
        ("static W8A8", s8),
        ("static W8A8 SmoothQuant 0.5", s8 + ["--smooth-quant", "0.5"]),
        ("static W8A8 SmoothQuant 0.8", s8 + ["--smooth-quant", "0.8"]),
    ]
    only = set(filter(None, args.only.split(",")))
    print("| model | configuration | logits SQNR dB | top-1 agreement | quantize s |" +
          (" ORT SQNR dB | ORT vs kvant SQNR dB |" if args.ort else ""))
    print("|---|---|---:|---:|---:|" + ("---:|---:|" if args.ort else ""))
    for mi, (mname, path) in enumerate(models.items()):
        for ci, (cname, flags) in enumerate(configs):
            if only and cname not in only:
                continue
            out = f"q_{mi}_{ci}.onnx"
            start = time.time()
            run([args.kvant, "quantize", path, "-o", out, "-f", "--report-samples", "0", "--no-speed-check"] + flags,
                out + ".log")
            seconds = time.time() - start
            y = kvant_logits(args.kvant, out, "ids_test.npy", f"run_{mi}_{ci}")
            row = (f"| {mname} | {cname} | {sqnr(fp32[mname], y):.1f} | {100 * agreement(fp32[mname], y):.0f}% | "
                   f"{seconds:.1f} |")
            if args.ort and "static" in cname:
                yo = ort_logits(out, "ids_test.npy", f"ort_{mi}_{ci}")
                row += f" {sqnr(fp32[mname], yo):.1f} | {sqnr(yo, y):.1f} |"
            elif args.ort:
                row += " | |"
            print(row, flush=True)


if __name__ == "__main__":
    sys.exit(main())
