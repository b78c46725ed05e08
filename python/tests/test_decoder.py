"""kvant.Decoder: the public Decoder gives PyTorch's greedy tokens on a tiny
decoder exported by tests/cli/make_llm_fixture.py (skips without torch)."""

import pathlib
import subprocess
import sys

import numpy as np
import pytest

import kvant

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    out = tmp_path_factory.mktemp("llm")
    subprocess.run([sys.executable, str(ROOT / "tests" / "cli" / "make_llm_fixture.py"), str(out)], check=True,
                   capture_output=True)
    return out


def test_greedy_tokens_are_pytorchs(llm):
    prompt = np.load(llm / "prompt.npy").reshape(-1)
    want = np.load(llm / "greedy.npy")
    info = kvant.decoder_info(str(llm / "model.onnx"))
    assert info["input_ids"] == "input_ids" and info["layers"] > 0
    dec = kvant.Decoder(str(llm / "model.onnx"), max_total=len(prompt) + len(want))
    logits = dec.forward(prompt)
    assert logits.shape == (1, len(prompt), dec.vocab) and logits.dtype == np.float32
    got = [int(np.argmax(logits[0, -1]))]
    while len(got) < len(want):
        got.append(int(np.argmax(dec.forward(np.array([got[-1]]))[0, -1])))
    assert got == want.tolist()
    assert dec.length == len(prompt) + len(want) - 1
    with pytest.raises(kvant.InvalidArgumentError, match="vocabulary"):
        dec.forward(np.array([dec.vocab]))
    dec.reset()
    assert dec.length == 0
    np.testing.assert_array_equal(dec.forward(prompt), logits)
