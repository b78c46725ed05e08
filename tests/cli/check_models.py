#!/usr/bin/env python3
"""Checks every ONNX model kvant wrote under a folder (issue 15, defect 4).

    check_models.py DIR [ROOT]

A model counts as written by kvant when its producer_name is "kvant". Each
one must pass onnx.checker.check_model(..., full_check=True) at its declared
opset. Debian's onnx 1.12 knows opsets up to 17; a model declaring a newer
one (INT4 weight-only QDQ needs opset 21) is instead loaded by ONNX Runtime
1.30 (tests/cli/ort_check.js, from ROOT/node_modules), whose graph
resolution runs the same schema and type checks with current opsets.
Prints one line per failure and a summary; exit status 1 on any failure or
when no model was found.
"""
import os
import subprocess
import sys

import onnx
import onnx.checker
import onnx.defs


def main():
    folder = sys.argv[1]
    root = sys.argv[2] if len(sys.argv) > 2 else os.path.join(os.path.dirname(__file__), "..", "..")
    newest = onnx.defs.onnx_opset_version()
    checked, by_ort, failures = 0, [], []
    for dirpath, _, files in os.walk(folder):
        for name in sorted(files):
            if not name.endswith(".onnx"):
                continue
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue  # links, FIFOs: tests plant them on purpose
            try:
                model = onnx.load(path, load_external_data=False)
            except Exception:  # noqa: BLE001 - not a model (tests write garbage on purpose)
                continue
            if model.producer_name != "kvant":
                continue
            opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
            if opset > newest:
                by_ort.append(path)
                continue
            try:
                onnx.checker.check_model(path, full_check=True)
                checked += 1
            except Exception as e:  # noqa: BLE001
                failures.append(f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    if by_ort:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ort_check.js")
        env = dict(os.environ, NODE_PATH=os.path.join(os.path.abspath(root), "node_modules"))
        r = subprocess.run(["node", script, *by_ort], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            failures.extend(line for line in (r.stdout + r.stderr).splitlines() if line.strip())
    for f in failures:
        print(f"check_models: FAIL {f}")
    total = checked + len(by_ort)
    print(f"check_models: {total} kvant model(s) in {folder}: {checked} by onnx.checker full_check (opset <= {newest}), "
          f"{len(by_ort)} by ONNX Runtime (opset > {newest}); {len(failures)} failed")
    sys.exit(1 if failures or total == 0 else 0)


if __name__ == "__main__":
    main()
