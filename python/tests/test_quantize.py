"""kvant.quantize_*: the files `kvant quantize` writes, byte for byte, with a
CalibrationDataReader in ONNX Runtime's shape; reports as dicts; reader
errors raised again."""

import json

import numpy as np
import pytest

import kvant
from conftest import SAMPLES, NpyReader, quantize_cli


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_quantize_static_with_a_reader_writes_what_the_command_writes(model_path, calib_dir, kvant_cli, tmp_path):
    quantize_cli(kvant_cli, model_path, tmp_path / "cli.onnx", "--calib", str(calib_dir))
    reader = NpyReader(SAMPLES)
    report = kvant.quantize_static(model_path, tmp_path / "py.onnx", reader)
    assert read(tmp_path / "py.onnx") == read(tmp_path / "cli.onnx")
    assert reader.calls == 4  # three samples, then None
    assert report["calibration_samples"] == 3 and report["quantized_nodes"] > 0
    assert set(report) == {"quantized_nodes", "calibration_samples", "kept_fp32", "fp32_reasons", "notes",
                           "warnings", "layer_outputs", "layers", "layer_samples"}
    assert report["layers"] == [] and report["layer_samples"] == 0  # not asked for
    assert len(report["layer_outputs"]) > 0


def test_per_layer_report_is_the_commands(model_path, calib_dir, kvant_cli, tmp_path):
    """report_samples=N: the per-layer values `kvant quantize --report` writes
    for --report-samples N, the same numbers in the same order."""
    quantize_cli(kvant_cli, model_path, tmp_path / "cli.onnx", "--calib", str(calib_dir), "--report-samples", "2",
                 "--report", str(tmp_path / "cli.json"))
    cli = json.loads((tmp_path / "cli.json").read_text())
    report = kvant.quantize_static(model_path, tmp_path / "py.onnx", NpyReader(SAMPLES), report_samples=2)
    assert read(tmp_path / "py.onnx") == read(tmp_path / "cli.onnx")
    assert report["layer_samples"] == cli["layer_error_samples"] == 2
    assert len(report["layers"]) == len(cli["layers"]) > 0
    for mine, theirs in zip(report["layers"], cli["layers"]):
        assert mine == theirs, (mine, theirs)


def test_quantize_static_options_match_the_command(model_path, calib_dir, kvant_cli, tmp_path):
    quantize_cli(kvant_cli, model_path, tmp_path / "cli.onnx", "--calib", str(calib_dir), "--calibrator", "entropy",
                 "--activation-type", "int8", "--per-tensor", "--exclude", "first")

    class QuantType:  # ONNX Runtime's enum members carry .name
        name = "QInt8"

    report = kvant.quantize_static(model_path, tmp_path / "py.onnx", NpyReader(SAMPLES), calibrate_method="entropy",
                                   activation_type=QuantType(), per_channel=False, nodes_to_exclude=["first"])
    assert read(tmp_path / "py.onnx") == read(tmp_path / "cli.onnx")
    assert len(report["kept_fp32"]) == 1


def test_quantize_dynamic_and_weight_only_match_the_command(model_path, kvant_cli, tmp_path):
    quantize_cli(kvant_cli, model_path, tmp_path / "d_cli.onnx", "--mode", "dynamic")
    report = kvant.quantize_dynamic(model_path, tmp_path / "d_py.onnx")
    assert read(tmp_path / "d_py.onnx") == read(tmp_path / "d_cli.onnx")
    assert report["quantized_nodes"] > 0
    quantize_cli(kvant_cli, model_path, tmp_path / "w_cli.onnx", "--mode", "weight-only", "--group-size", "32")
    kvant.quantize_weight_only(model_path, tmp_path / "w_py.onnx", group_size=32)
    assert read(tmp_path / "w_py.onnx") == read(tmp_path / "w_cli.onnx")


def test_quantized_model_runs(model_path, samples, tmp_path):
    kvant.quantize_static(model_path, tmp_path / "q.onnx", NpyReader(SAMPLES))
    fp32 = kvant.InferenceSession(model_path).run(None, {"image": np.concatenate(samples)})[0]
    int8 = kvant.InferenceSession(tmp_path / "q.onnx").run(None, {"image": np.concatenate(samples)})[0]
    assert np.array_equal(fp32.argmax(1), int8.argmax(1))
    assert kvant.inspect(tmp_path / "q.onnx")["quantized"] is True


def test_a_reader_exception_is_raised_again(model_path, tmp_path):
    class Broken:
        def get_next(self):
            raise ZeroDivisionError("reader broke")

    with pytest.raises(ZeroDivisionError, match="reader broke"):
        kvant.quantize_static(model_path, tmp_path / "q.onnx", Broken())
    assert not (tmp_path / "q.onnx").exists()


def test_bad_samples_and_options_are_errors(model_path, tmp_path):
    class NotADict:
        def get_next(self):
            return [np.zeros((1, 1, 28, 28), np.float32)]

    with pytest.raises(kvant.KvantError, match="not a dict"):
        kvant.quantize_static(model_path, tmp_path / "q.onnx", NotADict())
    with pytest.raises(kvant.KvantError, match='"image"'):
        kvant.quantize_static(model_path, tmp_path / "q.onnx",
                              _Const({"image": np.zeros((1, 1, 5, 5), np.float32)}))
    with pytest.raises(TypeError, match="unexpected keyword"):
        kvant.quantize_static(model_path, tmp_path / "q.onnx", NpyReader(SAMPLES), calibrater="minmax")
    with pytest.raises(kvant.InvalidArgumentError, match="calibrate_method"):
        kvant.quantize_static(model_path, tmp_path / "q.onnx", NpyReader(SAMPLES), calibrate_method="best")
    with pytest.raises(kvant.KvantError, match="bits"):
        kvant.quantize_weight_only(model_path, tmp_path / "w.onnx", bits=3)
    with pytest.raises(kvant.KvantError):
        kvant.quantize_dynamic(tmp_path / "missing.onnx", tmp_path / "d.onnx")
    assert not (tmp_path / "q.onnx").exists()


class _Const:
    def __init__(self, sample, n=2):
        self._sample, self._n = sample, n

    def get_next(self):
        self._n -= 1
        return self._sample if self._n >= 0 else None
