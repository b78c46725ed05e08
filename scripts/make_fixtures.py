#!/usr/bin/python3
"""Makes the real-architecture model fixtures for tests/models (no network).

Each model is built with random weights (weights=None, fixed seeds), put in
eval mode and exported to ONNX; PyTorch's own outputs on fixed random inputs
are stored beside it in the layout of the ONNX backend test data:

    OUT/<name>/model.onnx
    OUT/<name>/test_data_set_0/input_K.pb, output_K.pb   (serialized TensorProto)
    OUT/<name>/info.json                                 (this model's manifest entry)
    OUT/manifest.json                                    (all entries)

BatchNorm running statistics are not left at their initial (0, 1): a few
forward passes in training mode on random images set them, as calibration
would, so that activations keep a realistic scale through deep networks.

Usage: /usr/bin/python3 scripts/make_fixtures.py [--out DIR] [--only NAME] [--force] [--list]
A model whose files exist already is skipped unless --force is given.
Needs Debian's python3-torch, python3-torchvision and python3-onnx.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time

# Threads sleep instead of spinning while they wait: on a busy machine spinning
# OpenMP threads cost several times the useful work.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import onnx
from onnx import numpy_helper
import torch
from torch import nn
import torch.nn.functional as F
import torchvision


# ---------------------------------------------------------------- BERT-base --
# A BERT-base-sized encoder written out in plain modules (as in the BERT
# paper, arXiv:1810.04805): embeddings (word + position + token type,
# LayerNorm), 12 post-LN layers of multi-head self-attention and a GELU
# feed-forward, and the tanh pooler on the first token.

class BertEmbeddings(nn.Module):
    def __init__(self, vocab, hidden, max_positions, type_vocab):
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.position = nn.Embedding(max_positions, hidden)
        self.token_type = nn.Embedding(type_vocab, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        # Positions come from slicing a buffer by the sequence length (as the
        # HuggingFace model does): Shape -> Slice in the exported graph.
        self.register_buffer("position_ids", torch.arange(max_positions).unsqueeze(0), persistent=False)

    def forward(self, input_ids, token_type_ids):
        seq = input_ids.size(1)
        positions = self.position_ids[:, :seq]
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.norm(x)


class SelfAttention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)

    def split_heads(self, x):  # [B, T, H] -> [B, heads, T, head_dim]
        return x.view(x.size(0), x.size(1), self.heads, self.head_dim).permute(0, 2, 1, 3)

    def forward(self, x, additive_mask):
        q = self.split_heads(self.query(x))
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if additive_mask is not None:
            scores = scores + additive_mask
        probs = torch.softmax(scores, dim=-1)
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        context = context.view(context.size(0), context.size(1), -1)
        return self.out(context)


class BertLayer(nn.Module):
    def __init__(self, hidden, heads, ffn):
        super().__init__()
        self.attention = SelfAttention(hidden, heads)
        self.norm1 = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, ffn)
        self.ffn_out = nn.Linear(ffn, hidden)
        self.gelu = nn.GELU()  # exact (erf) GELU
        self.norm2 = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x, additive_mask):
        x = self.norm1(x + self.attention(x, additive_mask))
        return self.norm2(x + self.ffn_out(self.gelu(self.ffn_in(x))))


class BertEncoder(nn.Module):
    def __init__(self, vocab=30522, hidden=768, layers=12, heads=12, ffn=3072, max_positions=512, type_vocab=2):
        super().__init__()
        self.embeddings = BertEmbeddings(vocab, hidden, max_positions, type_vocab)
        self.layers = nn.ModuleList([BertLayer(hidden, heads, ffn) for _ in range(layers)])
        self.pooler = nn.Linear(hidden, hidden)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module):  # BERT's initialisation: N(0, 0.02), zero bias
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, 0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def forward(self, input_ids, attention_mask, token_type_ids):
        # attention_mask: 1 = attend, 0 = padding -> additive [B, 1, 1, T] mask.
        additive_mask = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * -10000.0
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, additive_mask)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        return x, pooled


# ------------------------------------------------------------ GPT-2 style ---
# A small GPT-2-style decoder (Radford et al. 2019): pre-LN blocks with a fused
# QKV projection, causal self-attention, tanh-approximated GELU MLP, final
# LayerNorm and an output projection tied to the token embedding.

class CausalSelfAttention(nn.Module):
    def __init__(self, hidden, heads, max_positions):
        super().__init__()
        self.heads = heads
        self.hidden = hidden
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        causal = torch.tril(torch.ones(max_positions, max_positions, dtype=torch.bool))
        self.register_buffer("causal", causal.view(1, 1, max_positions, max_positions), persistent=False)

    def forward(self, x):
        batch, seq, hidden = x.size()
        q, k, v = self.qkv(x).split(self.hidden, dim=2)
        q = q.view(batch, seq, self.heads, hidden // self.heads).transpose(1, 2)
        k = k.view(batch, seq, self.heads, hidden // self.heads).transpose(1, 2)
        v = v.view(batch, seq, self.heads, hidden // self.heads).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hidden // self.heads))
        mask = self.causal[:, :, :seq, :seq]
        scores = torch.where(mask, scores, torch.tensor(-1e9, dtype=scores.dtype))
        y = torch.matmul(torch.softmax(scores, dim=-1), v)
        y = y.transpose(1, 2).contiguous().view(batch, seq, hidden)
        return self.proj(y)


class GptBlock(nn.Module):
    def __init__(self, hidden, heads, max_positions):
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads, max_positions)
        self.ln2 = nn.LayerNorm(hidden)
        self.fc = nn.Linear(hidden, 4 * hidden)
        self.gelu = nn.GELU(approximate="tanh")
        self.fc_proj = nn.Linear(4 * hidden, hidden)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc_proj(self.gelu(self.fc(self.ln2(x))))


class GptDecoder(nn.Module):
    def __init__(self, vocab=2048, hidden=256, blocks=4, heads=4, max_positions=128):
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(max_positions, hidden)
        self.blocks = nn.ModuleList([GptBlock(hidden, heads, max_positions) for _ in range(blocks)])
        self.ln_f = nn.LayerNorm(hidden)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                module.weight.data.normal_(0.0, 0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()

    def forward(self, input_ids):
        # Positions from arange over the dynamic length: Shape -> Range.
        positions = torch.arange(input_ids.size(1), dtype=torch.int64).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.wte.weight)  # tied embedding


# ------------------------------------------------------------------- LSTM ---

class LstmClassifier(nn.Module):
    """Two stacked LSTM layers over a feature sequence, a Linear head on the last step."""

    def __init__(self, features=32, hidden=64, classes=5):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1, :])


# ------------------------------------------------------------- the models ---

def calibrate_batchnorm(model, shape, batches=3, batch_size=4):
    """Sets BatchNorm running mean/var from random images (cumulative average)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(batch_size, *shape[1:]))
    model.eval()


