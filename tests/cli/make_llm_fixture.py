#!/usr/bin/env python3
"""A tiny LLaMA-architecture decoder and the PyTorch references that
tests/cli/generate_test.sh checks `kvant generate` and `kvant perplexity`
against. The model is bench/llm/make_decoder.py's (its classes, size tiny),
built and exported here so that the references come from the very weights
in the file:

  OUT/model.onnx    input_ids + past_key_values.N.key/value -> logits + present.N.*
  OUT/nopast.onnx   the same weights, input_ids -> logits only
  OUT/masked.onnx   the same weights, also taking attention_mask and
                    position_ids (both used: positions drive the rotary
                    embedding, the mask hides keys)
  OUT/prompt.npy    int64 [1, 7] prompt ids
  OUT/greedy.npy    int64 [N] greedy continuation by PyTorch, recomputing the
                    whole prefix each step (no cache)
  OUT/tokens.npy    int64 [T] ids to score; OUT/text.txt: bytes to score
  OUT/ppl.json      {"CONTEXT,STRIDE": {"tokens": ppl, "text": ppl}}: strided
                    perplexity computed with NumPy from PyTorch's logits of
                    each window

  make_llm_fixture.py OUT [--new-tokens 24]
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "llm"))
import make_decoder  # noqa: E402

WINDOWS = [(64, 32), (50, 50), (40, 13)]


class NoPast(nn.Module):
    def __init__(self, model, layers, kv_heads, head_dim):
        super().__init__()
        self.model, self.layers, self.kv_heads, self.head_dim = model, layers, kv_heads, head_dim

    def forward(self, input_ids):
        past = [torch.zeros(1, self.kv_heads, 0, self.head_dim) for _ in range(2 * self.layers)]
        return self.model(input_ids, *past)[0]


class Masked(nn.Module):
    """make_decoder.Decoder's forward, with positions and the key mask from
    position_ids and attention_mask instead of computed from the past length."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past):
        m = self.model
        pos = position_ids[0].to(torch.float32)
        freqs = pos[:, None] * m.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        keys = torch.arange(attention_mask.shape[1], dtype=torch.float32)
        hidden = (1.0 - attention_mask[0].to(torch.float32))[None, :] * -1e9
        mask = (keys[None, :] > pos[:, None]).float() * -1e9 + hidden
        x = m.embed(input_ids)
        presents = []
        for i, layer in enumerate(m.layers):
            x, k, v = layer(x, cos, sin, mask, past[2 * i], past[2 * i + 1])
            presents += [k, v]
        return (m.head(m.norm(x)), *presents)


def strided_ppl(logits_of, ids, context, stride):
    """Hugging Face's strided perplexity; logits_of(window ids) -> [len, vocab]."""
    nll, count, prev_end = 0.0, 0, 0
    for begin in range(0, len(ids), stride):
        end = min(begin + context, len(ids))
        logits = logits_of(ids[begin:end]).astype(np.float64)
        logp = logits - logits.max(-1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
        for t in range(max(prev_end, begin + 1), end):
            nll -= logp[t - 1 - begin, ids[t]]
            count += 1
        prev_end = end
        if end == len(ids):
            break
    return math.exp(nll / count)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--new-tokens", type=int, default=24)
    args = ap.parse_args()
    torch.manual_seed(3)
    vocab, hidden, layers, heads, kv_heads, ffn = make_decoder.SIZES["tiny"]
    model = make_decoder.Decoder(vocab, hidden, layers, heads, kv_heads, ffn).eval()
    with torch.no_grad():
        for prm in model.parameters():
            if prm.dim() == 2:
                prm.normal_(0.0, 1.0 / math.sqrt(prm.shape[1]))
        # A sharper LM head, so that greedy choices are not near-ties.
        model.head.weight.mul_(4.0)
    head_dim = hidden // heads
    os.makedirs(args.out, exist_ok=True)
    names, outputs = ["input_ids"], ["logits"]
    axes = {"input_ids": {1: "seq"}, "logits": {1: "seq"}}
    for i in range(layers):
        for kv in ("key", "value"):
            names.append(f"past_key_values.{i}.{kv}")
            outputs.append(f"present.{i}.{kv}")
            axes[names[-1]] = {2: "past"}
            axes[outputs[-1]] = {2: "total"}
    ids = torch.zeros(1, 3, dtype=torch.int64)
    past = [torch.zeros(1, kv_heads, 2, head_dim) for _ in range(2 * layers)]
    nopast = NoPast(model, layers, kv_heads, head_dim).eval()
    with torch.no_grad():
        torch.onnx.export(model, (ids, *past), os.path.join(args.out, "model.onnx"), input_names=names,
                          output_names=outputs, dynamic_axes=axes, opset_version=17)
        mask_axes = dict(axes, attention_mask={1: "total"}, position_ids={1: "seq"})
        torch.onnx.export(Masked(model), (ids, torch.ones(1, 5, dtype=torch.int64), torch.arange(2, 5)[None], *past),
                          os.path.join(args.out, "masked.onnx"),
                          input_names=["input_ids", "attention_mask", "position_ids"] + names[1:],
                          output_names=outputs, dynamic_axes=mask_axes, opset_version=17)
        # The same model with a batch axis (kvant generate --prompt-ids [B, T]).
        batch_axes = {name: {0: "batch", **a} for name, a in axes.items()}
        torch.onnx.export(model, (ids, *past), os.path.join(args.out, "batched.onnx"), input_names=names,
                          output_names=outputs, dynamic_axes=batch_axes, opset_version=17)
        torch.onnx.export(nopast, (ids,), os.path.join(args.out, "nopast.onnx"), input_names=["input_ids"],
                          output_names=["logits"], dynamic_axes={"input_ids": {1: "seq"}, "logits": {1: "seq"}},
                          opset_version=17)

    def logits_of(window):
        with torch.no_grad():
            return nopast(torch.tensor(np.asarray(window, dtype=np.int64))[None])[0].numpy()

    rng = np.random.default_rng(5)
    prompt = rng.integers(0, vocab, size=(1, 7), dtype=np.int64)
    np.save(os.path.join(args.out, "prompt.npy"), prompt)
    seq = list(prompt[0])
    for _ in range(args.new_tokens):
        seq.append(int(np.argmax(logits_of(seq)[-1])))
    np.save(os.path.join(args.out, "greedy.npy"), np.array(seq[prompt.shape[1]:], dtype=np.int64))

    tokens = rng.integers(0, vocab, size=150, dtype=np.int64)
    np.save(os.path.join(args.out, "tokens.npy"), tokens)
    text = b"Perplexity of fixed-length models, by a sliding window: 0123456789 \xc3\xa9t\xc3\xa9.\n" * 2
    with open(os.path.join(args.out, "text.txt"), "wb") as f:
        f.write(text)
    refs = {}
    for context, stride in WINDOWS:
        refs[f"{context},{stride}"] = {
            "tokens": strided_ppl(logits_of, list(tokens), context, stride),
            "text": strided_ppl(logits_of, list(text), context, stride),
        }
    with open(os.path.join(args.out, "ppl.json"), "w") as f:
        json.dump(refs, f, indent=1)


if __name__ == "__main__":
    main()
