#!/usr/bin/python3
"""The two attention MatMuls of a static-quantized BERT-base layer (12 heads,
seq 128, head size 64) as small QDQ models, for timing the compiled
activation x activation MatMul (runtime/steps_qmatmul.cc) against the float
one it replaces:

    /usr/bin/python3 scripts/attention_qdq.py [OUT_DIR]   (default build/attn)
    build/release/kvant bench build/attn/qk.onnx --runs 100 --profile

Each model: float a, b -> QuantizeLinear -> DequantizeLinear (uint8, one
scale each) -> MatMul -> QuantizeLinear -> DequantizeLinear -> y.
qk.onnx: a [1, 12, 128, 64] x b [1, 12, 64, 128] (scores, Q K^T);
av.onnx: a [1, 12, 128, 128] x b [1, 12, 128, 64] (probabilities x V).
"""
import os
import sys

import onnx
from onnx import TensorProto, helper


def model(a_shape, b_shape):
    inits = []
    for name, scale in (("a", 0.05), ("b", 0.04), ("y", 0.5)):
        inits.append(helper.make_tensor(name + "_s", TensorProto.FLOAT, [], [scale]))
        inits.append(helper.make_tensor(name + "_z", TensorProto.UINT8, [], [128]))
    nodes = [
        helper.make_node("QuantizeLinear", ["a", "a_s", "a_z"], ["aq"]),
        helper.make_node("QuantizeLinear", ["b", "b_s", "b_z"], ["bq"]),
        helper.make_node("DequantizeLinear", ["aq", "a_s", "a_z"], ["ad"]),
        helper.make_node("DequantizeLinear", ["bq", "b_s", "b_z"], ["bd"]),
        helper.make_node("MatMul", ["ad", "bd"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "y_s", "y_z"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "y_s", "y_z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "attention_matmul",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, a_shape),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, b_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("build", "attn")
    os.makedirs(out, exist_ok=True)
    onnx.save(model([1, 12, 128, 64], [1, 12, 64, 128]), os.path.join(out, "qk.onnx"))
    onnx.save(model([1, 12, 128, 128], [1, 12, 128, 64]), os.path.join(out, "av.onnx"))


if __name__ == "__main__":
    main()
