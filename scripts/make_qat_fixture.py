#!/usr/bin/python3
"""Makes a quantization-aware-trained (QAT) Fashion-MNIST CNN in PyTorch and exports it to ONNX with
QuantizeLinear / DequantizeLinear pairs: a fixture for reading models quantized by another tool.

Steps (deterministic: fixed seeds, seeded shuffles, one thread):
  1. trains the FP32 CNN below for --epochs epochs on the 60,000 training images;
  2. fuses Conv+BN+ReLU (torch.ao.quantization.fuse_modules_qat), prepares it for QAT with
     per-channel symmetric int8 weights (range -128..127, zero point 0) and per-tensor affine
     uint8 activations, and fine-tunes it for one pass over --qat-images training images;
  3. freezes the observers and the BatchNorm statistics and exports the fake-quantized model,
     opset 13: torch's fake_quantize_per_tensor_affine / fake_quantize_per_channel_affine
     become QuantizeLinear + DequantizeLinear pairs.

The network:
    image [N,1,28,28], normalised: (pixel / 255 - 0.2860) / 0.3530    (fake-quantized, uint8)
    Conv 3x3 1->16  + BN + ReLU (fused), MaxPool 2x2     -> [N,16,14,14]
    Conv 3x3 16->32 + BN + ReLU (fused), MaxPool 2x2     -> [N,32,7,7]
    Flatten, Linear 1568->10                             -> logits [N,10]

Writes:
    models/fmnist/qat_cnn.onnx
    models/fmnist/qat_cnn.md                  its section of models/fmnist/README.md (re-written)
    tests/data/fmnist/qat_cnn_input.npy       test images 0..15, float32 [16,1,28,28], normalised
    tests/data/fmnist/qat_cnn_logits.npy      the PyTorch fake-quantized model's logits for them, float32 [16,10]

Usage: /usr/bin/python3 scripts/make_qat_fixture.py [--epochs 1] [--qat-images 20000] [--data DIR]
"""

import argparse
import collections
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
import torch.ao.quantization as tq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_fmnist_models import MEAN, STD, evaluate, load_split, write_readme  # noqa: E402

OPSET = 13


class QatCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = tq.QuantStub()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc = nn.Linear(32 * 7 * 7, 10)
        self.dequant = tq.DeQuantStub()

    def forward(self, image):
        x = self.quant(image)
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.dequant(self.fc(torch.flatten(x, 1)))


def qat_qconfig():
    # The ONNX exporter accepts the quantization ranges 0..255 (uint8) and -128..127 (int8) only,
    # so the symmetric weights use -128..127 (zero point 0; -128 itself is never produced by
    # rounding a symmetric range, except at the exact minimum).
    activation = tq.FakeQuantize.with_args(observer=tq.MovingAverageMinMaxObserver, quant_min=0, quant_max=255,
                                           dtype=torch.quint8, qscheme=torch.per_tensor_affine, reduce_range=False)
    weight = tq.FakeQuantize.with_args(observer=tq.MovingAveragePerChannelMinMaxObserver, quant_min=-128,
                                       quant_max=127, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                                       reduce_range=False, ch_axis=0)
    return tq.QConfig(activation=activation, weight=weight)


