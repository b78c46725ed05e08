#!/usr/bin/python3
"""Writes the hostile-input corpus (issue 15) into a folder and lists its cases.

    make_corpus.py OUT_DIR CNN_MODEL

Crafted models and data files: huge shapes, deflate bombs, FIFOs, symbolic
links, endless loops, NaN weights, deep nesting, odd names, contradicting
attributes. Each case is one kvant command line and what must happen:
"error" (exit 1, one line "kvant: error: ..." containing the needle), or
"ok" (exit 0; a needle, if any, must appear in stdout or stderr). Cases are
written to OUT_DIR/cases.json for run_corpus.py; "{D}" in an argument is
OUT_DIR. Nothing here needs the network; everything is generated.
"""
import gzip
import json
import os
import shutil
import struct
import sys
import zipfile
import zlib

import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper as nh

F = onnx.TensorProto.FLOAT
I64 = onnx.TensorProto.INT64

CASES = []


def case(name, expect, needle, *args, defect="", outputs=(), sanitized=True, limit_as=True):
    """expect: error | ok. outputs: paths (relative to D) the command may create."""
    CASES.append({"name": name, "expect": expect, "needle": needle, "args": list(args), "defect": defect,
                  "outputs": list(outputs), "sanitized": sanitized, "limit_as": limit_as})


def save(model, path):
    # Hostile models are invalid on purpose: written without the checker.
    with open(path, "wb") as f:
        f.write(model.SerializeToString())


def model(nodes, inputs, outputs, inits=(), opset=13, name="g"):
    g = oh.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)], producer_name="hostile")
    m.ir_version = 8
    return m


def npz_bytes(members, compress):
    """A zip of .npy members, each (name, bytes), deflated or stored."""
    import io
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def npy_header(descr, shape):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, repr(tuple(shape)))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


def zeros_npy_deflated(path, shape, member="image.npy"):
    """A .npz holding a float32 array of zeros of `shape`, deflated while it
    is written (the whole array is never in memory here either)."""
    n = int(np.prod(shape)) * 4
    head = npy_header("<f4", shape)
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    crc = zlib.crc32(head)
    parts = [comp.compress(head)]
    chunk = bytes(1 << 24)
    left = n
    while left:
        k = min(left, len(chunk))
        parts.append(comp.compress(chunk[:k]))
        crc = zlib.crc32(chunk[:k], crc)
        left -= k
    parts.append(comp.flush())
    data = b"".join(parts)
    size = len(head) + n
    name = member.encode()
    # zip64 sizes (NumPy writes them the same way) for members >= 4 GiB are
    # not needed here: the bombs stay below it.
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(data), size, len(name), 0,
                          0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    with open(path, "wb") as f:
        f.write(local + data + central + end)


def idx_gz_bomb(path, count):
    with gzip.open(path, "wb", compresslevel=6) as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, count, 28, 28))
        chunk = bytes(28 * 28 * 4096)
        left = count * 28 * 28
        while left:
            k = min(left, len(chunk))
            f.write(chunk[:k])
            left -= k


