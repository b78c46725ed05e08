"""kvant.sensitivity: the ranking `kvant sensitivity --json` writes for the
same data (built-in metric, labels from the reader), a Python metric that
ranks as the command's --metric-cmd with the same formula, and what the
metric raises raised again (no crash)."""

import json
import math
import subprocess

import numpy as np
import pytest

import kvant
from conftest import SAMPLES, NpyReader

LABELS = [9, 2, 1]


class LabelledReader(NpyReader):
    """get_next() -> (feed dict, label), the labelled form kvant.sensitivity takes."""

    def __init__(self, paths, labels):
        super().__init__(paths)
        self._labels = iter(labels)

    def get_next(self):
        feed = super().get_next()
        return None if feed is None else (feed, next(self._labels))


def cli_json(kvant_cli, model_path, calib_dir, tmp_path, *args):
    out = tmp_path / "s.json"
    subprocess.run([kvant_cli, "sensitivity", model_path, "--calib", str(calib_dir), "--json", str(out), "-f", *args],
                   check=True, capture_output=True, text=True)
    return json.loads(out.read_text())


def test_ranking_equals_the_commands(model_path, calib_dir, kvant_cli, tmp_path):
    np.save(tmp_path / "labels.npy", np.array(LABELS, np.int64))
    cli = cli_json(kvant_cli, model_path, calib_dir, tmp_path, "--labels", str(tmp_path / "labels.npy"),
                   "--leave-one-out")
    r = kvant.sensitivity(model_path, NpyReader(SAMPLES), LabelledReader(SAMPLES, LABELS), leave_one_out=True)
    assert r["metric"] == cli["metric"] == "top1" and r["samples"] == 3
    assert [l["node"] for l in r["layers"]] == [l["node"] for l in cli["layers"]]
    for mine, theirs in zip(r["layers"], cli["layers"]):
        assert mine["value"] == pytest.approx(theirs["only"]["value"], rel=1e-12)
        assert mine["output_sqnr_db"] == pytest.approx(theirs["only"]["output_sqnr_db"], rel=1e-9)
        assert mine["all_but"] == pytest.approx(theirs["all_but"]["value"], rel=1e-12)
        # Every score the command writes, in the report too.
        assert mine["scores"] == pytest.approx(theirs["only"], rel=1e-12)
        assert mine["all_but_scores"] == pytest.approx(theirs["all_but"], rel=1e-12)
        assert mine["partial_nodes"] == theirs["partial_nodes"] > 0
    assert r["quantized_scores"] == pytest.approx(cli["quantized"], rel=1e-12)
    fp32 = dict(r["fp32_scores"])
    assert math.isinf(fp32.pop("output_sqnr_db"))  # FP32 against itself: +inf dB (null in the command's JSON)
    assert fp32 == pytest.approx({k: v for k, v in cli["fp32"].items() if k != "output_sqnr_db"}, rel=1e-12)
    assert set(r["quantized_scores"]) == {"value", "output_sqnr_db", "mse", "agreement", "top1", "top5"}


def test_sqnr_ranking_equals_the_commands(model_path, calib_dir, kvant_cli, tmp_path):
    cli = cli_json(kvant_cli, model_path, calib_dir, tmp_path, "--metric", "sqnr")
    r = kvant.sensitivity(model_path, NpyReader(SAMPLES), metric="sqnr")  # evaluated on the calibration samples
    assert [l["node"] for l in r["layers"]] == [l["node"] for l in cli["layers"]]
    assert [l["value"] for l in r["layers"]] == pytest.approx([l["only"]["value"] for l in cli["layers"]], rel=1e-9)
    assert r["quantized"] == pytest.approx(cli["quantized"]["value"], rel=1e-9)
    assert len(r["layers"]) == 5 and all(math.isnan(l["all_but"]) for l in r["layers"])


SCORE = "import sys, numpy as np\na = np.load(sys.argv[1])\nprint(-float(np.abs(a - a.mean()).sum()))\n"


def test_a_python_metric_ranks_as_the_commands_metric_cmd(model_path, calib_dir, kvant_cli, tmp_path):
    (tmp_path / "score.py").write_text(SCORE)
    cli = cli_json(kvant_cli, model_path, calib_dir, tmp_path, "--metric-cmd",
                   "/usr/bin/python3 %s {outputs}" % (tmp_path / "score.py"))
    seen = []

    def score(outputs, labels):
        seen.append((len(outputs), labels))
        a = np.stack([o.reshape(-1) for o in outputs])
        return -float(np.abs(a - a.mean()).sum())

    r = kvant.sensitivity(model_path, NpyReader(SAMPLES), metric=score, labels=LABELS)
    assert [l["node"] for l in r["layers"]] == [l["node"] for l in cli["layers"]]
    for layer in r["layers"]:
        assert layer["custom"] == pytest.approx(cli["metric_cmd"]["only"][layer["node"]], rel=1e-6)
    assert r["custom_fp32"] == pytest.approx(cli["metric_cmd"]["fp32"], rel=1e-6)
    assert seen[0] == (3, LABELS) and len(seen) == 2 + 5  # fp32, quantized, each layer

    # One argument: outputs only; lower is better turns the order round.
    low = kvant.sensitivity(model_path, NpyReader(SAMPLES), metric=lambda outs: float(np.stack(outs).std()),
                            higher_is_better=False)
    stds = [l["custom"] for l in low["layers"]]
    assert stds == sorted(stds, reverse=True)