class FrozenQdqCnn(nn.Module):
    """The QAT model after training, written out for export: each BatchNorm folded into its Conv
    (w * gamma / sqrt(var + eps), beta - mean * gamma / sqrt(var + eps), the same folding the QAT
    ConvBnReLU2d applies before quantizing its weight) and every fake quantization an explicit
    torch.fake_quantize_* call with the frozen scale and zero point. The export is then the usual
    QDQ form: Q/DQ on the input, after each ReLU and on the logits, Q/DQ on each weight, float biases,
    and no BatchNormalization or Div nodes (exporting the QAT modules directly gives Conv -> Div ->
    BatchNormalization per fused block)."""

    def __init__(self, qat):
        super().__init__()
        self.act = {}
        for name, fq in [("image", qat.quant.activation_post_process), ("conv1", qat.conv1.activation_post_process),
                         ("conv2", qat.conv2.activation_post_process), ("fc", qat.fc.activation_post_process)]:
            self.act[name] = (float(fq.scale), int(fq.zero_point), fq.quant_min, fq.quant_max)
        for name in ("conv1", "conv2"):
            block = getattr(qat, name)
            factor = block.bn.weight / torch.sqrt(block.bn.running_var + block.bn.eps)
            weight = block.weight * factor.reshape(-1, 1, 1, 1)
            bias = block.bn.bias - block.bn.running_mean * factor
            if block.bias is not None:
                bias = bias + block.bias * factor
            self.register_buffer(f"{name}_weight", weight.detach().clone())
            self.register_buffer(f"{name}_bias", bias.detach().clone())
        self.register_buffer("fc_weight", qat.fc.weight.detach().clone())
        self.register_buffer("fc_bias", qat.fc.bias.detach().clone())
        self.wq = {}
        for name, fq in [("conv1", qat.conv1.weight_fake_quant), ("conv2", qat.conv2.weight_fake_quant),
                         ("fc", qat.fc.weight_fake_quant)]:
            self.register_buffer(f"{name}_wscale", fq.scale.detach().clone())
            self.register_buffer(f"{name}_wzero", fq.zero_point.detach().clone().to(torch.int32))
            self.wq[name] = (fq.ch_axis, fq.quant_min, fq.quant_max)

    def fq_act(self, x, name):
        scale, zero, qmin, qmax = self.act[name]
        return torch.fake_quantize_per_tensor_affine(x, scale, zero, qmin, qmax)

    def fq_weight(self, name):
        axis, qmin, qmax = self.wq[name]
        return torch.fake_quantize_per_channel_affine(getattr(self, f"{name}_weight"), getattr(self, f"{name}_wscale"),
                                                      getattr(self, f"{name}_wzero"), axis, qmin, qmax)

    def forward(self, image):
        x = self.fq_act(image, "image")
        x = F.max_pool2d(self.fq_act(F.relu(F.conv2d(x, self.fq_weight("conv1"), self.conv1_bias, padding=1)), "conv1"), 2)
        x = F.max_pool2d(self.fq_act(F.relu(F.conv2d(x, self.fq_weight("conv2"), self.conv2_bias, padding=1)), "conv2"), 2)
        return self.fq_act(F.linear(torch.flatten(x, 1), self.fq_weight("fc"), self.fc_bias), "fc")


