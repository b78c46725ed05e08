#!/usr/bin/python3
"""Helpers for cli_test.sh: ONNX test cases <-> .npy files, and odd .npy files.

  onnx_case.py prepare CASE_DIR WORK_DIR   write WORK_DIR/<input>.npy, print the --input arguments
  onnx_case.py check CASE_DIR OUT_DIR      compare OUT_DIR/<output>.npy with output_K.pb
  onnx_case.py symbolic MODEL              write y = x + c with x: float32[batch, 4]
  onnx_case.py symbolic2 MODEL             the same with x: float32[batch, n]
  onnx_case.py npy KIND PATH               write a special .npy file (see KINDS)
"""
import re
import sys

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh


def graph_inputs(model):
    inits = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in inits]


def sanitize(name):
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return base if base and base[0] != "." else "output_" + base


def prepare(case_dir, work):
    model = onnx.load(f"{case_dir}/model.onnx")
    names = graph_inputs(model)
    for k, name in enumerate(names):
        t = onnx.TensorProto()
        with open(f"{case_dir}/test_data_set_0/input_{k}.pb", "rb") as f:
            t.ParseFromString(f.read())
        path = f"{work}/{sanitize(name)}.npy"
        np.save(path, nh.to_array(t))
        print(f"--input={name}={path}")


def check(case_dir, out_dir):
    model = onnx.load(f"{case_dir}/model.onnx")
    for k, out in enumerate(model.graph.output):
        t = onnx.TensorProto()
        with open(f"{case_dir}/test_data_set_0/output_{k}.pb", "rb") as f:
            t.ParseFromString(f.read())
        want = nh.to_array(t)
        got = np.load(f"{out_dir}/{sanitize(out.name)}.npy")
        if got.dtype != want.dtype or got.shape != want.shape:
            sys.exit(f"{out.name}: got {got.dtype}{got.shape}, want {want.dtype}{want.shape}")
        if want.dtype.kind == "f":
            ok = np.allclose(got, want, rtol=1e-3, atol=1e-7, equal_nan=True)
        else:
            ok = np.array_equal(got, want)
        if not ok:
            sys.exit(f"{out.name}: values differ (max abs diff {np.max(np.abs(got - want))})")


def symbolic(path, inner=4):
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", inner])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", inner])
    c = nh.from_array(np.array([1, 2, 3, 4], dtype=np.float32), "c")
    graph = oh.make_graph([oh.make_node("Add", ["x", "c"], ["y"], name="add")], "sym", [x], [y], [c])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13)], producer_name="cli_test")
    model.ir_version = 7
    onnx.save(model, path)


def x345(dtype=np.float32):
    return np.arange(60, dtype=dtype).reshape(3, 4, 5) / 10


KINDS = {
    "good": lambda: x345(),
    "f64": lambda: x345(np.float64),
    "rank2": lambda: np.zeros((3, 4), np.float32),
    "dim2": lambda: np.zeros((3, 4, 6), np.float32),
    "batch3": lambda: np.arange(12, dtype=np.float32).reshape(3, 4),
}


def special(kind, path):
    if kind in KINDS:
        np.save(path, KINDS[kind]())
    elif kind in ("nan", "inf"):
        a = x345()
        a[1, 2, 3] = np.nan if kind == "nan" else np.inf
        np.save(path, a)
    elif kind == "fortran":
        np.save(path, np.asfortranarray(x345()))
    elif kind == "bigendian":
        np.save(path, x345().astype(">f4"))
    elif kind == "truncated":
        np.save(path, x345())
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:-7])
    elif kind == "text":
        with open(path, "w") as f:
            f.write("1,2,3\n")
    else:
        sys.exit(f"unknown kind {kind}")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "prepare":
        prepare(sys.argv[2], sys.argv[3])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3])
    elif cmd == "symbolic":
        symbolic(sys.argv[2])
    elif cmd == "symbolic2":
        symbolic(sys.argv[2], inner="n")
    elif cmd == "npy":
        special(sys.argv[2], sys.argv[3])
    elif cmd == "load":  # print an .npy as a flat list (for spot checks)
        print(np.load(sys.argv[2]).ravel().tolist())
    else:
        sys.exit(f"unknown command {cmd}")
