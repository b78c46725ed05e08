"""kvant.InferenceSession: ONNX Runtime's shape of calls, kvant run's bytes,
no copy of the inputs, errors as exceptions, the GIL released while running."""

import sys
import threading
import tracemalloc

import numpy as np
import pytest

import kvant
from conftest import quantize_cli, run_cli


def test_inputs_and_outputs_are_node_args(model_path):
    sess = kvant.InferenceSession(model_path)
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("image", "tensor(float)", ["N", 1, 28, 28])
    assert (out.name, out.type) == ("logits", "tensor(float)")
    assert out.shape[-1] == 10


@pytest.fixture(scope="module")
def int8_model(kvant_cli, model_path, calib_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    quantize_cli(kvant_cli, model_path, path, "--calib", str(calib_dir))
    return path


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_run_equals_kvant_run_bit_for_bit(which, model_path, int8_model, samples, kvant_cli, tmp_path):
    model = model_path if which == "fp32" else int8_model
    sess = kvant.InferenceSession(model)
    batch = np.concatenate(samples)  # [3,1,28,28]: the symbolic batch dim bound to 3
    for i, x in enumerate([*samples, batch]):
        expected = run_cli(kvant_cli, model, {"image": x}, tmp_path / str(i))["logits"]
        (got,) = sess.run(None, {"image": x})
        assert got.dtype == expected.dtype and got.shape == expected.shape
        assert np.array_equal(got, expected), (which, i)
        (named,) = sess.run(["logits"], {"image": x})
        assert np.array_equal(named, expected)


def test_session_from_bytes_and_threads_option(model_path, samples):
    with open(model_path, "rb") as f:
        data = f.read()
    options = kvant.SessionOptions()
    options.intra_op_num_threads = 2
    a = kvant.InferenceSession(data, options).run(None, {"image": samples[0]})[0]
    b = kvant.InferenceSession(model_path).run(None, {"image": samples[0]})[0]
    assert np.array_equal(a, b)


def test_input_is_not_copied(model_path):
    """A C-contiguous float32 feed is read in place: the binding allocates
    no NumPy memory of the input's size (tracemalloc sees NumPy's
    allocations). A strided feed, which must be copied, shows the copy, so
    the measure can fail."""
    sess = kvant.InferenceSession(model_path)
    x = np.random.default_rng(0).standard_normal((2048, 1, 28, 28), dtype=np.float32)  # 6.4 MB
    sess.run(None, {"image": x[:2]})  # warm up (first-run planning)

    def peak_during(feed):
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            before = tracemalloc.get_traced_memory()[0]
            (out,) = sess.run(None, {"image": feed})
            return tracemalloc.get_traced_memory()[1] - before, out
        finally:
            tracemalloc.stop()

    peak, out = peak_during(x)
    assert out.shape == (2048, 10)
    assert peak < x.nbytes // 8, "run allocated %d bytes for a %d-byte input" % (peak, x.nbytes)
    # The output is the API's tensor, wrapped without a copy.
    assert not out.flags.owndata and out.base is not None

    strided = np.repeat(x, 2, axis=0)[::2]  # same values, not contiguous
    assert not strided.flags.c_contiguous
    peak_strided, out_strided = peak_during(strided)
    assert peak_strided >= x.nbytes
    assert np.array_equal(out, out_strided)


def test_non_float32_feed_is_an_error_not_a_conversion(model_path, samples):
    sess = kvant.InferenceSession(model_path)
    with pytest.raises(kvant.InvalidArgumentError, match=r'input "image": expected float32\[N,1,28,28\], got float64'):
        sess.run(None, {"image": samples[0].astype(np.float64)})


def test_missing_file_is_an_exception_with_the_message(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(kvant.KvantError) as e:
        kvant.InferenceSession(str(missing))
    assert str(missing) in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, RuntimeError)


def test_wrong_input_name_wrong_shape_unknown_output(model_path, samples):
    sess = kvant.InferenceSession(model_path)
    with pytest.raises(kvant.KvantError, match='"img"') as e:
        sess.run(None, {"img": samples[0]})
    assert "image" in str(e.value)  # names the model's input
    with pytest.raises(kvant.InvalidArgumentError, match=r'input "image": expected float32\[N,1,28,28\], got '
                                                         r'float32\[1,1,28,27\]'):
        sess.run(None, {"image": np.zeros((1, 1, 28, 27), np.float32)})
    with pytest.raises(kvant.KvantError, match='"scores"'):
        sess.run(["scores"], {"image": samples[0]})
    with pytest.raises(kvant.KvantError):
        kvant.InferenceSession(b"not an onnx model")


def test_run_releases_the_gil(model_path):
    """With the switch interval at 100 s, a thread holding the GIL keeps it
    until it blocks or releases it. The main thread waits; the worker starts
    a long run. The main thread can only get to record that it ran before
    the run returned if run() released the GIL."""
    sess = kvant.InferenceSession(model_path)
    x = np.zeros((4096, 1, 28, 28), np.float32)
    sess.run(None, {"image": x})  # plan for this shape first
    started = threading.Event()
    state = {"run_done": False, "main_ran": False, "main_ran_before_return": None}

    def worker():
        started.set()
        sess.run(None, {"image": x})
        state["main_ran_before_return"] = state["main_ran"]
        state["run_done"] = True

    old = sys.getswitchinterval()
    sys.setswitchinterval(100)
    try:
        t = threading.Thread(target=worker)
        t.start()
        started.wait()
        if not state["run_done"]:
            state["main_ran"] = True
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert state["main_ran_before_return"] is True


def test_threads_sharing_one_session_get_the_same_bytes(model_path, samples):
    sess = kvant.InferenceSession(model_path)
    batch = np.concatenate(samples * 20)
    (expected,) = sess.run(None, {"image": batch})
    results = [None] * 4

    def work(i):
        for _ in range(3):
            results[i] = sess.run(None, {"image": batch})[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        assert np.array_equal(r, expected)


def test_inspect(model_path):
    info = kvant.inspect(model_path, plan=True)
    assert info["inputs"] == [{"name": "image", "type": "tensor(float)", "shape": ["N", 1, 28, 28]}]
    assert info["outputs"][0]["name"] == "logits"
    assert info["quantized"] is False and info["opset"] > 0
    assert info["plan"] and all(isinstance(line, str) for line in info["plan"])