def vision(builder, opset):
    def make():
        model = builder(weights=None)
        calibrate_batchnorm(model, (1, 3, 224, 224))
        inputs = {"input": torch.randn(1, 3, 224, 224)}
        return model, inputs, ["logits"], {"input": {0: "batch"}, "logits": {0: "batch"}}, opset
    return make


def make_bert():
    model = BertEncoder().eval()
    seq = 128
    input_ids = torch.randint(0, 30522, (1, seq), dtype=torch.int64)
    attention_mask = torch.ones(1, seq, dtype=torch.int64)
    attention_mask[:, 100:] = 0  # the last 28 tokens are padding
    token_type_ids = torch.zeros(1, seq, dtype=torch.int64)
    token_type_ids[:, 64:] = 1
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    dyn = {name: {0: "batch", 1: "sequence"} for name in inputs}
    dyn["last_hidden_state"] = {0: "batch", 1: "sequence"}
    dyn["pooler_output"] = {0: "batch"}
    return model, inputs, ["last_hidden_state", "pooler_output"], dyn, 13


def make_gpt():
    model = GptDecoder().eval()
    inputs = {"input_ids": torch.randint(0, 2048, (1, 64), dtype=torch.int64)}
    dyn = {"input_ids": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}}
    return model, inputs, ["logits"], dyn, 13


def make_lstm():
    model = LstmClassifier().eval()
    inputs = {"features": torch.randn(1, 50, 32)}
    return model, inputs, ["logits"], {"features": {0: "batch"}, "logits": {0: "batch"}}, 13


