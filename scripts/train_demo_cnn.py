#!/usr/bin/python3
"""Trains kvant's built-in demo model: a small CNN for Fashion-MNIST.

Reads Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist, IDX
files, gzip), trains deterministically on the CPU (2 threads, fixed seeds) and
writes:

    models/fashion_mnist_cnn.onnx        opset 13; input "image" float32 [N,1,28,28], output "logits" [N,10]
    models/samples/fashion_mnist_K.npy   3 test images, float32 [1,1,28,28], normalised as the model expects
    models/samples/README.md             their labels

The network (39k parameters):
    image [N,1,28,28], normalised: (pixel / 255 - 0.2860) / 0.3530
    Conv 3x3 1->16  + BatchNorm + ReLU, MaxPool 2x2        -> [N,16,14,14]
    Conv 3x3 16->32 + BatchNorm + ReLU, MaxPool 2x2        -> [N,32,7,7]
    residual block: x + BN(Conv(ReLU(BN(Conv(x))))), ReLU  -> [N,32,7,7]
    Flatten, Linear 1568->10                               -> logits [N,10]
The ONNX exporter folds each eval-mode BatchNorm into the Conv before it.

Usage: /usr/bin/python3 scripts/train_demo_cnn.py [--epochs 2] [--data DIR] [--out models]
Prints the FP32 test accuracy (10,000 test images) at the end.
"""

import argparse
import gzip
import os
import sys
import time

# Threads sleep instead of spinning while they wait: on a busy machine spinning
# OpenMP threads cost several times the useful work.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

MEAN, STD = 0.2860, 0.3530  # Fashion-MNIST training-set pixel mean and std (of pixel / 255)
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def read_idx(path):
    """Reads an IDX file (optionally gzip'd): magic 0x0000 <type> <ndim>, ndim big-endian uint32 dims, data."""
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {array.size} bytes of data for dims {dims}")
    return array.reshape(dims)


def load_split(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = (images.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(x[:, None, :, :].copy()), torch.from_numpy(labels.astype(np.int64))


def conv_bn(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = conv_bn(channels, channels)
        self.conv2 = conv_bn(channels, channels)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class FashionCnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(1, 16), nn.ReLU(), nn.MaxPool2d(2),
            conv_bn(16, 32), nn.ReLU(), nn.MaxPool2d(2),
            ResidualBlock(32),
        )
        self.classifier = nn.Linear(32 * 7 * 7, 10)

    def forward(self, image):
        return self.classifier(torch.flatten(self.features(image), 1))


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default="models")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    start = time.time()
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")

    model = FashionCnn()
    steps = args.epochs * ((len(train_x) + args.batch - 1) // args.batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    shuffle = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=shuffle)
        total_loss = 0.0
        for i in range(0, len(order), args.batch):
            idx = order[i:i + args.batch]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total_loss += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: train loss {total_loss / len(order):.4f}, "
              f"test accuracy {evaluate(model, test_x, test_y):.4f} ({time.time() - start:.0f} s)", flush=True)

    model.eval()
    accuracy = evaluate(model, test_x, test_y)
    os.makedirs(os.path.join(args.out, "samples"), exist_ok=True)
    model_path = os.path.join(args.out, "fashion_mnist_cnn.onnx")
    torch.onnx.export(model, (test_x[:1],), model_path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=13,
                      do_constant_folding=True)

    lines = ["# Sample test images for the demo model",
             "",
             "Images 0, 1, 2 of the Fashion-MNIST test set (t10k), float32 [1,1,28,28],",
             f"normalised as models/fashion_mnist_cnn.onnx expects: (pixel / 255 - {MEAN}) / {STD}.",
             "Written by scripts/train_demo_cnn.py. One line per file (scripts/demo.sh reads them):",
             ""]
    with torch.no_grad():
        predictions = model(test_x[:3]).argmax(1).tolist()
    for k in range(3):
        np.save(os.path.join(args.out, "samples", f"fashion_mnist_{k}.npy"), test_x[k:k + 1].numpy())
        label = int(test_y[k])
        lines.append(f"fashion_mnist_{k}.npy: label {label} ({CLASSES[label]}); "
                     f"the model (FP32, PyTorch) predicts {predictions[k]} ({CLASSES[predictions[k]]})")
    with open(os.path.join(args.out, "samples", "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")

    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {model_path} ({os.path.getsize(model_path)} bytes, {params} parameters)")
    print(f"FP32 test accuracy: {accuracy:.4f} ({int(round(accuracy * len(test_x)))}/{len(test_x)}), "
          f"{time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
