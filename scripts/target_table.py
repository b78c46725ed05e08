#!/usr/bin/python3
"""The accuracy-target table of docs/accuracy.md (issue 13): `kvant quantize --accuracy-target 0.5 --metric
top1` on the Fashion-MNIST fixtures of scripts/steering_table.py, from two starting points that lose
accuracy: static INT8 with per-tensor weights, and static W4A8 (`--weight-bits 4`, where the search first
moves layers up to 8-bit weights, then to FP32). For each: FP32 and the plain model's top-1 on the 10,000
test images, what the search wrote, and the layers it kept high.

    /usr/bin/python3 scripts/target_table.py [--target 0.5] [--out docs/accuracy.md] [--check]

--out replaces the section between TARGET_BEGIN and TARGET_END (appends it the first time). --check exits 1
when a search ends without meeting the target. Needs build/release/kvant and dataset-fashion-mnist.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from doc_section import cpu_name, write_section  # the scripts folder is on sys.path when run
from steering_table import DATA, MODELS, PREP, ROOT

TARGET_BEGIN = "<!-- target_table.py: begin (regenerated; edit the script, not this section) -->"
TARGET_END = "<!-- target_table.py: end -->"
STARTS = [("per-tensor INT8", ["--per-tensor"]), ("W4A8", ["--weight-bits", "4"])]


def short(name):
    """/blocks/blocks.1/conv1/conv1.0/Conv -> blocks.1/conv1.0/Conv: the export's repeated path parts dropped."""
    parts = [p for p in name.strip("/").split("/") if p]
    keep = []
    for p in parts:
        if keep and p.startswith(keep[-1] + "."):
            keep[-1] = p
        else:
            keep.append(p)
    return "/".join(keep)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kvant", default=os.path.join(ROOT, "build/release/kvant"))
    ap.add_argument("--target", type=float, default=0.5, help="top-1 drop allowed, in points")
    ap.add_argument("--samples", type=int, default=500, help="calibration images")
    ap.add_argument("--out", help="write the section into this markdown file")
    ap.add_argument("--check", action="store_true", help="exit 1 if a search misses the target")
    args = ap.parse_args()
    calib = f"{DATA}/train-images-idx3-ubyte.gz"
    test = f"{DATA}/t10k-images-idx3-ubyte.gz"
    tmp = tempfile.mkdtemp(prefix="kvant-target-")
    lines = ["| model | start | FP32 | plain | with the target | kept high | time |", "|---|---|---|---|---|---|---|"]
    missed = []
    for name, rel in MODELS:
        path = os.path.join(ROOT, rel)
        if not os.path.exists(path):
            continue
        for label, extra in STARTS:
            out = os.path.join(tmp, f"{os.path.basename(rel)[:-5]}.{len(extra)}.onnx")
            report = out + ".json"
            start = time.time()
            p = subprocess.run([args.kvant, "quantize", path, "-o", out, "--mode", "static", "--calib", calib,
                                "--preprocess", PREP, "--samples", str(args.samples), "--report-samples", "0",
                                "--no-speed-check", "--accuracy-target", str(args.target), "--metric", "top1",
                                "--eval", test, "--report", report] + extra, capture_output=True, text=True)
            seconds = time.time() - start
            if p.returncode not in (0, 2):  # 2: target not met, the closest model written
                sys.exit(f"{name} {label}: kvant quantize failed ({p.returncode}):\n{p.stderr}")
            t = json.load(open(report))["accuracy_target"]
            steps = t["frontier"]
            fp32, plain, chosen = t["fp32_value"], steps[0]["metric"], steps[t["chosen_step"]]
            high = []
            if chosen["int8"]:
                high.append("8-bit weights: " + ", ".join(f"`{short(n)}`" for n in chosen["int8"]))
            if chosen["kept_fp32"]:
                high.append("FP32: " + ", ".join(f"`{short(n)}`" for n in chosen["kept_fp32"]))
            met = "met" if t["met"] else "**missed**"
            if not t["met"]:
                missed.append(f"{name} from {label}")
            lines.append(f"| {name} | {label} | {fp32:.4f} | {plain:.4f} ({100 * (plain - fp32):+.2f}) | "
                         f"{chosen['metric']:.4f} ({100 * (chosen['metric'] - fp32):+.2f}), {met} at step "
                         f"{t['chosen_step']} of {len(steps) - 1} | {'; '.join(high) or 'none'} | {seconds:.0f} s |")
            print(lines[-1], file=sys.stderr)
    cmd = "/usr/bin/python3 scripts/target_table.py" + (f" --out {args.out}" if args.out else "")
    section = [
        TARGET_BEGIN,
        "",
        f"## Accuracy target {args.target:g} (top-1 points)",
        "",
        f"Written by `{cmd}` on {cpu_name()} (kvant's compiled runtime). `kvant quantize ... --mode static "
        f"--accuracy-target {args.target:g} --metric top1 --eval t10k-images-idx3-ubyte.gz`, calibration on "
        f"{args.samples} training images (`--preprocess {PREP}`), top-1 on the 10,000 test images, in parentheses "
        "the change from FP32 in points. `plain` is the fully quantized start (step 0); the search ranks the "
        "layers by sensitivity, then moves the k most sensitive up (W4A8: to 8-bit weights first, every layer, "
        "then to FP32) until the target is met; `kept high` lists what the written model keeps above the start. "
        "`time` is wall time on a shared 2-core machine (the sensitivity pass and each step's 10,000-image "
        "evaluation).",
        "",
    ] + lines + [""]
    if missed:
        section += ["Target missed: " + "; ".join(missed), ""]
    section.append(TARGET_END)
    text = "\n".join(section) + "\n"
    print(text)
    if args.out:
        write_section(args.out, TARGET_BEGIN, TARGET_END, text)
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