# name -> (seed, builder, published figures for later checks)
MODELS = {
    "resnet50": (1, vision(torchvision.models.resnet50, 13),
                 {"params": 25.6e6, "macs": 4.1e9, "source": "He et al. 2016; torchvision model card"}),
    "mobilenet_v2": (2, vision(torchvision.models.mobilenet_v2, 13),
                     {"params": 3.5e6, "macs": 0.3e9, "source": "Sandler et al. 2018; torchvision model card"}),
    "efficientnet_b0_opset13": (3, vision(torchvision.models.efficientnet_b0, 13),
                                {"params": 5.3e6, "macs": 0.39e9, "source": "Tan & Le 2019"}),
    "efficientnet_b0_opset17": (3, vision(torchvision.models.efficientnet_b0, 17),
                                {"params": 5.3e6, "macs": 0.39e9, "source": "Tan & Le 2019"}),
    "bert_base": (4, make_bert,
                  {"params": 110e6, "macs": 11.2e9, "source": "Devlin et al. 2019 (BERT-base, seq 128)"}),
    "gpt2_tiny": (5, make_gpt, {}),
    "lstm_classifier": (6, make_lstm, {}),
}


def save_tensor(path, array, name):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(np.ascontiguousarray(array), name).SerializeToString())


def make_fixture(name, out_dir):
    seed, builder, published = MODELS[name]
    torch.manual_seed(seed)
    np.random.seed(seed)
    model, inputs, output_names, dynamic_axes, opset = builder()
    model.eval()
    args = tuple(inputs.values())
    with torch.no_grad():
        outputs = model(*args)
    if isinstance(outputs, torch.Tensor):
        outputs = (outputs,)

    final = os.path.join(out_dir, name)
    tmp = tempfile.mkdtemp(prefix=f".{name}.", dir=out_dir)  # renamed into place when complete
    try:
        model_path = os.path.join(tmp, "model.onnx")
        with torch.no_grad():
            torch.onnx.export(model, args, model_path, input_names=list(inputs), output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True)
        onnx.checker.check_model(model_path)
        data = os.path.join(tmp, "test_data_set_0")
        os.makedirs(data)
        for k, (input_name, tensor) in enumerate(inputs.items()):
            save_tensor(os.path.join(data, f"input_{k}.pb"), tensor.numpy(), input_name)
        for k, (output_name, tensor) in enumerate(zip(output_names, outputs)):
            save_tensor(os.path.join(data, f"output_{k}.pb"), tensor.numpy(), output_name)

        graph = onnx.load(model_path, load_external_data=False).graph
        info = {
            "name": name,
            "opset": opset,
            "params": int(sum(p.numel() for p in model.parameters())),
            "inputs": {n: list(t.shape) for n, t in inputs.items()},
            "outputs": {n: list(t.shape) for n, t in zip(output_names, outputs)},
            "nodes": len(graph.node),
            "op_types": sorted({n.op_type for n in graph.node}),
            "published": published,
            "torch": torch.__version__,
            "seed": seed,
        }
        with open(os.path.join(tmp, "info.json"), "w") as f:
            json.dump(info, f, indent=1)
        os.chmod(tmp, 0o755)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def is_complete(folder):
    return all(os.path.exists(os.path.join(folder, f)) for f in ("model.onnx", "info.json",
                                                                "test_data_set_0/output_0.pb"))


def write_manifest(out_dir):
    entries = []
    for name in MODELS:
        info_path = os.path.join(out_dir, name, "info.json")
        if os.path.exists(info_path):
            with open(info_path) as f:
                entries.append(json.load(f))
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump({"models": entries}, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=".fixtures", help="output folder (default .fixtures)")
    parser.add_argument("--only", action="append", choices=list(MODELS), help="make only this model (repeatable)")
    parser.add_argument("--force", action="store_true", help="remake models whose files exist")
    parser.add_argument("--list", action="store_true", help="print the model names and exit")
    args = parser.parse_args()
    if args.list:
        print("\n".join(MODELS))
        return 0

    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)
    start = time.time()
    for name in args.only or list(MODELS):
        folder = os.path.join(args.out, name)
        if is_complete(folder) and not args.force:
            print(f"{name}: exists, skipped")
            continue
        t0 = time.time()
        info = make_fixture(name, args.out)
        print(f"{name}: opset {info['opset']}, {info['params'] / 1e6:.2f}M params, {info['nodes']} nodes "
              f"({time.time() - t0:.1f} s)", flush=True)
    write_manifest(args.out)
    print(f"fixtures in {args.out} ({time.time() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
