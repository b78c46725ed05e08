#!/usr/bin/env python3
"""Writes a pre-norm transformer feed-forward block with outlier channels, for
the AWQ and SmoothQuant tests (quantize_test.sh, interop/llm_scaling_test.sh):

  x [batch, 16, 64] -> LayerNormalization(gamma, beta) -> MatMul W1 [64, 256]
    -> Relu -> MatMul W2 [256, 64] -> + x -> y

gamma is 40x larger on channels 3, 17 and 40 (W1's rows there 40x smaller),
as trained LLMs' norms are: the LayerNorm output has a few channels far
outside the others. Also writes block_calib.npy (48 samples [1, 16, 64]) and
block_test.npy ([16, 16, 64], held out).

  usage: make_prenorm_block.py DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper as oh, numpy_helper as nh

out = sys.argv[1] if len(sys.argv) > 1 else "."
rng = np.random.default_rng(0)
K, F, T = 64, 256, 16
gamma = (1 + 0.2 * rng.standard_normal(K)).astype(np.float32)
beta = (0.05 * rng.standard_normal(K)).astype(np.float32)
w1 = (rng.standard_normal((K, F)) / np.sqrt(K)).astype(np.float32)
w2 = (rng.standard_normal((F, K)) / np.sqrt(F)).astype(np.float32)
for c in (3, 17, 40):
    gamma[c] *= 40
    beta[c] *= 40
    w1[c, :] /= 40
nodes = [
    oh.make_node("LayerNormalization", ["x", "gamma", "beta"], ["h"], name="ln", axis=-1),
    oh.make_node("MatMul", ["h", "w1"], ["f"], name="fc1"),
    oh.make_node("Relu", ["f"], ["a"], name="act"),
    oh.make_node("MatMul", ["a", "w2"], ["p"], name="fc2"),
    oh.make_node("Add", ["p", "x"], ["y"], name="residual"),
]
g = oh.make_graph(nodes, "prenorm_block", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", T, K])],
                  [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", T, K])],
                  [nh.from_array(v, n) for n, v in (("gamma", gamma), ("beta", beta), ("w1", w1), ("w2", w2))])
onnx.save(oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)], ir_version=8), os.path.join(out, "block.onnx"))
x = rng.standard_normal((64, 1, T, K)).astype(np.float32)
np.save(os.path.join(out, "block_calib.npy"), x[:48])
np.save(os.path.join(out, "block_test.npy"), x[48:].reshape(16, T, K))
