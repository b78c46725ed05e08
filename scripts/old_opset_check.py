#!/usr/bin/python3
"""Quantizes torchvision models exported at old opsets and prints a table
(docs/opsets.md): each architecture exported at opsets 7, 9 and 11 (random
weights, BatchNorm statistics set by a few training-mode passes), quantized
static (4 random calibration samples) and dynamic (--reduce-range, so that
ONNX Runtime's u8 x s8 kernels cannot saturate, docs/interop.md), then:
onnx.checker.check_model(full_check=True) on the output, the output's
declared opset, and on one more random input the SQNR (dB) of kvant's output
against FP32 and of ONNX Runtime's output (graph optimizations at `basic`:
the QDQ semantics, no fused kernels) against kvant's.

    /usr/bin/python3 scripts/old_opset_check.py PATH/TO/kvant [WORK_DIR]

Needs torch, torchvision, onnx, numpy, and node_modules/onnxruntime-node.
"""
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
import torch
import torchvision

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Seg(torch.nn.Module):
    """Conv/BN, ReLU6 (Clip), bilinear and nearest Upsample, ConvTranspose,
    Concat, a Softmax over channels (not the last axis)."""

    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.up = torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.up2 = torch.nn.Upsample(scale_factor=2, mode="nearest")
        self.t = torch.nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = torch.nn.Conv2d(24, 5, 1)

    def forward(self, x):
        a = torch.relu(self.bn(self.c1(x)))
        b = torch.nn.functional.relu6(self.c2(a))
        u = torch.cat([self.up(b) + self.up2(b), self.t(b)[:, :8]], 1)
        return torch.softmax(self.head(u), dim=1)


MODELS = {
    "resnet18": torchvision.models.resnet18,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
    "squeezenet1_0": torchvision.models.squeezenet1_0,
    "shufflenet_v2_x0_5": torchvision.models.shufflenet_v2_x0_5,
    "upsample_seg": Seg,
}


def sqnr(ref, x):
    ref = ref.astype(np.float64)
    noise = np.sum((ref - x) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(ref ** 2) / noise)


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(" ".join(cmd[:3]) + ": " + (r.stderr or r.stdout).strip().splitlines()[-1])


def main():
    kvant = os.path.abspath(sys.argv[1])
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp()
    os.makedirs(os.path.join(work, "calib"), exist_ok=True)
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    for k in range(4):
        np.save(os.path.join(work, "calib", f"s{k}.npy"), rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    inp = os.path.join(work, "input.npy")
    np.save(inp, rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
    ort = os.path.join(ROOT, "scripts", "ort_run.js")
    print("| model | opset in | mode | opset out | checker | kvant vs FP32 (dB) | ORT vs kvant (dB) |")
    print("|---|---|---|---|---|---|---|")
    for name, make in MODELS.items():
        torch.manual_seed(0)
        model = make()
        model.train()
        with torch.no_grad():
            for _ in range(3):
                model(torch.randn(4, 3, 64, 64))
        model.eval()
        for opset in (7, 9, 11):
            src = os.path.join(work, f"{name}_op{opset}.onnx")
            try:
                torch.onnx.export(model, torch.randn(1, 3, 64, 64), src, opset_version=opset, input_names=["x"],
                                  output_names=["y"])
            except Exception as e:  # noqa: BLE001 - PyTorch cannot export some ops at old opsets
                print(f"| {name} | {opset} | - | - | - | PyTorch export failed: {str(e).splitlines()[0][:60]} | |")
                continue
            fp32_out = os.path.join(work, f"{name}_op{opset}.fp32")
            run([kvant, "run", src, "--input", inp, "--output-dir", fp32_out, "--force"])
            ref = np.load(os.path.join(fp32_out, "y.npy"))
            for mode, args in (("static", ["--calib", os.path.join(work, "calib"), "--report-samples", "0"]),
                               ("dynamic", ["--mode", "dynamic", "--reduce-range"])):
                q = os.path.join(work, f"{name}_op{opset}.{mode}.onnx")
                row = f"| {name} | {opset} | {mode} |"
                try:
                    run([kvant, "quantize", src, "-o", q, "--force", "--no-speed-check", *args])
                    m = onnx.load(q)
                    declared = {o.domain: o.version for o in m.opset_import}.get("", 0)
                    onnx.checker.check_model(m, full_check=True)
                    kv, orto = q + ".kvant", q + ".ort"
                    run([kvant, "run", q, "--input", inp, "--output-dir", kv, "--force"])
                    run(["node", ort, q, "--input", inp, "--output-dir", orto, "--opt-level", "basic"])
                    got = np.load(os.path.join(kv, "y.npy"))
                    print(f"{row} {declared} | pass | {sqnr(ref, got):.1f} | "
                          f"{sqnr(got, np.load(os.path.join(orto, 'y.npy'))):.1f} |")
                except Exception as e:  # noqa: BLE001 - reported in the table
                    print(f"{row} - | FAIL | {str(e)[:80]} | |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
