"""Shared fixtures: the bundled demo model, its sample images, and the kvant
command of the same build (KVANT_CLI, set by the ctest python_tests)."""

import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "fashion_mnist_cnn.onnx"
SAMPLES = sorted((ROOT / "models" / "samples").glob("fashion_mnist_*.npy"))


def _kvant_cli():
    path = os.environ.get("KVANT_CLI") or str(ROOT / "build" / "release" / "kvant")
    if not os.access(path, os.X_OK):
        pytest.skip("no kvant command at %s (set KVANT_CLI)" % path)
    return path


@pytest.fixture(scope="session")
def kvant_cli():
    return _kvant_cli()


@pytest.fixture(scope="session")
def model_path():
    return str(MODEL)


@pytest.fixture(scope="session")
def samples():
    assert len(SAMPLES) == 3, SAMPLES
    return [np.load(p) for p in SAMPLES]


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory):
    """A folder with the three sample .npy files, as `kvant quantize --calib` takes it."""
    d = tmp_path_factory.mktemp("calib")
    for p in SAMPLES:
        shutil.copy(p, d / p.name)
    return d


def run_cli(kvant_cli, model, feeds, workdir):
    """`kvant run model -i name=file.npy ... -o dir`: the outputs by name."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    args = [kvant_cli, "run", str(model)]
    for name, array in feeds.items():
        path = workdir / ("in_%s.npy" % name)
        np.save(path, array)
        args += ["-i", "%s=%s" % (name, path)]
    out = workdir / "out"
    args += ["-o", str(out), "--force"]
    subprocess.run(args, check=True, capture_output=True, text=True)
    return {p.stem: np.load(p) for p in out.glob("*.npy")}


def quantize_cli(kvant_cli, model, output, *args):
    subprocess.run([kvant_cli, "quantize", str(model), "-o", str(output), "--no-speed-check", *args],
                   check=True, capture_output=True, text=True)


class NpyReader:
    """ONNX Runtime's CalibrationDataReader protocol over .npy files."""

    def __init__(self, paths, name="image"):
        self._it = iter(paths)
        self._name = name
        self.calls = 0

    def get_next(self):
        self.calls += 1
        path = next(self._it, None)
        return None if path is None else {self._name: np.load(path)}
