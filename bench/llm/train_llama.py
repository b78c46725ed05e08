#!/usr/bin/env python3
"""Trains a small LLaMA-architecture decoder on text Debian ships, for the
accuracy table of docs/llm.md (bench/llm/llm_table.py). Nothing is
downloaded; the outputs are written to OUT_DIR, not committed.

  /usr/bin/python3 bench/llm/train_llama.py OUT_DIR [--steps 180] [--minutes 25] [--threads 2]

Model: the classes of bench/llm/make_decoder.py (RMSNorm, rotary position
embeddings, grouped-query attention, SwiGLU, untied LM head) with a byte
vocabulary (256 ids: the UTF-8 bytes, no tokenizer), hidden 256, 3 layers,
8 heads, 4 KV heads, SwiGLU 640: 2.2 M parameters (small: the machine it was
made on had 2 cores shared with several builds).

Corpus (deterministic for a given set of installed packages; its size and
SHA-256 are written to OUT_DIR/stats.json): every file of
/usr/share/common-licenses, then /usr/share/doc/*/changelog.Debian.gz
decompressed, both sorted by path, until --corpus-mb MB. The last 5% of the
bytes are the held-out test split (never trained on); the rest is training.

Training: AdamW (lr 3e-3, warmup 30 steps, cosine to 10%), batches of 16
random windows of 128 bytes, seed 0, --steps steps (--minutes stops earlier
if the machine is slow; the number of steps run is in stats.json).

Writes:
  OUT_DIR/model.pt            torch state dict
  OUT_DIR/model.onnx          opset 17, with past key/values (make_decoder.py's
                              convention: input_ids [1, seq], past_key_values.N.key/value
                              -> logits, present.N.key/value)
  OUT_DIR/model_nopast.onnx   opset 17, input_ids [batch, seq] -> logits (no cache;
                              one forward per perplexity window)
  OUT_DIR/train.bin, test.bin the corpus split (bytes)
  OUT_DIR/stats.json          corpus, training, held-out perplexity (torch), the byte
                              unigram perplexity, and per layer the max/median ratio of
                              the per-channel max |x| of each linear layer's input on
                              held-out text
"""
import argparse
import gzip
import glob
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_decoder import Decoder  # noqa: E402

CONFIG = dict(vocab=256, hidden=256, layers=3, heads=8, kv_heads=4, ffn=640)
SEQ = 128


def corpus(limit):
    files = sorted(p for p in glob.glob("/usr/share/common-licenses/*") if os.path.isfile(p))
    files += sorted(glob.glob("/usr/share/doc/*/changelog.Debian.gz"))
    parts, total, used = [], 0, 0
    for path in files:
        if total >= limit:
            break
        try:
            data = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
        except OSError:
            continue
        parts.append(data)
        total += len(data)
        used += 1
    data = b"".join(parts)[:limit]
    return np.frombuffer(data, dtype=np.uint8), used


def windows(data, n, rng):
    starts = rng.integers(0, len(data) - SEQ - 1, size=n)
    x = np.stack([data[s:s + SEQ + 1] for s in starts]).astype(np.int64)
    return torch.from_numpy(x[:, :-1]), torch.from_numpy(x[:, 1:])


