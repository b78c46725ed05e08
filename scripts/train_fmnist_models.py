#!/usr/bin/python3
"""Trains four small Fashion-MNIST classifiers of different families and exports them to ONNX.

The models exercise different parts of kvant's quantizer:

    resnet_small     Conv + BatchNorm + ReLU, residual Add, a stride-2 block with a 1x1
                     projection shortcut, global average pool, Linear. Exported with the
                     BatchNormalization nodes kept (not folded into the Convs), so that
                     kvant's own BN folding is exercised.
    mobilenet_small  MobileNetV2-style inverted residual blocks (16..96 channels): 1x1 expand, depthwise 3x3,
                     1x1 project, BatchNorm (kept), ReLU6 (exported as Clip 0..6), residual
                     Add where stride is 1 and channels match.
    mobilenet_relu   mobilenet_small with ReLU instead of ReLU6, trained without weight decay: the fixture
                     for cross-layer equalization (ReLU is positively homogeneous, ReLU6 is not);
                     scripts/make_skewed_fixture.py derives mobilenet_skewed from it.
    lstm_rows        LSTM (hidden 128, 1 layer) reading the 28 image rows, last hidden
                     state -> Linear.
    vit_tiny         small transformer encoder: 7x7 patch embedding (Conv, 16 tokens, dim 128), learned position
                     embedding, 2 pre-norm encoder blocks (MLP 512) with explicit multi-head attention
                     (MatMul / Softmax), LayerNorm, GELU MLP, final LayerNorm, mean pool, Linear.

Every model takes input "image", float32 [N,1,28,28], normalised like the demo model:
(pixel / 255 - 0.2860) / 0.3530, and gives output "logits", float32 [N,10]; N is a
dynamic axis; opset 17.

Training is deterministic: fixed seeds, a seeded shuffle, torch.use_deterministic_algorithms,
one CPU thread. Writes:

    models/fmnist/<name>.onnx
    models/fmnist/README.md                   parameters, FP32 test top-1, training time
    tests/data/fmnist/<name>_input.npy        test images 0..7, float32 [8,1,28,28]
    tests/data/fmnist/<name>_logits.npy       PyTorch's FP32 logits for them, float32 [8,10]

Usage: /usr/bin/python3 scripts/train_fmnist_models.py [--models resnet_small,...] [--data DIR]
The README table keeps the rows of models not retrained in this run (it is read back
from models/fmnist/results.json).
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

# The demo CNN's IDX reader, normalisation and top-1 evaluation (the models share one input format).
from train_demo_cnn import MEAN, STD, evaluate, load_split, read_idx  # noqa: E402,F401
OPSET = 17


def conv_bn(cin, cout, kernel=3, stride=1, groups=1):
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """relu(shortcut(x) + BN(Conv(relu(BN(Conv(x)))))); shortcut is a strided 1x1 Conv + BN when the shape changes."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride=stride)
        self.conv2 = conv_bn(cout, cout)
        # No nn.Identity for the plain shortcut: it would export as an Identity node.
        self.shortcut = conv_bn(cin, cout, kernel=1, stride=stride) if stride != 1 or cin != cout else None

    def forward(self, x):
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(shortcut + self.conv2(F.relu(self.conv1(x))))


class ResNetSmall(nn.Module):
    """[N,1,28,28] -> stem Conv 3x3 1->24 + BN + ReLU, MaxPool -> [N,24,14,14]
    -> BasicBlock 24 -> BasicBlock 24->48 stride 2 (1x1 projection) -> [N,48,7,7]
    -> BasicBlock 48 -> global average pool -> Linear 48->10."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 24), nn.ReLU(), nn.MaxPool2d(2))
        self.blocks = nn.Sequential(BasicBlock(24, 24), BasicBlock(24, 48, stride=2), BasicBlock(48, 48))
        self.fc = nn.Linear(48, 10)

    def forward(self, image):
        x = self.blocks(self.stem(image))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ----------------------------------------------------------------------------- mobilenet_small

class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + BN + ReLU6, depthwise 3x3 + BN + ReLU6, 1x1 project + BN (linear);
    residual Add when stride is 1 and the channel count is unchanged."""

    def __init__(self, cin, cout, stride, expand, act=nn.ReLU6):
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            conv_bn(cin, hidden, kernel=1), act(),
            conv_bn(hidden, hidden, kernel=3, stride=stride, groups=hidden), act(),
            conv_bn(hidden, cout, kernel=1),
        )

    def forward(self, x):
        y = self.body(x)
        return x + y if self.use_residual else y


