"""The newer quantization options through Python (weight_bits, equalize,
bias_correction, rounding, smooth_quant, awq, calibration data for dynamic
and weight-only): each writes the bytes `kvant quantize` writes with the
same options on the same samples; misuse raises the one-line message."""

import pytest

import kvant
from conftest import SAMPLES, NpyReader, quantize_cli


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_static_w4a8_equalize_bias_correction_adaround(model_path, calib_dir, kvant_cli, tmp_path):
    quantize_cli(kvant_cli, model_path, tmp_path / "cli.onnx", "--calib", str(calib_dir), "--weight-bits", "4",
                 "--equalize", "--bias-correction", "--rounding", "adaround")
    report = kvant.quantize_static(model_path, tmp_path / "py.onnx", NpyReader(SAMPLES), weight_bits=4, equalize=True,
                                   bias_correction=True, rounding="adaround")
    assert read(tmp_path / "py.onnx") == read(tmp_path / "cli.onnx")
    notes = " ".join(report["notes"])
    assert "cross-layer equalization" in notes and "bias correction" in notes and "AdaRound" in notes, notes
    assert kvant.inspect(tmp_path / "py.onnx")["opset"] == 21


@pytest.mark.parametrize("value, arg", [(0.7, "0.7"), ("search", "search")])
def test_static_smooth_quant(model_path, calib_dir, kvant_cli, tmp_path, value, arg):
    quantize_cli(kvant_cli, model_path, tmp_path / "cli.onnx", "--calib", str(calib_dir), "--smooth-quant", arg)
    report = kvant.quantize_static(model_path, tmp_path / "py.onnx", NpyReader(SAMPLES), smooth_quant=value)
    assert read(tmp_path / "py.onnx") == read(tmp_path / "cli.onnx")
    assert report["notes"][0].startswith("SmoothQuant (alpha " + ("0.7" if value == 0.7 else "searched")), report


def test_dynamic_with_a_reader(model_path, calib_dir, kvant_cli, tmp_path):
    quantize_cli(kvant_cli, model_path, tmp_path / "cli.onnx", "--mode", "dynamic", "--calib", str(calib_dir),
                 "--smooth-quant", "--equalize")
    kvant.quantize_dynamic(model_path, tmp_path / "py.onnx", NpyReader(SAMPLES), smooth_quant=True, equalize=True)
    assert read(tmp_path / "py.onnx") == read(tmp_path / "cli.onnx")


def test_weight_only_awq_and_gptq(model_path, calib_dir, kvant_cli, tmp_path):
    quantize_cli(kvant_cli, model_path, tmp_path / "cli.onnx", "--mode", "weight-only", "--group-size", "32",
                 "--calib", str(calib_dir), "--awq", "--rounding", "gptq", "--samples", "2")
    reader = NpyReader(SAMPLES)
    report = kvant.quantize_weight_only(model_path, tmp_path / "py.onnx", group_size=32,
                                        calibration_data_reader=reader, awq=True, rounding="gptq", max_samples=2)
    assert read(tmp_path / "py.onnx") == read(tmp_path / "cli.onnx")
    assert any(n.startswith("AWQ") for n in report["notes"]), report["notes"]


def test_option_misuse_is_an_error(model_path, tmp_path):
    out = tmp_path / "q.onnx"
    with pytest.raises(kvant.InvalidArgumentError, match="awq needs calibration data"):
        kvant.quantize_weight_only(model_path, out, awq=True)
    with pytest.raises(kvant.InvalidArgumentError, match="smooth_quant needs calibration data"):
        kvant.quantize_dynamic(model_path, out, smooth_quant=0.5)
    with pytest.raises(kvant.InvalidArgumentError, match="expected nearest, adaround or gptq"):
        kvant.quantize_static(model_path, out, NpyReader(SAMPLES), rounding="stochastic")
    with pytest.raises(kvant.InvalidArgumentError, match="kGptq applies to weight-only"):
        kvant.quantize_static(model_path, out, NpyReader(SAMPLES), rounding="gptq")
    with pytest.raises(kvant.InvalidArgumentError, match=r"smooth_quant_alpha must be in \[0, 1\]"):
        kvant.quantize_static(model_path, out, NpyReader(SAMPLES), smooth_quant=2.0)
    with pytest.raises(kvant.InvalidArgumentError, match='expected a number in \\[0, 1\\] or "search"'):
        kvant.quantize_static(model_path, out, NpyReader(SAMPLES), smooth_quant="auto")
    with pytest.raises(TypeError, match="unexpected keyword"):
        kvant.quantize_dynamic(model_path, out, awq=True)
    assert not out.exists()