@torch.no_grad()
def evaluate(model, test, max_windows=128):
    """Byte perplexity over non-overlapping windows of SEQ bytes of the test split (every byte of a
    window predicted from the ones before it in the window)."""
    n = min(max_windows, (len(test) - 1) // SEQ)
    x = np.stack([test[i * SEQ:i * SEQ + SEQ + 1] for i in range(n)]).astype(np.int64)
    nll, count = 0.0, 0
    for b in range(0, n, 16):
        inp, tgt = torch.from_numpy(x[b:b + 16, :-1]), torch.from_numpy(x[b:b + 16, 1:])
        logits = model(inp)[0]
        nll += F.cross_entropy(logits.reshape(-1, 256), tgt.reshape(-1), reduction="sum").item()
        count += tgt.numel()
    return math.exp(nll / count)


@torch.no_grad()
def channel_ratios(model, test, n=64):
    """Per layer and linear layer input: max over channels / median over channels of the channel's
    max |x| on n held-out windows."""
    stats = {}

    def hook(name):
        def f(module, inputs, output):
            m = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            stats[name] = torch.maximum(stats[name], m) if name in stats else m
        return f

    handles = []
    for i, layer in enumerate(model.layers):
        # q, k and v read the same tensor, so do gate and up.
        for name, mod in (("qkv", layer.q), ("o", layer.o), ("gate_up", layer.gate), ("down", layer.down)):
            handles.append(mod.register_forward_hook(hook(f"layers.{i}.{name}")))
    handles.append(model.head.register_forward_hook(hook("head")))
    x = np.stack([test[i * SEQ:i * SEQ + SEQ] for i in range(n)]).astype(np.int64)
    model(torch.from_numpy(x))
    for h in handles:
        h.remove()
    return {k: float(v.max() / v.median()) for k, v in stats.items()}


def export(model, out_dir):
    cfg = CONFIG
    head_dim = cfg["hidden"] // cfg["heads"]
    names, outputs = ["input_ids"], ["logits"]
    axes = {"input_ids": {1: "seq"}, "logits": {1: "seq"}}
    for i in range(cfg["layers"]):
        for kv in ("key", "value"):
            names.append(f"past_key_values.{i}.{kv}")
            outputs.append(f"present.{i}.{kv}")
            axes[names[-1]] = {2: "past"}
            axes[outputs[-1]] = {2: "total"}
    ids = torch.zeros(1, 4, dtype=torch.int64)
    past = [torch.zeros(1, cfg["kv_heads"], 3, head_dim) for _ in range(2 * cfg["layers"])]
    with torch.no_grad():
        torch.onnx.export(model, (ids, *past), os.path.join(out_dir, "model.onnx"), input_names=names,
                          output_names=outputs, dynamic_axes=axes, opset_version=17, do_constant_folding=True)

    class NoPast(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids):
            return self.m(input_ids)[0]

    with torch.no_grad():
        torch.onnx.export(NoPast(model), (torch.zeros(2, 8, dtype=torch.int64),),
                          os.path.join(out_dir, "model_nopast.onnx"), input_names=["input_ids"],
                          output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}},
                          opset_version=17, do_constant_folding=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--steps", type=int, default=180)
    ap.add_argument("--minutes", type=float, default=25.0, help="stop after this long even if --steps are not done")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--corpus-mb", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.out_dir, exist_ok=True)

    data, files = corpus(int(args.corpus_mb * 1e6))
    cut = int(len(data) * 0.95)
    train, test = data[:cut], data[cut:]
    train.tofile(os.path.join(args.out_dir, "train.bin"))
    test.tofile(os.path.join(args.out_dir, "test.bin"))
    counts = np.bincount(train, minlength=256).astype(np.float64) + 1.0
    probs = counts / counts.sum()
    unigram = math.exp(-np.log(probs[test]).mean())
    print(f"corpus: {len(data)} bytes from {files} files, train {len(train)}, test {len(test)}; "
          f"byte unigram perplexity on test {unigram:.2f}", flush=True)

    model = Decoder(**CONFIG)
    with torch.no_grad():
        for name, prm in model.named_parameters():
            if prm.dim() == 2:
                prm.normal_(0.0, 0.02)
            elif name.endswith("weight"):  # RMSNorm gains start at 1
                prm.fill_(1.0)
    params = sum(p.numel() for p in model.parameters())
    print(f"{params / 1e6:.2f} M parameters", flush=True)
    decay = [p for p in model.parameters() if p.dim() == 2]
    other = [p for p in model.parameters() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": other, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    rng = np.random.default_rng(args.seed)
    start, step, warmup = time.time(), 0, 30
    model.train()
    while step < args.steps and time.time() - start < args.minutes * 60:
        t = step / args.steps
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = windows(train, args.batch, rng)
        loss = F.cross_entropy(model(x)[0].reshape(-1, 256), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0 or step == 1:
            print(f"step {step} loss {loss.item():.3f} lr {lr:.2e} {time.time() - start:.0f} s", flush=True)
    seconds = time.time() - start
    model.eval()
    ppl = evaluate(model, test)
    ratios = channel_ratios(model, test)
    print(f"trained {step} steps in {seconds:.0f} s; held-out perplexity {ppl:.3f} (unigram {unigram:.2f})")
    for k, v in ratios.items():
        print(f"  {k}: channel max|x| max/median {v:.1f}x")
    torch.save(model.state_dict(), os.path.join(args.out_dir, "model.pt"))
    export(model, args.out_dir)
    stats = dict(config=CONFIG, parameters=params, corpus_bytes=len(data), corpus_files=files,
                 corpus_sha256=hashlib.sha256(data.tobytes()).hexdigest(), train_bytes=len(train),
                 test_bytes=len(test), steps=step, batch=args.batch, seq=SEQ, seconds=seconds, threads=args.threads,
                 seed=args.seed, torch_test_perplexity=ppl, unigram_perplexity=unigram, channel_ratio=ratios)
    with open(os.path.join(args.out_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(f"wrote {args.out_dir}/model.pt, model.onnx, model_nopast.onnx, stats.json")


if __name__ == "__main__":
    main()
