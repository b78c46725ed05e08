#!/usr/bin/python3
"""QAT vs PTQ at W4A8 on the demo CNN (models/fashion_mnist_cnn.onnx), with kvant.torch.

  1. FP32: the demo CNN's weights (BatchNorm already folded by its export) loaded into PyTorch.
  2. PTQ: `kvant quantize --weight-bits 4` with --calib-images training images (default 200).
  3. QAT: kvant.torch.prepare_qat(weight_bits=4, init_from=the PTQ file), then --epochs short epochs
     of fine-tuning on --train-images training images (AdamW, cosine lr from --lr), then
     kvant.torch.export.
Top-1 on the 10,000 Fashion-MNIST test images, each quantized model three ways: the PyTorch
fake-quantized model, kvant's compiled runtime (kvant.InferenceSession) and ONNX Runtime 1.30
(scripts/ort_run.js) on the same file; the three must agree within 0.1 point (exit status 1 if not).

--out FILE replaces the section between QAT_BEGIN and QAT_END in FILE (appended the first time);
the rest of the file is kept.

Usage: PYTHONPATH=build/release/python /usr/bin/python3 scripts/qat_table.py [--out docs/accuracy.md]
       [--kvant build/release/kvant] [--epochs 2] [--train-images 20000] [--lr 3e-4]
"""

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from doc_section import cpu_name, write_section  # noqa: E402
from train_demo_cnn import load_split  # noqa: E402

import kvant  # noqa: E402
import kvant.torch as kqat  # noqa: E402

QAT_BEGIN = "<!-- qat_table.py: begin (regenerated; edit the script, not this section) -->"
QAT_END = "<!-- qat_table.py: end -->"