def test_what_the_metric_raises_is_raised_again(model_path):
    def broken(outputs):
        raise ZeroDivisionError("metric broke on %d outputs" % len(outputs))

    with pytest.raises(ZeroDivisionError, match="metric broke on 3 outputs"):
        kvant.sensitivity(model_path, NpyReader(SAMPLES), metric=broken)
    with pytest.raises(TypeError):  # returns no number
        kvant.sensitivity(model_path, NpyReader(SAMPLES), metric=lambda outputs: None)


def test_bad_input_is_an_error(model_path):
    with pytest.raises(kvant.InvalidArgumentError, match="needs labels"):
        kvant.sensitivity(model_path, NpyReader(SAMPLES), metric="top1")
    with pytest.raises(kvant.InvalidArgumentError, match="hold 2 entries"):
        kvant.sensitivity(model_path, NpyReader(SAMPLES), labels=[1, 2])
    with pytest.raises(kvant.InvalidArgumentError, match="expected top1, top5"):
        kvant.sensitivity(model_path, NpyReader(SAMPLES), metric="iou")
    with pytest.raises(kvant.InvalidArgumentError, match="needs a calibration reader"):
        kvant.sensitivity(model_path, eval_data_reader=NpyReader(SAMPLES))
    r = kvant.sensitivity(model_path, eval_data_reader=NpyReader(SAMPLES), bits=4, metric="mse")
    assert r["metric"] == "mse" and len(r["layers"]) >= 1


def test_accuracy_target_writes_what_the_command_writes(model_path, calib_dir, kvant_cli, tmp_path):
    loose = kvant.quantize_static(model_path, None, NpyReader(SAMPLES), accuracy_target=10,
                                  eval_data_reader=NpyReader(SAMPLES), metric="sqnr")["accuracy_target"]
    assert loose["met"] and loose["chosen_step"] == 0 and loose["kept_fp32"] == []
    tight = "%.3f" % (loose["value"] + 1.0)  # plain INT8 misses it by 1 dB
    subprocess.run([kvant_cli, "quantize", model_path, "-o", str(tmp_path / "cli.onnx"), "--calib", str(calib_dir),
                    "--eval", str(calib_dir), "--metric", "sqnr", "--no-speed-check", "--report-samples", "0",
                    "--accuracy-target", tight], check=True, capture_output=True, text=True)
    report = kvant.quantize_static(model_path, tmp_path / "py.onnx", NpyReader(SAMPLES), accuracy_target=float(tight),
                                   eval_data_reader=NpyReader(SAMPLES), metric="sqnr")
    t = report["accuracy_target"]
    assert t["met"] and t["chosen_step"] >= 1 and t["value"] >= float(tight), t
    assert t["kept_fp32"] == t["ranking"][:t["chosen_step"]]
    assert sorted(report["kept_fp32"]) == sorted(t["kept_fp32"])
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
    # The frontier: every step walked, the chosen one the report's.
    assert len(t["frontier"]) == t["steps"]
    chosen = t["frontier"][t["chosen_step"]]
    assert chosen["value"] == t["value"] and chosen["kept_fp32"] == t["kept_fp32"] and chosen["meets"]
    assert not t["frontier"][0]["meets"] and t["frontier"][0]["moved"] == ""
    assert all(step["bytes"] > 0 and step["scores"]["output_sqnr_db"] == step["value"] for step in t["frontier"])


def test_accuracy_target_with_a_python_metric(model_path, tmp_path):
    calls = []

    def agreement(outputs, labels):  # top-1 against the labels, in points
        calls.append(len(outputs))
        return 100.0 * float(np.mean([o.argmax() == l for o, l in zip(outputs, labels)]))

    report = kvant.quantize_static(model_path, tmp_path / "q.onnx", NpyReader(SAMPLES), accuracy_target=0,
                                   eval_data_reader=LabelledReader(SAMPLES, LABELS), metric=agreement)
    t = report["accuracy_target"]
    assert t["value"] >= t["fp32_value"] and calls[0] == 3, (t, calls)

    def broken(outputs):
        raise KeyError("scorer offline")

    with pytest.raises(KeyError, match="scorer offline"):
        kvant.quantize_static(model_path, tmp_path / "x.onnx", NpyReader(SAMPLES), accuracy_target=1,
                              eval_data_reader=NpyReader(SAMPLES), metric=broken)
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(TypeError, match="apply only with accuracy_target"):
        kvant.quantize_static(model_path, tmp_path / "x.onnx", NpyReader(SAMPLES), metric="sqnr")
    with pytest.raises(kvant.InvalidArgumentError, match="needs evaluation data"):
        kvant.quantize_static(model_path, tmp_path / "x.onnx", NpyReader(SAMPLES), accuracy_target=1)


def test_weight_only_accuracy_target(model_path, tmp_path):
    report = kvant.quantize_weight_only(model_path, tmp_path / "w.onnx", bits=4, group_size=32, accuracy_target=1e9,
                                        eval_data_reader=NpyReader(SAMPLES), metric="sqnr")
    t = report["accuracy_target"]
    assert not t["met"] and t["steps"] > 1 and report["warnings"][-1].startswith("accuracy target not met"), report
