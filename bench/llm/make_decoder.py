#!/usr/bin/env python3
"""A LLaMA-architecture decoder with random weights, exported to ONNX with
past key/values, for speed and memory measurements (nothing is downloaded;
the model is written, not committed).

RMSNorm, rotary position embeddings, grouped-query attention, SwiGLU MLP, an
untied LM head. Inputs: input_ids int64 [1, seq], past_key_values.N.key/value
float [1, kv_heads, past, head_dim]; outputs: logits [1, seq, vocab],
present.N.key/value [1, kv_heads, past + seq, head_dim]. Positions continue
from the past length; a causal mask covers seq > 1 (prefill).

  bench/llm/make_decoder.py OUT_DIR [--size 155m|tiny] [--past 128]

writes OUT_DIR/model.onnx and OUT_DIR/decode_inputs/*.npy (one new token
after `past` cached ones, random cache) and OUT_DIR/prefill_inputs/*.npy
(`past` tokens, empty cache).
"""
import argparse
import math
import os

import numpy as np
import torch
import torch.nn as nn

SIZES = {
    # vocab, hidden, layers, heads, kv_heads, ffn: 155 M parameters (the decoder)
    "155m": (32000, 1024, 8, 16, 4, 2816),
    "tiny": (512, 128, 2, 4, 2, 352),
}


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(1.0 + 0.1 * torch.randn(dim))

    def forward(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(nn.Module):
    def __init__(self, hidden, heads, kv_heads, ffn):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, hidden // heads
        self.norm1, self.norm2 = RMSNorm(hidden), RMSNorm(hidden)
        self.q = nn.Linear(hidden, heads * self.head_dim, bias=False)
        self.k = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.v = nn.Linear(hidden, kv_heads * self.head_dim, bias=False)
        self.o = nn.Linear(heads * self.head_dim, hidden, bias=False)
        self.gate = nn.Linear(hidden, ffn, bias=False)
        self.up = nn.Linear(hidden, ffn, bias=False)
        self.down = nn.Linear(ffn, hidden, bias=False)

    def forward(self, x, cos, sin, mask, past_k, past_v):
        b, s, _ = x.shape
        h = self.norm1(x)
        q = self.q(h).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(h).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if past_k is not None:  # None: no cache (the no-past export of train_llama.py)
            k = torch.cat((past_k, k), dim=2)
            v = torch.cat((past_v, v), dim=2)
        rep = self.heads // self.kv_heads
        t = k.shape[2]
        kr = k[:, :, None].expand(b, self.kv_heads, rep, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)
        vr = v[:, :, None].expand(b, self.kv_heads, rep, t, self.head_dim).reshape(b, self.heads, t, self.head_dim)
        scores = torch.matmul(q, kr.transpose(2, 3)) / math.sqrt(self.head_dim) + mask
        attn = torch.matmul(torch.softmax(scores, dim=-1), vr)
        x = x + self.o(attn.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))
        h = self.norm2(x)
        g = self.gate(h)
        x = x + self.down(g * torch.sigmoid(g) * self.up(h))
        return x, k, v


class Decoder(nn.Module):
    def __init__(self, vocab, hidden, layers, heads, kv_heads, ffn):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.layers = nn.ModuleList([Layer(hidden, heads, kv_heads, ffn) for _ in range(layers)])
        self.norm = RMSNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)
        head_dim = hidden // heads
        self.register_buffer("inv_freq", 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim)))

    def forward(self, input_ids, *past):
        s = input_ids.shape[1]
        p = past[0].shape[2] if past else 0
        pos = torch.arange(s, dtype=torch.float32) + p
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        # Causal: query i (at position p + i) sees keys 0 .. p + i.
        keys = torch.arange(s + p, dtype=torch.float32)
        mask = (keys[None, :] > pos[:, None]).float() * -1e9
        x = self.embed(input_ids)
        presents = []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, cos, sin, mask, *((past[2 * i], past[2 * i + 1]) if past else (None, None)))
            presents += [k, v]
        return (self.head(self.norm(x)), *presents)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--size", choices=sorted(SIZES), default="155m")
    ap.add_argument("--past", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    vocab, hidden, layers, heads, kv_heads, ffn = SIZES[args.size]
    model = Decoder(vocab, hidden, layers, heads, kv_heads, ffn).eval()
    for name, prm in model.named_parameters():
        if prm.dim() == 2:  # scaled like a trained model's, so activations stay O(1)
            with torch.no_grad():
                prm.normal_(0.0, 1.0 / math.sqrt(prm.shape[1]))
    head_dim = hidden // heads
    os.makedirs(args.out_dir, exist_ok=True)
    names = ["input_ids"]
    outputs = ["logits"]
    axes = {"input_ids": {1: "seq"}, "logits": {1: "seq"}}
    for i in range(layers):
        for kv in ("key", "value"):
            names.append(f"past_key_values.{i}.{kv}")
            outputs.append(f"present.{i}.{kv}")
            axes[names[-1]] = {2: "past"}
            axes[outputs[-1]] = {2: "total"}
    ids = torch.zeros(1, 1, dtype=torch.int64)
    past = [torch.zeros(1, kv_heads, args.past, head_dim) for _ in range(2 * layers)]
    path = os.path.join(args.out_dir, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (ids, *past), path, input_names=names, output_names=outputs, dynamic_axes=axes,
                          opset_version=17, do_constant_folding=True)
    rng = np.random.default_rng(args.seed)
    for kind, seq, plen in (("decode", 1, args.past), ("prefill", args.past, 0)):
        d = os.path.join(args.out_dir, f"{kind}_inputs")
        os.makedirs(d, exist_ok=True)
        np.save(os.path.join(d, "input_ids.npy"), rng.integers(0, vocab, size=(1, seq), dtype=np.int64))
        for n in names[1:]:
            np.save(os.path.join(d, f"{n}.npy"), rng.standard_normal((1, kv_heads, plen, head_dim), dtype=np.float32))
    params = sum(p.numel() for p in model.parameters())
    print(f"{path}: {params / 1e6:.1f} M parameters, {layers} layers, hidden {hidden}, vocab {vocab}")


if __name__ == "__main__":
    main()