class MobileNetSmall(nn.Module):
    """[N,1,28,28] -> stem Conv 3x3 1->16 stride 2 + BN + ReLU6 -> [N,16,14,14]
    -> IR(16->32, s2, e4) -> [N,32,7,7] -> IR(32->64, s1, e6) -> IR(64->96, s2, e6) -> [N,96,4,4]
    -> IR(96->96, s1, e6, residual) -> 1x1 Conv 96->320 + BN + ReLU6 -> global average pool -> Linear 320->10.

    Wide enough that per-channel quantization overhead (a float scale per output channel for each weight
    and int32 bias, the biases themselves) and the graph stay a small part of the INT8/INT4 file: in the
    first version (24,042 parameters over ~1,000 channels, 16..32 channels, expansion 3..4) they were 10%
    and 10% of the FP32 size, beside 19% of int8 weights. The wide layers run at 7x7 and 4x4, so training
    stays a few minutes."""

    def __init__(self, act=nn.ReLU6):
        super().__init__()
        self.stem = nn.Sequential(conv_bn(1, 16, stride=2), act())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 32, 2, 4, act),
            InvertedResidual(32, 64, 1, 6, act),
            InvertedResidual(64, 96, 2, 6, act),
            InvertedResidual(96, 96, 1, 6, act),
        )
        self.head = nn.Sequential(conv_bn(96, 320, kernel=1), act())
        self.fc = nn.Linear(320, 10)

    def forward(self, image):
        x = self.head(self.blocks(self.stem(image)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MobileNetRelu(MobileNetSmall):
    """mobilenet_small with ReLU instead of ReLU6, trained without weight decay: the fixture for cross-layer
    equalization (kvant quantize --equalize, design decision 35). ReLU is positively homogeneous, so the
    expand -> depthwise -> project pairs can be rescaled; without weight decay the BatchNorm-folded depthwise
    channels keep widely different ranges, which is what per-tensor weight quantization handles badly."""

    def __init__(self):
        super().__init__(act=nn.ReLU)


# ----------------------------------------------------------------------------- lstm_rows

class LstmRows(nn.Module):
    """[N,1,28,28] -> [N,28,28] (a sequence of 28 rows of 28 pixels) -> LSTM hidden 128 -> last hidden state
    -> Linear 128->10."""

    def __init__(self, hidden=128, layers=1):
        super().__init__()
        self.lstm = nn.LSTM(input_size=28, hidden_size=hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, image):
        rows = image.reshape(-1, 28, 28)
        _, (h_n, _) = self.lstm(rows)
        return self.fc(h_n[-1])


# ----------------------------------------------------------------------------- vit_tiny

class Attention(nn.Module):
    """Multi-head self-attention written out with MatMul / Softmax so that the export has only plain ops."""

    def __init__(self, dim, heads, tokens):
        super().__init__()
        self.tokens = tokens  # fixed, so that the Reshapes get constant shapes (batch is -1)
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        t, d = self.tokens, self.heads * self.head_dim
        qkv = self.qkv(x).reshape(-1, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                          # [N, heads, T, head_dim]
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(-1, t, d)
        return self.proj(out)


class EncoderBlock(nn.Module):
    def __init__(self, dim, heads, mlp, tokens):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VitTiny(nn.Module):
    """[N,1,28,28] -> Conv 7x7 stride 7 1->128 (16 patch tokens) + learned position embedding
    -> 2 pre-norm encoder blocks (4 heads, MLP 512, GELU) -> LayerNorm -> mean over tokens -> Linear 128->10.

    The first version (dim 64, MLP 128, 71,946 parameters) could not reach INT4 <= 18% of FP32: int4 weights
    with a float scale per 32 values are 15.6% alone, and its LayerNorm/bias vectors and graph were the rest."""

    def __init__(self, dim=128, heads=4, mlp=512, depth=2, patch=7):
        super().__init__()
        self.patch = nn.Conv2d(1, dim, patch, stride=patch)
        tokens = (28 // patch) ** 2
        self.pos = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.blocks = nn.Sequential(*[EncoderBlock(dim, heads, mlp, tokens) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 10)

    def forward(self, image):
        x = self.patch(image).flatten(2).transpose(1, 2) + self.pos   # [N, tokens, dim]
        x = self.norm(self.blocks(x))
        return self.fc(x.mean(dim=1))


# ----------------------------------------------------------------------------- training

# name -> (constructor, epochs, peak learning rate, weight decay, batch, description)
MODELS = collections.OrderedDict([
    ("resnet_small", (ResNetSmall, 2, 3e-3, 1e-4, 128, "Conv+BN+ReLU, 3 basic blocks (one stride 2 + 1x1 projection), GAP, Linear")),
    ("mobilenet_small", (MobileNetSmall, 2, 4e-3, 1e-4, 128, "MobileNetV2 inverted residuals (16..96 channels, expand 4..6, depthwise, project), BN, ReLU6, GAP, Linear")),
    ("mobilenet_relu", (MobileNetRelu, 2, 4e-3, 0.0, 128, "mobilenet_small with ReLU instead of ReLU6, no weight decay (the per-tensor / cross-layer equalization fixture)")),
    ("lstm_rows", (LstmRows, 4, 3e-3, 1e-4, 128, "LSTM over the 28 rows (hidden 128, 1 layer), last hidden state, Linear")),
    ("vit_tiny", (VitTiny, 5, 2e-3, 5e-2, 128, "7x7 patches (16 tokens), dim 128, 2 encoder blocks, 4 heads, MLP 512 GELU, mean pool, Linear")),
])


def train(name, train_x, train_y, test_x, test_y):
    make, epochs, lr, weight_decay, batch, _ = MODELS[name]
    torch.manual_seed(0)
    model = make()
    steps = epochs * ((len(train_x) + batch - 1) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.2)
    shuffle = torch.Generator().manual_seed(0)
    wall, cpu = time.time(), time.process_time()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=shuffle)
        total_loss = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            if name == "lstm_rows":
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
        print(f"  {name} epoch {epoch + 1}/{epochs}: train loss {total_loss / len(order):.4f} "
              f"({time.time() - wall:.0f} s wall, {time.process_time() - cpu:.0f} s CPU)", flush=True)
    train_wall, train_cpu = time.time() - wall, time.process_time() - cpu
    model.eval()
    return model, train_wall, train_cpu


def export(model, name, path, sample):
    # TrainingMode.PRESERVE (the model is in eval mode) keeps BatchNormalization nodes: with the default
    # TrainingMode.EVAL, torch 1.13 folds every BatchNorm into the Conv before it.
    torch.onnx.export(model, (sample,), path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=OPSET,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)
    import onnx
    proto = onnx.load(path)
    if remove_initializer_identities(proto):
        onnx.save(proto, path)
    onnx.checker.check_model(proto, full_check=True)
    return collections.Counter(node.op_type for node in proto.graph.node)


def remove_initializer_identities(proto):
    """The exporter stores bitwise-equal initializers once and links the duplicates with Identity nodes
    (resnet_small: the BN biases of the two branches that meet at an Add get the same gradients from the
    same zero start, so they stay equal). Gives each duplicate its own initializer again; returns the count."""
    import onnx
    initializers = {init.name: init for init in proto.graph.initializer}
    kept, removed = [], 0
    for node in proto.graph.node:
        if node.op_type == "Identity" and node.input[0] in initializers:
            copy = onnx.TensorProto()
            copy.CopyFrom(initializers[node.input[0]])
            copy.name = node.output[0]
            proto.graph.initializer.append(copy)
            removed += 1
        else:
            kept.append(node)
    if removed:
        del proto.graph.node[:]
        proto.graph.node.extend(kept)
    return removed


def write_readme(out_dir, results):
    lines = [
        "# Fashion-MNIST model zoo",
        "",
        "Small Fashion-MNIST classifiers of different families, for testing kvant's quantizer on more than",
        "plain CNNs. All take `image`, float32 `[N,1,28,28]` (N dynamic), normalised as",
        f"`(pixel / 255 - {MEAN:.4f}) / {STD:.4f}`, and give `logits`, float32 `[N,10]`; opset {OPSET} unless noted.",
        "Accuracy is top-1 on the 10,000 Fashion-MNIST test images, measured by PyTorch (FP32).",
        "",
        "| model | parameters | FP32 test top-1 | training (wall / CPU, 1 thread) | file | command | ops |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    results = {k: results[k] for k in MODELS if k in results}
    for name, r in results.items():
        ops = ", ".join(f"{op} {n}" for op, n in sorted(r["ops"].items()))
        lines.append(f"| `{name}.onnx` | {r['params']:,} | {r['accuracy']:.4f} | "
                     f"{r['train_wall_s']:.0f} s / {r['train_cpu_s']:.0f} s | {r['bytes'] / 1024:.0f} KB | "
                     f"`scripts/train_fmnist_models.py --models {name}` | {ops} |")
    lines += ["", "Models:", ""]
    for name, r in results.items():
        lines.append(f"- `{name}`: {r['description']} ({r['training']})")
    lines += [
        "",
        "## How they were made",
        "",
        "```sh",
        "/usr/bin/python3 scripts/train_fmnist_models.py    # resnet_small, mobilenet_small, lstm_rows, vit_tiny",
        "/usr/bin/python3 scripts/make_qat_fixture.py       # qat_cnn (see below)",
        "```",
        "",
        "Debian 12's PyTorch 1.13 on the CPU, one thread (`torch.set_num_threads(1)`), fixed seeds, a seeded",
        "shuffle and `torch.use_deterministic_algorithms(True)`; AdamW with a one-cycle learning rate on the",
        "60,000 training images. Training times were measured on a 2-core machine shared with compilers, so the",
        "wall time is longer than the CPU time. Re-running retrains: weights may differ in the last bits on",
        "another CPU or PyTorch build.",
        "",
        "`resnet_small` and `mobilenet_small` are exported with `training=TrainingMode.PRESERVE` (model in eval",
        "mode), which keeps the `BatchNormalization` nodes (inference form) instead of folding them into the",
        "Convs, so kvant's own BN folding is exercised. The exporter links bitwise-equal initializers with",
        "`Identity` nodes (in `resnet_small` the BN biases of the two branches into an Add stay equal); the",
        "script gives each its own initializer again, so there are no Identity nodes.",
        "",
        "`mobilenet_small` and `vit_tiny` were widened once (kvant issue 3, size limits: INT8 <= 30% and INT4",
        "<= 18% of FP32). The first `mobilenet_small` (16..32 channels, expansion 3..4, 24,042 parameters,",
        "FP32 top-1 0.9052) spread its weights over ~1,000 channels: in its static INT8 file the float scales",
        "(per channel, for each weight and int32 bias) and the int32 biases were 10% of the FP32 size and the",
        "graph (99 nodes, exporter names kept) another 10%, beside 19% of int8 weights (39.5%; INT4 26.6%;",
        "37.8% / 24.8% after kvant's name and zero-point savings). The first `vit_tiny` (dim 64, MLP 128, 71,946 parameters, FP32 top-1",
        "0.8774) could not reach INT4 18%: int4 weights with a float scale per 32 values are 15.6% by themselves,",
        "and its LayerNorm/bias vectors and graph (node names kept) were 5% more. Now: `mobilenet_small` 16..96",
        "channels, expansion 4..6, the wide layers at 7x7 and 4x4 so training stays short; `vit_tiny` dim 128,",
        "MLP 512 (a standard 4x MLP). docs/accuracy.md has the numbers before and after.",
        "",
        "`mobilenet_relu` is `mobilenet_small` with ReLU for ReLU6 and no weight decay, for cross-layer",
        "equalization (`kvant quantize --equalize`): ReLU is positively homogeneous, ReLU6 = Clip(0, 6) is not.",
        "Trained this briefly its BatchNorm-folded channel ranges stay close, so per-tensor INT8 loses nothing on",
        "it. `mobilenet_skewed.onnx` (not trained: `/usr/bin/python3 scripts/make_skewed_fixture.py`) is",
        "`mobilenet_relu` with the channels of each BatchNormalization -> Relu -> Conv rescaled by 10^U(-1.5, 0)",
        "and the Conv weights reading them by the inverse: the same function (its test data are",
        "`mobilenet_relu`'s), with the widely different channel ranges of ImageNet MobileNetV2 after folding",
        "(docs/accuracy.md, \"Equalization and bias correction\").",
        "",
        "`lstm_rows`: the Shape / Gather / ConstantOfShape / Concat / Unsqueeze nodes build the zero initial",
        "state `[1,N,128]` for the dynamic batch; the Transpose turns the batch-first rows into ONNX's",
        "sequence-first layout.",
        "",
        "`tests/data/fmnist/<model>_input.npy` holds test images 0..7 (float32 `[8,1,28,28]`, normalised) and",
        "`<model>_logits.npy` PyTorch's FP32 logits for them (float32 `[8,10]`).",
    ]
    qat = os.path.join(out_dir, "qat_cnn.md")
    if os.path.exists(qat):
        with open(qat) as f:
            lines += ["", f.read().rstrip()]
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default="models/fmnist")
    parser.add_argument("--test-data", default="tests/data/fmnist")
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.test_data, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    results = {}
    if os.path.exists(results_path):
        with open(results_path) as f:
            results = json.load(f)

    for name in args.models.split(","):
        if name not in MODELS:
            raise SystemExit(f"unknown model {name}; known: {', '.join(MODELS)}")
        print(f"training {name}", flush=True)
        model, train_wall, train_cpu = train(name, train_x, train_y, test_x, test_y)
        accuracy = evaluate(model, test_x, test_y)
        path = os.path.join(args.out, f"{name}.onnx")
        ops = export(model, name, path, test_x[:1])
        with torch.no_grad():
            sample = test_x[:8]
            logits = model(sample)
        np.save(os.path.join(args.test_data, f"{name}_input.npy"), sample.numpy().astype(np.float32))
        np.save(os.path.join(args.test_data, f"{name}_logits.npy"), logits.numpy().astype(np.float32))
        params = sum(p.numel() for p in model.parameters())
        _, epochs, lr, weight_decay, batch, description = MODELS[name]
        results[name] = {
            "params": params, "accuracy": accuracy, "train_wall_s": round(train_wall, 1),
            "train_cpu_s": round(train_cpu, 1), "bytes": os.path.getsize(path), "ops": dict(ops),
            "description": description,
            "training": f"{epochs} epochs, batch {batch}, AdamW peak lr {lr:g}, weight decay {weight_decay:g}",
        }
        print(f"{name}: {params} parameters, FP32 test top-1 {accuracy:.4f}, training {train_wall:.0f} s wall / "
              f"{train_cpu:.0f} s CPU, {path} {os.path.getsize(path)} bytes", flush=True)
        print(f"  ops: {dict(sorted(ops.items()))}", flush=True)
        ordered = {k: results[k] for k in MODELS if k in results}
        with open(results_path, "w") as f:
            json.dump(ordered, f, indent=1, sort_keys=True)
            f.write("\n")
        write_readme(args.out, ordered)
    return 0


if __name__ == "__main__":
    sys.exit(main())