def main():
    d, cnn = sys.argv[1], sys.argv[2]
    os.makedirs(d, exist_ok=True)
    p = lambda *parts: os.path.join(d, *parts)  # noqa: E731
    D = "{D}"
    os.makedirs(p("out"), exist_ok=True)
    shutil.copy(cnn, p("cnn.onnx"))
    sample = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    os.makedirs(p("calib"), exist_ok=True)
    np.save(p("calib", "x_0.npy"), sample)
    np.save(p("x.npy"), sample)
    with open(p("victim.txt"), "w") as f:
        f.write("precious\n")

    # ---- defect 9: non-regular input files --------------------------------
    os.mkfifo(p("fifo.onnx"))
    os.mkfifo(p("fifo.npy"))
    os.mkfifo(p("fifo_labels.txt"))
    os.makedirs(p("fifo_calib"), exist_ok=True)
    os.mkfifo(p("fifo_calib", "x_0.npy"))
    os.makedirs(p("folder.onnx"), exist_ok=True)
    case("model_is_fifo", "error", "is a FIFO", "inspect", f"{D}/fifo.onnx", defect="9")
    case("model_is_dev_zero", "error", "is a character device", "inspect", "/dev/zero", defect="9,11")
    case("model_is_folder", "error", "is a folder", "inspect", f"{D}/folder.onnx", defect="9")
    case("calib_is_fifo", "error", "is a FIFO", "quantize", f"{D}/cnn.onnx", "-o", f"{D}/out/q_fifo.onnx", "--calib",
         f"{D}/fifo.npy", defect="9")
    case("calib_folder_holds_fifo", "error", "is a FIFO", "quantize", f"{D}/cnn.onnx", "-o", f"{D}/out/q_fifo2.onnx",
         "--calib", f"{D}/fifo_calib", defect="9")
    case("labels_is_fifo", "error", "is a FIFO", "eval", f"{D}/cnn.onnx", "--data", f"{D}/calib", "--labels",
         f"{D}/fifo_labels.txt", defect="9")
    case("run_input_is_fifo", "error", "is a FIFO", "run", f"{D}/cnn.onnx", "--input", f"{D}/fifo.npy", "-o",
         f"{D}/out/run_fifo", defect="9")

    # External data that is a FIFO, a folder, or a link out of the folder.
    w = nh.from_array(np.ones((4,), np.float32), "w")
    x_in = oh.make_tensor_value_info("x", F, [4])
    y_out = oh.make_tensor_value_info("y", F, [4])
    for kind in ("fifo", "dir", "escape"):
        folder = p(f"ext_{kind}")
        os.makedirs(folder, exist_ok=True)
        t = onnx.TensorProto()
        t.CopyFrom(w)
        t.ClearField("raw_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", "w.bin"), ("offset", "0"), ("length", "16")):
            e = t.external_data.add()
            e.key, e.value = k, v
        save(model([oh.make_node("Add", ["x", "w"], ["y"], name="add")], [x_in], [y_out], [t]), f"{folder}/model.onnx")
        if kind == "fifo":
            os.mkfifo(f"{folder}/w.bin")
        elif kind == "dir":
            os.makedirs(f"{folder}/w.bin", exist_ok=True)
        else:
            os.symlink("../victim.txt", f"{folder}/w.bin")
    case("external_data_is_fifo", "error", "is a FIFO", "inspect", f"{D}/ext_fifo/model.onnx", defect="9,11")
    case("external_data_is_folder", "error", "is a folder", "inspect", f"{D}/ext_dir/model.onnx", defect="9,11")
    case("external_data_link_escapes", "error", "escapes the model's folder", "inspect", f"{D}/ext_escape/model.onnx",
         defect="9")

    # A Loop that never stops, and one whose scan output grows without bound.
    cond_in = oh.make_tensor_value_info("cond_in", onnx.TensorProto.BOOL, [])
    it = oh.make_tensor_value_info("i", I64, [])
    v_in = oh.make_tensor_value_info("v_in", F, [1])
    body = oh.make_graph(
        [oh.make_node("Identity", ["cond_in"], ["cond_out"]), oh.make_node("Identity", ["v_in"], ["v_out"])], "body",
        [it, cond_in, v_in],
        [oh.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
         oh.make_tensor_value_info("v_out", F, [1])])
    loop = oh.make_node("Loop", ["", "c", "v0"], ["v"], name="forever", body=body)
    save(model([loop], [], [oh.make_tensor_value_info("v", F, [1])],
               [nh.from_array(np.array(True), "c"), nh.from_array(np.zeros(1, np.float32), "v0")]), p("loop.onnx"))
    case("loop_never_stops", "error", "still running after 20000 iterations", "run", f"{D}/loop.onnx", "-o", f"{D}/out/loop",
         "--max-loop-iterations", "20000", defect="9", outputs=["out/loop"])
    body2 = oh.make_graph(
        [oh.make_node("Identity", ["cond_in"], ["cond_out"]), oh.make_node("Identity", ["v_in"], ["v_out"]),
         oh.make_node("ConstantOfShape", ["shape"], ["scan"], value=nh.from_array(np.ones(1, np.float32)))],
        "body2", [it, cond_in, v_in],
        [oh.make_tensor_value_info("cond_out", onnx.TensorProto.BOOL, []),
         oh.make_tensor_value_info("v_out", F, [1]), oh.make_tensor_value_info("scan", F, [262144])],
        initializer=[nh.from_array(np.array([262144], np.int64), "shape")])
    save(model([oh.make_node("Loop", ["m", "c", "v0"], ["v", "scans"], name="growing", body=body2)], [],
               [oh.make_tensor_value_info("v", F, [1]), oh.make_tensor_value_info("scans", F, None)],
               [nh.from_array(np.array(10**9, np.int64), "m"), nh.from_array(np.array(True), "c"),
                nh.from_array(np.zeros(1, np.float32), "v0")]), p("loop_scan.onnx"))
    case("loop_scan_grows", "error", "memory budget", "run", f"{D}/loop_scan.onnx", "-o", f"{D}/out/loop_scan",
         "--max-memory", "256M", defect="8", outputs=["out/loop_scan"])

    # ---- defect 8: memory amplification -----------------------------------
    huge = 805306368  # 3.2 GB of float32 from 135 bytes
    out_v = oh.make_tensor_value_info("y", F, None)
    save(model([oh.make_node("ConstantOfShape", ["s"], ["y"], name="cos", value=nh.from_array(np.ones(1, np.float32)))],
               [], [out_v], [nh.from_array(np.array([huge], np.int64), "s")]), p("cos.onnx"))
    save(model([oh.make_node("Expand", ["one", "s"], ["y"], name="expand")], [], [out_v],
               [nh.from_array(np.ones(1, np.float32), "one"), nh.from_array(np.array([huge], np.int64), "s")]),
         p("expand.onnx"))
    save(model([oh.make_node("Tile", ["one", "s"], ["y"], name="tile")], [], [out_v],
               [nh.from_array(np.ones(1, np.float32), "one"), nh.from_array(np.array([huge], np.int64), "s")]),
         p("tile.onnx"))
    save(model([oh.make_node("Range", ["a", "b", "c"], ["y"], name="range")], [], [out_v],
               [nh.from_array(np.array(0, np.float32), "a"), nh.from_array(np.array(float(huge), np.float32), "b"),
                nh.from_array(np.array(1, np.float32), "c")]), p("range.onnx"))
    save(model([oh.make_node("Resize", ["one", "", "sc"], ["y"], name="resize")], [], [out_v],
               [nh.from_array(np.ones((1, 1, 1, 1), np.float32), "one"),
                nh.from_array(np.array([1, 1, 30000, 30000], np.float32), "sc")]), p("resize.onnx"))
    for name in ("cos", "expand", "tile", "range", "resize"):
        case(f"{name}_huge_output", "error", f'"{name}"', "run", f"{D}/{name}.onnx", "-o", f"{D}/out/{name}",
             "--max-memory", "1G", defect="8,11", outputs=[f"out/{name}"])
    case("cos_huge_under_prlimit", "error", "memory budget", "run", f"{D}/cos.onnx", "-o", f"{D}/out/cos2",
         defect="8", outputs=["out/cos2"], sanitized=False)
    case("cos_huge_compiled_and_reference", "error", "memory budget", "run", f"{D}/cos.onnx", "-o",
         f"{D}/out/cos3", "--reference", "--max-memory", "1G", defect="8", outputs=["out/cos3"])

    # Deflate bombs: 256 MB of zeros in ~250 KB.
    zeros_npy_deflated(p("bomb.npz"), (85598, 1, 28, 28))
    case("npz_bomb_over_budget", "error", "bomb.npz", "quantize", f"{D}/cnn.onnx", "-o", f"{D}/out/q_bomb.onnx",
         "--calib", f"{D}/bomb.npz", "--samples", "1", "--max-memory", "128M", defect="8")
    case("npz_bomb_streams", "ok", "calibration 1 samples", "quantize", f"{D}/cnn.onnx", "-o",
         f"{D}/out/q_bomb_ok.onnx", "--calib", f"{D}/bomb.npz", "--samples", "1", "--report-samples", "1",
         "--max-memory", "400M", defect="8", outputs=["out/q_bomb_ok.onnx"])
    idx_gz_bomb(p("bomb-images-idx3-ubyte.gz"), 342392)
    case("idx_gz_bomb_over_budget", "error", "bomb-images-idx3-ubyte.gz", "eval", f"{D}/cnn.onnx", "--data",
         f"{D}/bomb-images-idx3-ubyte.gz", "--max-memory", "128M", defect="8,11")
    with open(p("huge_header.npy"), "wb") as f:
        f.write(npy_header("<f4", (1 << 40,)) + b"\0" * 16)
    case("npy_header_claims_4_TB", "error", "huge_header.npy", "run", f"{D}/cnn.onnx", "--input",
         f"{D}/huge_header.npy", "-o", f"{D}/out/huge", defect="8")
    import warnings
    with warnings.catch_warnings(), open(p("dup.npz"), "wb") as f:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we want
        x_bytes = open(p("x.npy"), "rb").read()
        f.write(npz_bytes([("image.npy", x_bytes), ("image.npy", x_bytes)], False))
    case("npz_duplicate_members", "error", "two members", "quantize", f"{D}/cnn.onnx", "-o", f"{D}/out/q_dup.onnx",
         "--calib", f"{D}/dup.npz", defect="11")

    # ---- defects 3, 5: degenerate scales, NaN weights ---------------------
    np.save(p("tiny.npy"), (sample * 1e-44).astype(np.float32))
    case("calibration_near_1e-44", "ok", "raised to the minimum", "quantize", f"{D}/cnn.onnx", "-o",
         f"{D}/out/q_tiny.onnx", "--calib", f"{D}/tiny.npy", defect="3", outputs=["out/q_tiny.onnx"])
    m = onnx.load(p("cnn.onnx"))
    init = [i for i in m.graph.initializer if len(i.dims) == 4][0]
    a = nh.to_array(init).copy()
    a.flat[0] = np.nan
    init.CopyFrom(nh.from_array(a, init.name))
    save(m, p("nan_weight.onnx"))
    for mode in ("dynamic", "weight-only"):
        case(f"nan_weight_{mode}", "error", f'initializer "{init.name}"', "quantize", f"{D}/nan_weight.onnx", "-o",
             f"{D}/out/q_nan_{mode}.onnx", "--mode", mode, defect="5")

    # ---- defect 10: one validation for both executors ---------------------
    x4 = oh.make_tensor_value_info("x", F, [1, 1, 8, 8])
    y4 = oh.make_tensor_value_info("y", F, None)
    np.save(p("x8.npy"), np.ones((1, 1, 8, 8), np.float32))
    wc = nh.from_array(np.ones((1, 1, 3, 3), np.float32), "W")
    save(model([oh.make_node("Conv", ["x", "W"], ["y"], name="conv", kernel_shape=[5, 5])], [x4], [y4], [wc]),
         p("conv_kernel.onnx"))
    save(model([oh.make_node("Conv", ["x", "W"], ["y"], name="conv", strides=[1 << 62, 1])], [x4], [y4], [wc]),
         p("conv_stride.onnx"))
    xs = oh.make_tensor_value_info("x", F, [2, 1, 4])
    for hs, tag in ((5, "5"), (1 << 40, "2p40")):
        save(model([oh.make_node("LSTM", ["x", "W", "R"], ["y"], name="lstm", hidden_size=hs)], [xs], [y4],
                   [nh.from_array(np.ones((1, 16, 4), np.float32), "W"),
                    nh.from_array(np.ones((1, 16, 4), np.float32), "R")]), p(f"lstm_{tag}.onnx"))
    np.save(p("xs.npy"), np.ones((2, 1, 4), np.float32))
    save(model([oh.make_node("DequantizeLinear", ["q", "s"], ["y"], name="dq")], [], [y4],
               [nh.from_array(np.ones((2, 2), np.int8), "q"), nh.from_array(np.ones((2, 2), np.float32), "s")]),
         p("dq_scale_2d.onnx"))
    # Degenerate scales in a model given to run: zero, subnormal; and normal
    # scales whose product (the accumulator's scale) underflows.
    for tag, s in (("zero", 0.0), ("subnormal", 3.7e-41)):
        save(model([oh.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                    oh.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")], [x4], [y4],
                   [nh.from_array(np.array(s, np.float32), "s"), nh.from_array(np.array(0, np.uint8), "z")]),
             p(f"scale_{tag}.onnx"))
    tiny = [nh.from_array(np.array(1e-30, np.float32), "xs"), nh.from_array(np.array(0, np.uint8), "xz"),
            nh.from_array(np.ones((1, 1, 3, 3), np.int8), "wq"), nh.from_array(np.array(1e-30, np.float32), "ws"),
            nh.from_array(np.array(0, np.int8), "wz"), nh.from_array(np.array([1.0], np.float32), "b")]
    save(model([oh.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="xq"),
                oh.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="xd"),
                oh.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wd"),
                oh.make_node("Conv", ["xd", "wd", "b"], ["y"], name="conv")], [x4], [y4], tiny),
         p("scale_product_underflows.onnx"))
    for ref in ("", "--reference"):
        tag = "reference" if ref else "compiled"
        extra = [ref] if ref else []
        for s in ("zero", "subnormal"):
            case(f"scale_{s}_{tag}", "error", "scales must be finite, positive", "run", f"{D}/scale_{s}.onnx",
                 "--input", f"{D}/x8.npy", "-o", f"{D}/out/s_{s}_{tag}", *extra, defect="3,10")
        case(f"scale_product_underflows_{tag}", "ok", "", "run", f"{D}/scale_product_underflows.onnx", "--input",
             f"{D}/x8.npy", "-o", f"{D}/out/s_under_{tag}", *extra, defect="3,10", outputs=[f"out/s_under_{tag}"])
    for ref in ("", "--reference"):
        tag = "reference" if ref else "compiled"
        extra = [ref] if ref else []
        case(f"conv_kernel_shape_contradicts_W_{tag}", "error", "kernel_shape", "run", f"{D}/conv_kernel.onnx",
             "--input", f"{D}/x8.npy", "-o", f"{D}/out/ck_{tag}", *extra, defect="10")
        case(f"conv_stride_2p62_{tag}", "error", "strides", "run", f"{D}/conv_stride.onnx", "--input",
             f"{D}/x8.npy", "-o", f"{D}/out/cs_{tag}", *extra, defect="10")
        for t in ("5", "2p40"):
            case(f"lstm_hidden_size_{t}_{tag}", "error", "hidden_size", "run", f"{D}/lstm_{t}.onnx", "--input",
                 f"{D}/xs.npy", "-o", f"{D}/out/lstm_{t}_{tag}", *extra, defect="10")
        case(f"dq_scale_rank_2_{tag}", "error", "scale", "run", f"{D}/dq_scale_2d.onnx", "-o",
             f"{D}/out/dq_{tag}", *extra, defect="10")

    # ---- defect 11: messages ----------------------------------------------
    # Only the then-branch nests (both would double the file at every level).
    # Values are named per level: a subgraph may not redefine an outer name.
    def leaf(level):
        return oh.make_graph([oh.make_node("Identity", ["c"], [f"l{level}"])], f"leaf{level}", [],
                             [oh.make_tensor_value_info(f"l{level}", onnx.TensorProto.BOOL, [])])
    inner = leaf(0)
    for level in range(32):
        inner = oh.make_graph([oh.make_node("If", ["c"], [f"r{level}"], name=f"if{level}", then_branch=inner,
                                            else_branch=leaf(level + 1))], f"b{level}", [],
                              [oh.make_tensor_value_info(f"r{level}", onnx.TensorProto.BOOL, [])])
    save(model([oh.make_node("If", ["c"], ["r"], name="top", then_branch=inner, else_branch=leaf(99))], [],
               [oh.make_tensor_value_info("r", onnx.TensorProto.BOOL, [])], [nh.from_array(np.array(True), "c")]),
         p("deep_if.onnx"))
    case("if_nested_32_deep", "error", "nest more than 16 levels", "inspect", f"{D}/deep_if.onnx", defect="11")
    evil = "evil\x1b[31m\nname\x00end"
    save(model([oh.make_node("Conv", ["x", "W"], ["y"], name=evil, kernel_shape=[5, 5])], [x4], [y4], [wc]),
         p("odd_names.onnx"))
    case("control_characters_in_names", "error", "evil\\x1b[31m\\x0aname\\x00end", "run", f"{D}/odd_names.onnx",
         "--input", f"{D}/x8.npy", "-o", f"{D}/out/odd", defect="11")
    case("batch_zero", "error", "--batch", "inspect", f"{D}/cnn.onnx", "--batch", "0", defect="11")
    os.makedirs(p("trunc_jpeg"), exist_ok=True)
    jpeg = bytes.fromhex(
        "ffd8ffe000104a46494600010100000100010000ffdb004300080606070605080707070909080a0c140d0c0b0b0c1912130f141d1a1f1e1d1a"
        "1c1c20242e2720222c231c1c2837292c30313434341f27393d38323c2e333432ffc0000b080010001001011100ffc4001f00000105010101"
        "01010100000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d01020300041105122131410613"
        "516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a53545556"
        "5758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2"
        "c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda0008010100003f00")
    with open(p("trunc_jpeg", "a.jpg"), "wb") as f:
        f.write(jpeg + bytes([0xF0, 0x1F]))  # a few scan bytes, then the file ends: no EOI marker
    case("truncated_jpeg", "error", "truncated", "quantize", f"{D}/cnn.onnx", "-o", f"{D}/out/q_jpeg.onnx",
         "--calib", f"{D}/trunc_jpeg", "--preprocess", "resize=28,crop=28", defect="11")
    np.save(p("labels_big.npy"), np.array([12], np.int64))
    case("label_beyond_classes", "error", "class", "eval", f"{D}/cnn.onnx", "--data", f"{D}/calib", "--labels",
         f"{D}/labels_big.npy", defect="11")

    # ---- defects 1, 2: outputs --------------------------------------------
    os.makedirs(p("out_links"), exist_ok=True)
    os.symlink("../victim.txt", p("out_links", "logits.npy"))
    case("run_output_is_symlink", "error", "symbolic link", "run", f"{D}/cnn.onnx", "--input", f"{D}/x.npy", "-o",
         f"{D}/out_links", "--force", defect="1,2")
    os.mkfifo(p("out", "fifo_target.onnx"))
    case("quantize_output_is_fifo", "error", "is a FIFO", "quantize", f"{D}/cnn.onnx", "-o",
         f"{D}/out/fifo_target.onnx", "--mode", "dynamic", "--force", defect="2")
    case("report_output_is_fifo", "error", "is a FIFO", "quantize", f"{D}/cnn.onnx", "-o", f"{D}/out/q_rep.onnx",
         "--mode", "dynamic", "--report", f"{D}/out/fifo_target.onnx", defect="2")
    os.makedirs(p("planted"), exist_ok=True)
    # The old writers used "<out>.kvant-tmp-<pid>": run_corpus.py plants a link
    # to the victim under each of the next 4000 pids just before this case
    # runs ("plant"), so kvant's own pid is among them.
    case("planted_links_at_old_temp_names", "ok", "% of FP32", "quantize", f"{D}/cnn.onnx", "-o",
         f"{D}/planted/q.onnx", "--mode", "dynamic", defect="1", outputs=["planted/q.onnx"])
    CASES[-1]["plant"] = "planted/q.onnx.kvant-tmp-"

    # ---- defect 7 ------------------------------------------------------------
    case("threads_1000", "error", "--threads 1000", "bench", f"{D}/cnn.onnx", "--threads", "1000", "--runs", "1",
         defect="7")

    with open(p("cases.json"), "w") as f:
        json.dump(CASES, f, indent=1)


if __name__ == "__main__":
    main()
