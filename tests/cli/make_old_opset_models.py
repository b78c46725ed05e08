#!/usr/bin/python3
"""Writes the models of opset_test.sh: a small CNN as exporters wrote it at
opsets 9 and 11, and calibration samples.

    make_old_opset_models.py OUT_DIR

OUT_DIR/cnn_opset9.onnx, OUT_DIR/cnn_opset11.onnx (the same network and
weights, in each opset's form), OUT_DIR/calib/sample_K.npy (8 samples) and
OUT_DIR/input.npy (one more); also OUT_DIR/custom_op.onnx (a com.example.Foo
node between Convs, opset 13), OUT_DIR/relu_only.onnx (nothing to quantize)
and OUT_DIR/calib8/ (samples for custom_op.onnx). The network, x float32[1, 3, 16, 16]:

    Conv 3->8 k3 p1 -> BatchNormalization -> Relu -> Pad 1 (attribute at 9,
    input at 11) -> Conv 8->8 k3 -> Clip 0..6 (attributes at 9, inputs at 11)
    -> MaxPool 2 -> Upsample x2 (9) / Resize nearest x2 (11) -> Split [4, 4]
    along channels (attribute 'split') -> Add -> Dropout (ratio attribute)
    -> "spatial": Softmax(axis = 2) at the old opset, i.e. over H*W
    -> Conv 4->10 k16 -> Squeeze axes [2, 3] (attribute) -> Gemm 10->5
    -> "probs": Softmax (default axis 1)
Weights are random (seeded): the test compares outputs, not accuracy.
"""
import os
import sys

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh


