#!/usr/bin/python3
"""The equalization / bias-correction / AdaRound table of docs/accuracy.md (issue 13): Fashion-MNIST models
quantized static INT8 with per-tensor weight scales, plain and with `--equalize`, `--bias-correction`, both,
`--rounding adaround`, and equalization with AdaRound, beside
FP32 and the default per-channel INT8, scored by `kvant eval` (compiled runtime) on the 10,000 test images.

    /usr/bin/python3 scripts/steering_table.py [--limit N] [--out docs/accuracy.md] [--check]

--out replaces the section between STEERING_BEGIN and STEERING_END in the file (appends it at the end the
first time), so scripts/accuracy_table.py, which keeps what follows its own marker, and this script can
both regenerate docs/accuracy.md. --check exits 1 if `--equalize` leaves the per-tensor mobilenet_skewed
more than 1 point below FP32 (the issue's target). Needs build/release/kvant and Debian's
dataset-fashion-mnist.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from doc_section import cpu_name, write_section  # the scripts folder is on sys.path when run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"
PREP = "mean=0.2860,std=0.3530"
STEERING_BEGIN = "<!-- steering_table.py: begin (regenerated; edit the script, not this section) -->"
STEERING_END = "<!-- steering_table.py: end -->"
MODELS = [
    ("MobileNetV2-style, skewed channels", "models/fmnist/mobilenet_skewed.onnx"),
    ("MobileNetV2-style, ReLU", "models/fmnist/mobilenet_relu.onnx"),
    ("MobileNetV2-style, ReLU6", "models/fmnist/mobilenet_small.onnx"),
    ("ResNet-style CNN", "models/fmnist/resnet_small.onnx"),
    ("demo CNN", "models/fashion_mnist_cnn.onnx"),
]
# label, extra arguments to the static quantize
VARIANTS = [
    ("per-channel", []),
    ("per-tensor", ["--per-tensor"]),
    ("+ equalize", ["--per-tensor", "--equalize"]),
    ("+ bias correction", ["--per-tensor", "--bias-correction"]),
    ("+ both", ["--per-tensor", "--equalize", "--bias-correction"]),
    ("+ AdaRound", ["--per-tensor", "--rounding", "adaround"]),
    ("+ equalize + AdaRound", ["--per-tensor", "--equalize", "--rounding", "adaround"]),
    ("W4A8", ["--weight-bits", "4"]),
    ("W4A8 + AdaRound", ["--weight-bits", "4", "--rounding", "adaround"]),
]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvant", default=os.path.join(ROOT, "build/release/kvant"))
    ap.add_argument("--limit", type=int, default=-1, help="test images (default: all 10,000)")
    ap.add_argument("--samples", type=int, default=500, help="calibration images")
    ap.add_argument("--out", help="write the section into this markdown file")
    ap.add_argument("--check", action="store_true", help="exit 1 if the issue's equalization target is missed")
    args = ap.parse_args()
    calib = f"{DATA}/train-images-idx3-ubyte.gz"
    test = f"{DATA}/t10k-images-idx3-ubyte.gz"
    tmp = tempfile.mkdtemp(prefix="kvant-steer-")
    rows, notes, problems = [], {}, []
    for name, rel in MODELS:
        path = os.path.join(ROOT, rel)
        if not os.path.exists(path):
            continue
        start = time.time()
        base = os.path.join(tmp, os.path.basename(rel)[:-5])
        files = []
        for i, (label, extra) in enumerate(VARIANTS):
            out = f"{base}.{i}.onnx"
            report = run([args.kvant, "quantize", path, "-o", out, "--mode", "static", "--calib", calib,
                          "--preprocess", PREP, "--samples", str(args.samples), "--report-samples", "0",
                          "--no-speed-check"] + extra)
            for line in report.splitlines():
                if line.startswith("note") and any(w in line for w in ("equalization", "bias correction", "AdaRound")):
                    notes.setdefault(name, [])
                    text = line[len("note"):].strip()
                    if text not in notes[name]:
                        notes[name].append(text)
            files.append(out)
        report = f"{base}.eval.json"
        cmd = [args.kvant, "eval", path] + files + ["--data", test, "--preprocess", PREP, "--report", report]
        if args.limit > 0:
            cmd += ["--limit", str(args.limit)]
        run(cmd)
        r = json.load(open(report))
        fp32 = r["models"][0]
        row = dict(name=name, file=rel, samples=r["samples"], fp32=fp32["top1"],
                   variants=[(label, m["top1"], m.get("output_sqnr_db")) for (label, _), m in
                             zip(VARIANTS, r["models"][1:])])
        rows.append(row)
        if rel.endswith("mobilenet_skewed.onnx"):
            eq = dict((label, top1) for label, top1, _ in row["variants"])["+ equalize"]
            if 100 * (row["fp32"] - eq) > 1.0:
                problems.append(f"{name}: per-tensor + equalize loses {100 * (row['fp32'] - eq):.2f} points (target 1)")
        print(f"{name}: done in {time.time() - start:.0f} s", file=sys.stderr)

    head = "| model | FP32 | " + " | ".join(label for label, _ in VARIANTS) + " |"
    lines = [head, "|---|---|" + "---|" * len(VARIANTS)]
    for r in rows:
        cells = []
        for label, top1, sqnr in r["variants"]:
            delta = 100 * (top1 - r["fp32"])
            cells.append(f"{top1:.4f} ({delta:+.2f}; {sqnr:.1f} dB)")
        lines.append(f"| {r['name']} (`{os.path.basename(r['file'])}`) | {r['fp32']:.4f} | " + " | ".join(cells) + " |")
    samples = rows[0]["samples"] if rows else 0
    cmd = "/usr/bin/python3 scripts/steering_table.py" + (f" --out {args.out}" if args.out else "")
    section = [
        STEERING_BEGIN,
        "",
        "## Equalization and bias correction (per-tensor INT8)",
        "",
        f"Written by `{cmd}` on {cpu_name()} (kvant's compiled runtime, `kvant eval`). Top-1 on {samples} "
        f"Fashion-MNIST test images; static INT8, minmax calibration on {args.samples} training images "
        f"(`--preprocess {PREP}`); in parentheses the change from FP32 in points and the output SQNR against "
        "FP32. `per-channel` is the default; the other columns use `--per-tensor` weights, then add "
        "`--equalize`, `--bias-correction`, both, `--rounding adaround`, or equalization and AdaRound. "
        "`W4A8` is `--weight-bits 4` (int4 per-channel weights with MSE-optimal clipping, 8-bit activations, "
        "per-channel), rounded to nearest or by AdaRound.",
        "",
    ] + lines + [""]
    for r in rows:  # the W4A8 target: AdaRound closes at least half of nearest's loss
        v = dict((label, top1) for label, top1, _ in r["variants"])
        loss, ada = r["fp32"] - v["W4A8"], r["fp32"] - v["W4A8 + AdaRound"]
        if loss > 0:
            share = 100 * (loss - ada) / loss
            section.append(f"- {r['name']}: W4A8 loses {100 * loss:.2f} points to round-to-nearest; AdaRound "
                           f"{'recovers' if share >= 0 else 'adds'} {abs(share):.0f}% of that "
                           f"({'meets' if share >= 50 else 'misses'} the half the issue asks).")
        else:
            section.append(f"- {r['name']}: W4A8 with round-to-nearest loses nothing ({100 * loss:+.2f} points).")
    for name, ns in notes.items():
        section.append(f"- {name}: " + "; ".join(ns))
    section.append("")
    if problems:
        section += ["Target missed: " + "; ".join(problems), ""]
    section.append(STEERING_END)
    text = "\n".join(section) + "\n"
    print(text)
    if args.out:
        write_section(args.out, STEERING_BEGIN, STEERING_END, text)
    return 1 if (args.check and problems) else 0


if __name__ == "__main__":
    sys.exit(main())
