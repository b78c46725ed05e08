"""kvant.inspect's statistics against `kvant inspect --json`, and a session's
plan and profile (kvant::Session::plan / set_profiling / profile) against
its describe() text and itself."""

import json
import subprocess

import numpy as np
import pytest

import kvant
from conftest import quantize_cli


@pytest.fixture(scope="module")
def int8_model(kvant_cli, model_path, calib_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8_plan") / "model.int8.onnx"
    quantize_cli(kvant_cli, model_path, path, "--calib", str(calib_dir))
    return path


def cli_inspect(kvant_cli, model, *args):
    out = subprocess.run([kvant_cli, "inspect", str(model), "--json", *args], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout)


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_inspect_statistics_are_the_commands(which, model_path, int8_model, kvant_cli):
    model = model_path if which == "fp32" else int8_model
    info = kvant.inspect(str(model))
    # (The command fixes the symbolic batch dim at 1 for its MACs, load does not: MACs are compared below.)
    expected = cli_inspect(kvant_cli, model)
    assert info["nodes"] == expected["nodes"]
    assert info["operators"] == expected["operators"]
    assert list(info["operators"]) == list(expected["operators"])  # most used first, the command's order
    assert info["opsets"] == expected["opsets"]
    assert info["ir_version"] == expected["ir_version"]
    assert info["producer_name"] == expected["producer_name"]
    assert info["parameters"] == expected["parameters"]["total"]
    assert info["parameter_bytes"] == expected["parameters"]["bytes"]
    assert info["initializer_bytes"] == expected["parameters"]["initializer_bytes"]
    assert [(g["dtype"], g["tensors"], g["elements"], g["bytes"]) for g in info["initializers"]] == [
        (g["dtype"], g["tensors"], g["elements"], g["bytes"]) for g in expected["parameters"]["by_dtype"]]
    assert info["quantization"] == expected["quantization"]
    assert info["quantization"] == ([] if which == "fp32" else ["QDQ"])
    assert [(l["node"], l["op_type"]) for l in info["layers"]] == [
        (l["name"], l["op"]) for l in expected["macs"]["layers"]]
    assert info["graph_inputs"][0]["shape"] == ["N", 1, 28, 28]  # symbolic: MACs not all known
    assert info["macs_unknown"] > 0


def test_model_stats_macs_with_fixed_shapes(model_path, kvant_cli):
    model = kvant._kvant.load(model_path, True, {"image": [2, 1, 28, 28]})
    stats = kvant._kvant.model_stats(model)
    expected = cli_inspect(kvant_cli, model_path, "--shape", "image=2x1x28x28")
    assert stats["macs"] == expected["macs"]["total"] > 0
    assert stats["macs_unknown"] == 0
    assert [l["macs"] for l in stats["layers"]] == [l["macs"] for l in expected["macs"]["layers"]]
    conv = next(l for l in stats["layers"] if l["op_type"] == "Conv")
    assert conv["output"]["shape"][0] == 2


def test_plan_before_and_after_the_first_run(model_path, samples):
    sess = kvant.InferenceSession(model_path)
    before = sess.plan()
    assert before["planned"] is False and before["arena_bytes"] == 0
    assert before["steps"] and all(not s["outputs"] for s in before["steps"])
    sess.run(None, {"image": samples[0]})
    plan = sess.plan()
    assert plan["planned"] is True and plan["threads"] == 1 and plan["isa"]
    assert len(plan["steps"]) == len(before["steps"])
    kinds = [s["kind"] for s in plan["steps"]]
    assert kinds.count("kernel") == plan["kernel_steps"]
    assert kinds.count("view") == plan["view_steps"]
    assert kinds.count("fallback") == plan["fallback_steps"]
    assert 0 < plan["arena_bytes"] <= plan["tensor_bytes"]
    # Every planned output lies inside the arena; the last is the logits, [1, 10].
    for step in plan["steps"]:
        for out in step["outputs"]:
            if out["arena_offset"] is not None:
                size = int(np.prod(out["shape"])) * np.dtype(out["dtype"]).itemsize
                assert 0 <= out["arena_offset"] and out["arena_offset"] + size <= plan["arena_bytes"], step
    assert plan["steps"][-1]["outputs"][-1]["shape"] == [1, 10]
    # describe() is the same plan as text: one line per step, kernel and node named.
    lines = sess.describe().splitlines()
    for i, step in enumerate(plan["steps"]):
        assert lines[1 + i].split()[0] == str(i)
        assert step["kernel"] in lines[1 + i] and step["node"] in lines[1 + i]


def test_profile_counts_runs_and_steps(int8_model, samples):
    sess = kvant.InferenceSession(str(int8_model))
    sess.run(None, {"image": samples[0]})
    sess.set_profiling(True)
    assert sess.profile()["runs"] == 0
    for _ in range(3):
        sess.run(None, {"image": samples[1]})
    profile = sess.profile()
    plan = sess.plan()
    assert profile["runs"] == 3
    assert [(s["kernel"], s["node"]) for s in profile["steps"]] == [(s["kernel"], s["node"]) for s in plan["steps"]]
    assert all(s["ms"] >= 0 for s in profile["steps"])
    assert profile["total_ms"] == pytest.approx(sum(s["ms"] for s in profile["steps"]))
    assert profile["total_ms"] > 0
    text = sess.describe_profile(top=2)
    assert text.startswith("profile over 3 runs") and "by kernel" in text
    sess.set_profiling(False)  # clears the totals
    sess.run(None, {"image": samples[2]})
    assert sess.profile()["runs"] == 0


def test_plan_and_profile_need_the_compiled_model(model_path):
    ref = kvant.InferenceSession(model_path, reference=True)
    for call in (ref.plan, ref.profile, lambda: ref.set_profiling(True)):
        with pytest.raises(kvant.UnsupportedError, match="reference executor"):
            call()
