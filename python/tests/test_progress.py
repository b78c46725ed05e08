"""The progress keyword of quantize_* and sensitivity: counts that never go
down and end at the total (known when the reader has __len__), False
cancelling with CancelledError and no output file, and what the callable
raises raised again."""

import pytest

import kvant
from conftest import SAMPLES, NpyReader


class SizedReader(NpyReader):
    def __len__(self):
        return len(SAMPLES)


def recorder():
    seen = []

    def progress(p):
        seen.append(dict(p))

    return seen, progress


def check_counts(calls, total):
    assert calls, "no progress reported"
    done = [c["done"] for c in calls]
    assert done == sorted(done) and done[0] >= 1
    assert all(c["total"] == total for c in calls)
    assert done[-1] == total


def test_calibration_counts_samples(model_path, tmp_path):
    seen, progress = recorder()
    out = tmp_path / "q.onnx"
    kvant.quantize_static(model_path, out, SizedReader(SAMPLES), progress=progress)
    assert {c["stage"] for c in seen} == {"calibration"}
    assert [c["done"] for c in seen] == [1, 2, 3]
    check_counts(seen, 3)
    # Without __len__ the total is not known.
    seen, progress = recorder()
    kvant.quantize_static(model_path, None, NpyReader(SAMPLES), progress=progress)
    assert [(c["done"], c["total"]) for c in seen] == [(1, None), (2, None), (3, None)]
    # The same file as without a progress callable.
    plain = tmp_path / "plain.onnx"
    kvant.quantize_static(model_path, plain, NpyReader(SAMPLES))
    assert plain.read_bytes() == out.read_bytes()


def test_sensitivity_counts_its_work(model_path):
    seen, progress = recorder()
    r = kvant.sensitivity(model_path, SizedReader(SAMPLES), metric="sqnr", progress=progress)
    check_counts([c for c in seen if c["stage"] == "calibration"], 3)
    runs = [c for c in seen if c["stage"] == "sensitivity"]
    check_counts(runs, runs[-1]["total"])
    measured = {l["node"] for l in r["layers"] if l["measured"]}
    assert {c["layer"] for c in runs} == measured


def test_accuracy_target_reports_steps(model_path):
    first = kvant.quantize_static(model_path, None, NpyReader(SAMPLES), accuracy_target=0, metric="sqnr",
                                  eval_data_reader=NpyReader(SAMPLES))["accuracy_target"]["value"]
    seen, progress = recorder()
    report = kvant.quantize_static(model_path, None, NpyReader(SAMPLES), accuracy_target=first + 1, metric="sqnr",
                                   eval_data_reader=NpyReader(SAMPLES), progress=progress)["accuracy_target"]
    steps = [c for c in seen if c["stage"] == "accuracy_target"]
    assert len(steps) == report["steps"] >= 2
    assert [c["done"] for c in steps] == list(range(1, len(steps) + 1))
    assert [c["kept_fp32"] for c in steps] == list(range(len(steps)))
    assert [c["meets"] for c in steps] == [False] * (len(steps) - 1) + [True]
    assert steps[-1]["value"] == report["value"]
    assert any(c["stage"] == "sensitivity" for c in seen)


def test_false_cancels_and_writes_nothing(model_path, tmp_path):
    out = tmp_path / "q.onnx"
    calls = []

    def stop_at_two(p):
        calls.append(p["done"])
        return p["done"] < 2

    with pytest.raises(kvant.CancelledError, match=r"cancelled by the progress callback \(calibration 2/3\)"):
        kvant.quantize_static(model_path, out, SizedReader(SAMPLES), progress=stop_at_two)
    assert calls == [1, 2]
    assert not out.exists()
    assert issubclass(kvant.CancelledError, kvant.KvantError)
    # None (a plain function's result) goes on; only False cancels.
    kvant.quantize_static(model_path, out, SizedReader(SAMPLES), progress=lambda p: None)
    assert out.exists()
    with pytest.raises(kvant.CancelledError):
        kvant.sensitivity(model_path, SizedReader(SAMPLES), progress=lambda p: p["stage"] != "sensitivity")


def test_a_raise_is_raised_again(model_path, tmp_path):
    class Stop(Exception):
        pass

    def boom(p):
        raise Stop("at %d" % p["done"])

    out = tmp_path / "q.onnx"
    with pytest.raises(Stop, match="at 1"):
        kvant.quantize_static(model_path, out, SizedReader(SAMPLES), progress=boom)
    assert not out.exists()
    with pytest.raises(TypeError, match="progress must be a callable"):
        kvant.quantize_dynamic(model_path, out, progress=3)