class DemoCnn(nn.Module):
    """models/fashion_mnist_cnn.onnx as PyTorch: its export folded each BatchNorm into the Conv."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.res1 = nn.Conv2d(32, 32, 3, padding=1)
        self.res2 = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, 10)

    def forward(self, image):
        x = F.max_pool2d(F.relu(self.conv1(image)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(x + self.res2(F.relu(self.res1(x))))
        return self.fc(torch.flatten(x, 1))


def load_demo(path):
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    consts = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in proto.graph.initializer}
    layers = [n for n in proto.graph.node if n.op_type in ("Conv", "Gemm")]
    model = DemoCnn()
    modules = [model.conv1, model.conv2, model.res1, model.res2, model.fc]
    if len(layers) != len(modules):
        raise SystemExit("%s: %d Conv/Gemm nodes, expected %d" % (path, len(layers), len(modules)))
    with torch.no_grad():
        for node, module in zip(layers, modules):
            module.weight.copy_(consts[node.input[1]])
            module.bias.copy_(consts[node.input[2]])
    return model.eval()


def top1_torch(model, x, y):
    model.eval()
    with torch.no_grad():
        return sum((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item() for i in range(0, len(x), 1000)) / len(x)


def top1_kvant(path, x, y):
    session = kvant.InferenceSession(path)
    name = session.get_inputs()[0].name
    correct = 0
    for i in range(0, len(x), 1000):
        (logits,) = session.run(None, {name: x[i:i + 1000].numpy()})
        correct += int((logits.argmax(1) == y[i:i + 1000].numpy()).sum())
    return correct / len(x)


def top1_ort(path, x_file, y, workdir):
    out = os.path.join(workdir, "ort_out_" + os.path.basename(path))  # one folder per model file
    subprocess.run(["node", os.path.join(ROOT, "scripts", "ort_run.js"), path, "--input", x_file, "--output-dir", out],
                   check=True)
    logits = np.load(os.path.join(out, os.listdir(out)[0]))
    return float((logits.argmax(1) == y.numpy()).mean())


def fine_tune(model, train_x, train_y, args, label):
    """args.epochs epochs of args.train_images shuffled training images (the same images and order
    for every model), batch 128, AdamW, cosine learning rate from args.lr."""
    start = time.time()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    batch = 128
    steps = args.epochs * ((args.train_images + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)[:args.train_images]
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        print("%s epoch %d: train loss %.4f (%.0f s)" % (label, epoch + 1, total / len(order), time.time() - start),
              flush=True)
    model.eval()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "fashion_mnist_cnn.onnx"))
    parser.add_argument("--kvant", default=os.environ.get("KVANT_CLI", os.path.join(ROOT, "build", "release", "kvant")))
    parser.add_argument("--calib-images", type=int, default=200)
    parser.add_argument("--train-images", type=int, default=20000, help="training images per QAT epoch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the section into this markdown file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start_wall, start_cpu = time.time(), time.process_time()
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")
    work = tempfile.mkdtemp(prefix="kvant_qat_")
    test_file = os.path.join(work, "test_x.npy")
    np.save(test_file, test_x.numpy())

    fp32 = load_demo(args.model)
    rows = {}
    rows["FP32"] = (top1_torch(fp32, test_x, test_y), top1_kvant(args.model, test_x, test_y),
                    top1_ort(args.model, test_file, test_y, work))
    print("FP32", rows["FP32"], flush=True)

    calib = os.path.join(work, "calib")
    os.makedirs(calib)
    for i in range(args.calib_images):
        np.save(os.path.join(calib, "%04d.npy" % i), train_x[i:i + 1].numpy())
    ptq = os.path.join(work, "demo.w4a8.ptq.onnx")
    subprocess.run([args.kvant, "quantize", args.model, "-o", ptq, "--weight-bits", "4", "--calib", calib,
                    "--no-speed-check", "--report-samples", "0"], check=True, capture_output=True)

    qat = kqat.prepare_qat(fp32, (test_x[:1],), weight_bits=4, init_from=ptq)
    rows["PTQ"] = (top1_torch(qat, test_x, test_y), top1_kvant(ptq, test_x, test_y), top1_ort(ptq, test_file, test_y, work))
    print("PTQ", rows["PTQ"], flush=True)

    qat_start = time.time()
    fine_tune(qat, train_x, train_y, args, "QAT")
    qat_seconds = time.time() - qat_start
    exported = os.path.join(work, "demo.w4a8.qat.onnx")
    kqat.export(qat, exported, (test_x[:1],), input_names=["image"], output_names=["logits"])
    plan = subprocess.run([args.kvant, "inspect", exported, "--plan"], check=True, capture_output=True, text=True).stdout
    fallbacks = "0 reference fallbacks" in plan
    rows["QAT"] = (top1_torch(qat, test_x, test_y), top1_kvant(exported, test_x, test_y),
                   top1_ort(exported, test_file, test_y, work))
    print("QAT", rows["QAT"], flush=True)

    # Control: the same fine-tuning without fake quantization, then kvant's PTQ of the result; so the
    # gain of QAT over PTQ is not just the extra training.
    control = copy.deepcopy(fp32)
    fine_tune(control, train_x, train_y, args, "FP32 control")
    control_path = os.path.join(work, "demo.control.onnx")
    torch.onnx.export(control, (test_x[:1],), control_path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=13)
    control_ptq = os.path.join(work, "demo.control.w4a8.onnx")
    subprocess.run([args.kvant, "quantize", control_path, "-o", control_ptq, "--weight-bits", "4", "--calib", calib,
                    "--no-speed-check", "--report-samples", "0"], check=True, capture_output=True)
    rows["control"] = (top1_torch(control, test_x, test_y), top1_kvant(control_path, test_x, test_y),
                       top1_kvant(control_ptq, test_x, test_y))
    print("control (FP32 torch, FP32 kvant, W4A8 PTQ kvant)", rows["control"], flush=True)
    wall, cpu = time.time() - start_wall, time.process_time() - start_cpu

    problems = []
    for name in ("PTQ", "QAT"):
        t, k, o = rows[name]
        if abs(t - k) > 0.001 + 1e-9 or abs(o - k) > 0.001 + 1e-9:
            problems.append("%s: PyTorch %.4f, kvant %.4f, ONNX Runtime %.4f differ by more than 0.1 point" %
                            (name, t, k, o))
    if not fallbacks:
        problems.append("the QAT export has reference fallbacks in kvant's plan")
    if rows["QAT"][1] <= rows["PTQ"][1]:
        problems.append("QAT (%.4f) does not beat PTQ (%.4f) in kvant" % (rows["QAT"][1], rows["PTQ"][1]))

    def cell(value, base):
        return "%.4f (%+.2f)" % (value, 100 * (value - base))

    base = rows["FP32"][1]
    section = [
        QAT_BEGIN,
        "",
        "## Quantization-aware training at W4A8 (kvant.torch)",
        "",
        "Written by `PYTHONPATH=build/release/python /usr/bin/python3 scripts/qat_table.py --out docs/accuracy.md`",
        "on %s, %d PyTorch threads (PyTorch %s, ONNX Runtime 1.30 through `scripts/ort_run.js`)." %
        (cpu_name(), args.threads, torch.__version__.split("+")[0]),
        "Demo CNN (`models/fashion_mnist_cnn.onnx`); top-1 on the 10000 Fashion-MNIST test images; in",
        "parentheses the change from FP32 (kvant) in points. PTQ: `kvant quantize --weight-bits 4` with %d training" %
        args.calib_images,
        "images for calibration (int4 per-channel weights with MSE clipping, uint8 activations); its PyTorch column",
        "is `kvant.torch.prepare_qat(..., weight_bits=4, init_from=<the PTQ file>)` before any training.",
        "QAT: that model fine-tuned for %d epochs of %d training images (batch 128, AdamW, cosine lr from %g;" %
        (args.epochs, args.train_images, args.lr),
        "weights and biases trained, activation ranges frozen at PTQ's), then `kvant.torch.export` (opset 21,",
        "int4 weight initializers; %s)." % ("0 reference fallbacks in `kvant inspect --plan`" if fallbacks else
                                          "REFERENCE FALLBACKS in the plan"),
        "",
        "| model | PyTorch (fake-quant) | kvant compiled | ONNX Runtime 1.30 |",
        "|---|---|---|---|",
        "| FP32 | %.4f | %.4f | %.4f |" % rows["FP32"],
        "| W4A8 PTQ (`kvant quantize --weight-bits 4`) | %s | %s | %s |" % tuple(cell(v, base) for v in rows["PTQ"]),
        "| W4A8 QAT (%d x %d images from PTQ) | %s | %s | %s |" % ((args.epochs, args.train_images) +
                                                                   tuple(cell(v, base) for v in rows["QAT"])),
        "",
        "Control, the same fine-tuning without fake quantization: FP32 top-1 %.4f (PyTorch) / %.4f (kvant);" %
        rows["control"][:2],
        "its W4A8 PTQ (`kvant quantize --weight-bits 4`, same calibration images) %.4f in kvant, against QAT's %.4f." %
        (rows["control"][2], rows["QAT"][1]),
        "",
        "In kvant, PTQ loses %.2f points against FP32 and QAT gains %+.2f points over PTQ." %
        (100 * (base - rows["PTQ"][1]), 100 * (rows["QAT"][1] - rows["PTQ"][1])),
        "QAT fine-tuning took %.0f s wall; the whole script %.0f s wall / %.0f s CPU (this process; kvant" %
        (qat_seconds, wall, cpu),
        "quantize and node not counted in CPU).",
        "",
    ]
    if problems:
        section += ["Checks failed: " + "; ".join(problems), ""]
    section.append(QAT_END)
    text = "\n".join(section) + "\n"
    print(text)
    if args.out:
        write_section(args.out, QAT_BEGIN, QAT_END, text)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
