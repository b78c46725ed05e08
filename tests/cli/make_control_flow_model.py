#!/usr/bin/python3
"""Writes the control-flow model of opset_test.sh (needs torch; exit 77
without it):

    make_control_flow_model.py OUT_DIR

OUT_DIR/if_lstm.onnx: torch.jit.script of
    y = out(lstm(x))            if flag.sum() > 0
    y = out(relu(fc(conv(x))))  otherwise
exported at opset 11, so the LSTM, the Conv1d and the Linear sit inside the
If's branches (their weights are main-graph initializers; PyTorch reorders
the LSTM gates with Slice/Concat inside the branch). Also OUT_DIR/x.npy,
OUT_DIR/on.npy, OUT_DIR/off.npy. Weights are random (seeded).
"""
import os
import sys
import warnings

import numpy as np

try:
    import torch
except ImportError:
    sys.exit(77)


class IfLstm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(8, 16, batch_first=True)
        self.fc = torch.nn.Linear(8, 16)
        self.conv = torch.nn.Conv1d(8, 8, 3, padding=1)
        self.out = torch.nn.Linear(16, 4)

    def forward(self, x, flag):
        if bool(flag.sum() > 0):
            y, _ = self.lstm(x)
        else:
            z = self.conv(x.transpose(1, 2)).transpose(1, 2)
            y = torch.relu(self.fc(z))
        return self.out(y)


def main():
    out = sys.argv[1]
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model = torch.jit.script(IfLstm().eval())
    x = torch.randn(1, 5, 8)
    torch.onnx.export(model, (x, torch.ones(1)), os.path.join(out, "if_lstm.onnx"), opset_version=11,
                      input_names=["x", "flag"], output_names=["y"])
    np.save(os.path.join(out, "x.npy"), x.numpy())
    np.save(os.path.join(out, "on.npy"), np.ones(1, np.float32))
    np.save(os.path.join(out, "off.npy"), np.zeros(1, np.float32))


if __name__ == "__main__":
    main()