def build(opset, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    inits = []

    def w(name, *shape, scale=0.3):
        inits.append(nh.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name, array):
        inits.append(nh.from_array(np.asarray(array), name))
        return name

    nodes = [
        oh.make_node("Conv", ["x", w("c1_w", 8, 3, 3, 3), w("c1_b", 8)], ["c1"], "conv1", pads=[1, 1, 1, 1],
                     kernel_shape=[3, 3]),
        oh.make_node("BatchNormalization",
                     ["c1", const("bn_s", (1 + 0.1 * rng.standard_normal(8)).astype(np.float32)),
                      w("bn_b", 8, scale=0.1), w("bn_m", 8, scale=0.1),
                      const("bn_v", (0.5 + rng.random(8)).astype(np.float32))], ["bn"], "bn1", epsilon=1e-5),
        oh.make_node("Relu", ["bn"], ["r1"], "relu1"),
    ]
    pads = [0, 0, 1, 1, 0, 0, 1, 1]
    if opset < 11:
        nodes.append(oh.make_node("Pad", ["r1"], ["p1"], "pad1", pads=pads, mode="constant", value=0.0))
    else:
        nodes.append(oh.make_node("Pad", ["r1", const("pads", np.array(pads, np.int64))], ["p1"], "pad1",
                                  mode="constant"))
    nodes.append(oh.make_node("Conv", ["p1", w("c2_w", 8, 8, 3, 3, scale=0.15), w("c2_b", 8)], ["c2"], "conv2",
                              kernel_shape=[3, 3]))
    if opset < 11:
        nodes.append(oh.make_node("Clip", ["c2"], ["k"], "clip", min=0.0, max=6.0))
    else:
        nodes.append(oh.make_node("Clip", ["c2", const("lo", np.float32(0)), const("hi", np.float32(6))], ["k"],
                                  "clip"))
    nodes.append(oh.make_node("MaxPool", ["k"], ["mp"], "pool", kernel_shape=[2, 2], strides=[2, 2]))
    scales = const("scales", np.array([1, 1, 2, 2], np.float32))
    if opset < 10:
        nodes.append(oh.make_node("Upsample", ["mp", scales], ["up"], "up", mode="nearest"))
    else:
        roi = const("roi", np.array([], np.float32))
        nodes.append(oh.make_node("Resize", ["mp", roi, scales], ["up"], "up", mode="nearest",
                                  coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
    nodes += [
        oh.make_node("Split", ["up"], ["s0", "s1"], "split", axis=1, split=[4, 4]),
        oh.make_node("Add", ["s0", "s1"], ["sum"], "add"),
        oh.make_node("Dropout", ["sum"], ["d"], "drop", ratio=0.1),
        oh.make_node("Softmax", ["d"], ["spatial"], "spatial_softmax", axis=2),
        oh.make_node("Conv", ["d", w("c3_w", 10, 4, 16, 16, scale=0.05), w("c3_b", 10)], ["c3"], "conv3",
                     kernel_shape=[16, 16]),
        oh.make_node("Squeeze", ["c3"], ["sq"], "squeeze", axes=[2, 3]),
        oh.make_node("Gemm", ["sq", w("fc_w", 5, 10), w("fc_b", 5)], ["logits"], "fc", transB=1),
        oh.make_node("Softmax", ["logits"], ["probs"], "softmax"),
    ]
    graph = oh.make_graph(nodes, f"cnn_opset{opset}", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                                  [1, 3, 16, 16])],
                          [oh.make_tensor_value_info("probs", onnx.TensorProto.FLOAT, [1, 5]),
                           oh.make_tensor_value_info("spatial", onnx.TensorProto.FLOAT, [1, 4, 16, 16])], inits)
    model = oh.make_model(graph, producer_name="old-exporter", opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 4 if opset < 11 else 6
    onnx.checker.check_model(model)
    return model


def custom_op_model():
    """x[1, 3, 8, 8] -> conv_a -> com.example.Foo -> conv_b -> "after";
    conv_a -> conv_c -> "beside". Foo is a custom operator nobody has a
    kernel for: static calibration cannot run it or conv_b."""
    rng = np.random.default_rng(2)
    inits = [nh.from_array((rng.standard_normal(s) * 0.3).astype(np.float32), n)
             for n, s in (("wa", (4, 3, 3, 3)), ("wb", (4, 4, 3, 3)), ("wc", (2, 4, 1, 1)))]
    nodes = [
        oh.make_node("Conv", ["x", "wa"], ["a"], "conv_a", pads=[1, 1, 1, 1]),
        oh.make_node("Foo", ["a"], ["f"], "foo", domain="com.example"),
        oh.make_node("Conv", ["f", "wb"], ["after"], "conv_b", pads=[1, 1, 1, 1]),
        oh.make_node("Conv", ["a", "wc"], ["beside"], "conv_c"),
    ]
    graph = oh.make_graph(nodes, "custom_op", [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])],
                          [oh.make_tensor_value_info("after", onnx.TensorProto.FLOAT, [1, 4, 8, 8]),
                           oh.make_tensor_value_info("beside", onnx.TensorProto.FLOAT, [1, 2, 8, 8])], inits)
    return oh.make_model(graph, producer_name="custom-exporter",
                         opset_imports=[oh.make_opsetid("", 13), oh.make_opsetid("com.example", 1)])


def relu_only_model():
    """y = Relu(x): nothing any mode quantizes."""
    graph = oh.make_graph([oh.make_node("Relu", ["x"], ["y"], "relu")], "relu_only",
                          [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 16, 16])],
                          [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 16, 16])])
    return oh.make_model(graph, producer_name="custom-exporter", opset_imports=[oh.make_opsetid("", 11)])


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "calib"), exist_ok=True)
    for opset in (9, 11):
        onnx.save(build(opset), os.path.join(out, f"cnn_opset{opset}.onnx"))
    onnx.save(custom_op_model(), os.path.join(out, "custom_op.onnx"))
    onnx.save(relu_only_model(), os.path.join(out, "relu_only.onnx"))
    rng = np.random.default_rng(1)
    os.makedirs(os.path.join(out, "calib8"), exist_ok=True)
    for k in range(4):
        np.save(os.path.join(out, "calib8", f"sample_{k}.npy"), rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    for k in range(8):
        np.save(os.path.join(out, "calib", f"sample_{k}.npy"), rng.standard_normal((1, 3, 16, 16)).astype(np.float32))
    np.save(os.path.join(out, "input.npy"), rng.standard_normal((1, 3, 16, 16)).astype(np.float32))


if __name__ == "__main__":
    main()
