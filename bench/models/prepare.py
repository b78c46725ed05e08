#!/usr/bin/env python3
"""Prepares the end-to-end benchmark models (bench/models/compare.sh).

  prepare.py lstm OUT.onnx            an LSTM, 2 layers x 512 hidden, 50 steps, batch 1 (random weights, seed 0)
  prepare.py inputs MODEL.onnx DIR    one .npy per model input in DIR (symbolic dims: batch 1, anything else 128;
                                      float inputs random normal, integer inputs ones)
  prepare.py calib MODEL.onnx DIR N   N single-sample folders for calibration: DIR/s<i>.npy (single-input models)
  prepare.py shapes MODEL.onnx        prints kvant's --shape arguments for the shapes `inputs` writes
"""
import os
import sys

import numpy as np


def make_lstm(path):
    import torch

    torch.manual_seed(0)

    class Lstm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(512, 512, num_layers=2)

        def forward(self, x):
            return self.lstm(x)[0]

    model = Lstm().eval()
    torch.onnx.export(model, (torch.randn(50, 1, 512),), path, input_names=["x"], output_names=["y"], opset_version=13)


def input_specs(model_path):
    import onnx

    model = onnx.load(model_path, load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in inits:
            continue
        tensor = value.type.tensor_type
        dims = []
        for i, d in enumerate(tensor.shape.dim):
            dims.append(d.dim_value if d.dim_value > 0 else (1 if i == 0 else 128))
        specs.append((value.name, tensor.elem_type, dims))
    return specs


def write_inputs(model_path, out_dir, seed=0):
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, elem, dims in input_specs(model_path):
        if elem == 1:
            array = rng.standard_normal(dims).astype(np.float32)
        elif elem == 7:
            array = np.ones(dims, dtype=np.int64)
        else:
            raise SystemExit(f"prepare.py: input {name} has element type {elem}, not float or int64")
        np.save(os.path.join(out_dir, f"{name}.npy"), array)


def write_calib(model_path, out_dir, count):
    specs = input_specs(model_path)
    if len(specs) != 1 or specs[0][1] != 1:
        raise SystemExit("prepare.py calib: only single float-input models")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        np.save(os.path.join(out_dir, f"s{i}.npy"), rng.standard_normal(specs[0][2]).astype(np.float32))


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "lstm":
        make_lstm(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "inputs":
        write_inputs(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "shapes":
        print(" ".join(f"--shape {n}={'x'.join(str(d) for d in dims)}" for n, _, dims in input_specs(sys.argv[2])))
    elif len(sys.argv) == 5 and sys.argv[1] == "calib":
        write_calib(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
