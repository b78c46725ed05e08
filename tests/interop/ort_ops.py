#!/usr/bin/env python3
"""Counts the operators of a graph ONNX Runtime saved after its optimizations
(scripts/ort_run.js --save-optimized) and lists the compute nodes it left in
float: Conv, Gemm, MatMul and Add in any domain (ONNX, com.microsoft's
FusedConv/FusedGemm/FusedMatMul, com.microsoft.nchwc's Conv). Quantized files
should have none: their compute runs as QLinearConv, QGemm, QLinearMatMul,
QLinearAdd, ...

  ort_ops.py OPTIMIZED.onnx   prints "ops: {...}" and "float: N [names]";
                              exits 1 when N > 0, 2 on a bad file
"""
import collections
import sys

FLOAT_COMPUTE = {"Conv", "Gemm", "MatMul", "Add", "FusedConv", "FusedGemm", "FusedMatMul"}


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        import onnx

        model = onnx.load(sys.argv[1], load_external_data=False)
    except Exception as e:  # noqa: BLE001 - any load failure is a bad file here
        print(f"ort_ops.py: cannot read {sys.argv[1]}: {e}", file=sys.stderr)
        return 2
    ops = collections.Counter()
    left = []
    for n in model.graph.node:
        key = f"{n.domain}:{n.op_type}" if n.domain else n.op_type
        ops[key] += 1
        if n.op_type in FLOAT_COMPUTE:
            left.append(f"{n.name or n.output[0]} ({key})")
    print("ops:", ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    print(f"float: {len(left)}" + (" [" + ", ".join(left[:8]) + (", ..." if len(left) > 8 else "") + "]" if left else ""))
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