def run_epoch(model, x, y, optimizer, schedule, generator, batch=128):
    model.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for i in range(0, len(order), batch):
        idx = order[i:i + batch]
        loss = F.cross_entropy(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        total += loss.item() * len(idx)
    return total / len(order)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default="models/fmnist")
    parser.add_argument("--test-data", default="tests/data/fmnist")
    parser.add_argument("--epochs", type=int, default=1, help="FP32 training epochs before QAT")
    parser.add_argument("--qat-images", type=int, default=20000, help="training images for the QAT fine-tuning pass")
    parser.add_argument("--train-images", type=int, default=60000, help="training images for the FP32 epochs")
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    train_x, train_y = load_split(args.data, "train")
    train_x, train_y = train_x[:args.train_images], train_y[:args.train_images]
    test_x, test_y = load_split(args.data, "t10k")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.test_data, exist_ok=True)
    wall, cpu = time.time(), time.process_time()

    # 1. FP32 training.
    model = QatCnn()
    steps = args.epochs * ((len(train_x) + 127) // 128)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    shuffle = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        loss = run_epoch(model, train_x, train_y, optimizer, schedule, shuffle)
        print(f"FP32 epoch {epoch + 1}: train loss {loss:.4f}", flush=True)
    fp32_accuracy = evaluate(model, test_x, test_y)
    print(f"FP32 test top-1 {fp32_accuracy:.4f} ({time.time() - wall:.0f} s)", flush=True)

    # 2. Fuse, prepare for QAT, fine-tune on a subset.
    model.train()
    model = tq.fuse_modules_qat(model, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"]])
    model.qconfig = qat_qconfig()
    tq.prepare_qat(model, inplace=True)
    subset = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(1))[:args.qat_images]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=1e-4)
    loss = run_epoch(model, train_x[subset], train_y[subset], optimizer, None, torch.Generator().manual_seed(2))
    print(f"QAT fine-tuning on {len(subset)} images: train loss {loss:.4f}", flush=True)

    # 3. Freeze and export.
    model.apply(tq.disable_observer)
    model.apply(torch.nn.intrinsic.qat.freeze_bn_stats)
    model.eval()
    train_wall, train_cpu = time.time() - wall, time.process_time() - cpu
    qat_accuracy = evaluate(model, test_x, test_y)
    print(f"QAT (fake-quantized) test top-1 {qat_accuracy:.4f}", flush=True)

    frozen = FrozenQdqCnn(model).eval()
    frozen_accuracy = evaluate(frozen, test_x, test_y)
    with torch.no_grad():
        diff = (frozen(test_x[:1000]) - model(test_x[:1000])).abs().max().item()
    print(f"frozen QDQ model: test top-1 {frozen_accuracy:.4f}; max |logits - QAT model's| on 1000 test images "
          f"{diff:.3g} (logit step {frozen.act['fc'][0]:.3g})", flush=True)

    path = os.path.join(args.out, "qat_cnn.onnx")
    torch.onnx.export(frozen, (test_x[:1],), path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=OPSET,
                      do_constant_folding=True)
    import onnx
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    ops = collections.Counter(node.op_type for node in proto.graph.node)
    print(f"wrote {path} ({os.path.getsize(path)} bytes); ops: {dict(sorted(ops.items()))}", flush=True)
    if not ops["QuantizeLinear"] or not ops["DequantizeLinear"]:
        raise SystemExit("the export has no QuantizeLinear / DequantizeLinear nodes")

    with torch.no_grad():
        sample = test_x[:16]
        logits = frozen(sample)
    np.save(os.path.join(args.test_data, "qat_cnn_input.npy"), sample.numpy().astype(np.float32))
    np.save(os.path.join(args.test_data, "qat_cnn_logits.npy"), logits.numpy().astype(np.float32))
    params = sum(p.numel() for p in model.parameters())
    print(f"training {train_wall:.0f} s wall / {train_cpu:.0f} s CPU; {params} trainable parameters", flush=True)

    section = [
        "## qat_cnn: a quantization-aware-trained model with QuantizeLinear / DequantizeLinear",
        "",
        "`qat_cnn.onnx` (opset 13, written by `scripts/make_qat_fixture.py`) comes from PyTorch's eager-mode QAT",
        "(`torch.ao.quantization`): Conv 3x3 1->16 + BN + ReLU, MaxPool; Conv 3x3 16->32 + BN + ReLU, MaxPool;",
        "Flatten; Linear 1568->10. Conv+BN+ReLU fused with `fuse_modules_qat`; weights fake-quantized per",
        "channel, symmetric int8 (-128..127, zero point 0; MovingAveragePerChannelMinMaxObserver), activations",
        "per tensor, affine uint8 (0..255; MovingAverageMinMaxObserver) on the input, after each ReLU and on the",
        "logits.",
        "",
        f"Training: {args.epochs} FP32 epoch(s) on {len(train_x):,} training images (AdamW, one-cycle lr peaking at 3e-3),",
        f"then QAT fine-tuning for one pass over {args.qat_images:,} of them (AdamW, lr 2e-4); then observers disabled,",
        "BN statistics frozen. For export, each BN is folded into its Conv exactly as the QAT module folds it and",
        "every fake quantization becomes an explicit `torch.fake_quantize_per_tensor_affine` /",
        "`fake_quantize_per_channel_affine` with the frozen scale and zero point, which the exporter writes as a",
        "QuantizeLinear + DequantizeLinear pair (the weights stay float initializers behind a Q/DQ pair).",
        "",
        "| | |",
        "|---|---|",
        f"| parameters | {params:,} (trainable, before BN folding) |",
        f"| FP32 test top-1 (before QAT) | {fp32_accuracy:.4f} |",
        f"| **QAT (fake-quantized) test top-1, PyTorch** | **{qat_accuracy:.4f}** |",
        f"| exported (folded, explicit fake-quant) model, PyTorch | {frozen_accuracy:.4f}; max abs logit difference from the QAT model {diff:.3g} on 1000 test images (logit quantization step {frozen.act['fc'][0]:.3g}) |",
        f"| training | {train_wall:.0f} s wall / {train_cpu:.0f} s CPU, one thread |",
        f"| file | {os.path.getsize(path) / 1024:.0f} KB |",
        f"| ops | {', '.join(f'{op} {n}' for op, n in sorted(ops.items()))} |",
        "",
        "`tests/data/fmnist/qat_cnn_input.npy`: test images 0..15, float32 `[16,1,28,28]`, normalised;",
        "`qat_cnn_logits.npy`: the exported PyTorch model's (fake-quantized) logits for them, float32 `[16,10]`.",
    ]
    with open(os.path.join(args.out, "qat_cnn.md"), "w") as f:
        f.write("\n".join(section) + "\n")
    results_path = os.path.join(args.out, "results.json")
    if os.path.exists(results_path):
        with open(results_path) as f:
            write_readme(args.out, json.load(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
