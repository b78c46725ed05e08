#!/usr/bin/python3
"""A wild zoo of the models users bring, generated here (random weights with
fixed seeds, BatchNorm statistics from a few training-mode passes on random
inputs; nothing downloaded), run through kvant and ONNX Runtime:

    /usr/bin/python3 scripts/zoo.py [--kvant build/release/kvant] [--out build/zoo]
                                    [--models a,b,...] [--timeout 240] [--write] [--check] [--list]
                                    [--speed [--rounds 3]]

For each model: the export (PyTorch's torch.onnx.export, with torch.jit.script
for If/Loop; in a forked process with a timeout), then

  - FP32: kvant's compiled run against ONNX Runtime's (default optimizations),
    max |kvant - ORT| / max |ORT| over all float outputs, and the same
    against the PyTorch model's output;
  - static: `kvant quantize --mode static --calib DIR` (4 random samples),
    onnx.checker (full_check), kvant's output SQNR (dB) against kvant FP32,
    ONNX Runtime's run of the file at --opt-level basic (QDQ semantics, no
    fused kernels) as SQNR against kvant's, the float Conv/Gemm/MatMul left in
    ONNX Runtime's optimized graph (default level; tests/interop/ort_ops.py's
    operator set without Add), and kvant's plan reference fallbacks
    (`kvant inspect --plan`);
  - dynamic: `kvant quantize --mode dynamic --reduce-range` (7-bit weights,
    so ONNX Runtime's u8 x s8 kernels cannot saturate on AVX2, docs/interop.md)
    with the same checks but the float count.

SQNR is the minimum over the model's float outputs on one more random input.
Every step has a timeout (--timeout seconds); a failure is recorded with its
error text and the next model runs. --write replaces docs/zoo.md's table
(between the "<!-- zoo table -->" markers); --check exits 1 when any step
failed, an SQNR is below 15 dB, or FP32 differs by more than 1e-3 relative.

--speed measures instead of checking: per model (its model.onnx, input/ and
calib/ from an earlier run with the same --out are reused, else the checks
run first to make them), the files are quantized again with this kvant
(static 8-bit, static 7-bit `--reduce-range`, dynamic `--reduce-range`) and
each (engine, file) pair's CPU time per run at batch 1, 1 thread is taken
from N timed runs after warm-up in one process (`kvant bench`'s `cpu` line,
ort_run.js --bench's cpu_ms_per_run: the process's CPU time over the timed
runs, so neither the wait for a core on a shared machine nor loading and
packing count), every pair once per round, --rounds rounds interleaved;
ratios are taken within each round and their median reported. --write then
replaces the "<!-- zoo speed -->" table instead.
Needs torch, torchvision, onnx, numpy, node and node_modules/onnxruntime-node.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np

try:
    import onnx
    import torch
    import torchvision
except ImportError as missing:  # ctest: skipped
    print(f"SKIPPED: zoo.py needs torch, torchvision and onnx ({missing})")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORT_RUN = os.path.join(ROOT, "scripts", "ort_run.js")
FLOAT_COMPUTE = {"Conv", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul"}
MIN_SQNR = 15.0
MAX_FP32_REL = 1e-3
nn = torch.nn
F = torch.nn.functional


# ------------------------------------------------------------------ models ---

class UNet(nn.Module):
    """Two down, two up (ConvTranspose), BatchNorm, skip Concats."""

    def __init__(self):
        super().__init__()

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())
        self.d1, self.d2, self.mid = block(3, 16), block(16, 32), block(32, 64)
        self.u2, self.c2 = nn.ConvTranspose2d(64, 32, 2, stride=2), block(64, 32)
        self.u1, self.c1 = nn.ConvTranspose2d(32, 16, 2, stride=2), block(32, 16)
        self.head = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        a = self.d1(x)
        b = self.d2(F.max_pool2d(a, 2))
        m = self.mid(F.max_pool2d(b, 2))
        b = self.c2(torch.cat([self.u2(m), b], 1))
        a = self.c1(torch.cat([self.u1(b), a], 1))
        return torch.sigmoid(self.head(a))


class YoloHead(nn.Module):
    """YOLOv5/v8-like neck and head: Conv-BN-SiLU, stride-2 backbone, nearest
    ×2 Resize, Concat, two detection outputs."""

    def __init__(self):
        super().__init__()

        def cbs(i, o, s=1):
            return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.SiLU())
        self.b1, self.b2, self.b3, self.b4 = cbs(3, 16, 2), cbs(16, 32, 2), cbs(32, 64, 2), cbs(64, 128, 2)
        self.lat = cbs(128, 64)
        self.fuse = cbs(128, 64)
        self.det_s = nn.Conv2d(64, 3 * 9, 1)
        self.det_l = nn.Conv2d(64, 3 * 9, 1)

    def forward(self, x):
        p3 = self.b3(self.b2(self.b1(x)))
        p4 = self.b4(p3)
        l4 = self.lat(p4)
        f3 = self.fuse(torch.cat([F.interpolate(l4, scale_factor=2.0, mode="nearest"), p3], 1))
        return self.det_s(f3), self.det_l(l4)


class KwsGru(nn.Module):
    """Keyword spotting on 40 log-mel bins × 49 frames: Conv1d stack, a GRU,
    a Linear on the last step."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv1d(40, 64, 5, padding=2), nn.BatchNorm1d(64), nn.ReLU(),
                                  nn.Conv1d(64, 64, 3, stride=2, padding=1), nn.BatchNorm1d(64), nn.ReLU())
        self.gru = nn.GRU(64, 64, batch_first=True)
        self.fc = nn.Linear(64, 12)

    def forward(self, mel):
        h = self.conv(mel).transpose(1, 2)
        y, _ = self.gru(h)
        return self.fc(y[:, -1])


class TextCnn(nn.Module):
    """Kim-2014 text CNN: Embedding (Gather), Conv1d of widths 3/4/5, max over
    time, Linear."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5000, 64)
        self.convs = nn.ModuleList([nn.Conv1d(64, 32, k) for k in (3, 4, 5)])
        self.fc = nn.Linear(96, 4)

    def forward(self, ids):
        e = self.emb(ids).transpose(1, 2)
        return self.fc(torch.cat([F.relu(c(e)).amax(dim=2) for c in self.convs], 1))


class IfLstm(nn.Module):
    """As tests/cli/make_control_flow_model.py: the LSTM sits in an If branch."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(8, 16, batch_first=True)
        self.fc = nn.Linear(8, 16)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.out = nn.Linear(16, 4)

    def forward(self, x, flag):
        if bool(flag.sum() > 0):
            y, _ = self.lstm(x)
        else:
            z = self.conv(x.transpose(1, 2)).transpose(1, 2)
            y = torch.relu(self.fc(z))
        return self.out(y)


class LoopSteps(nn.Module):
    """A recurrent cell unrolled by a scripted for-loop: ONNX Loop whose body
    holds two Gemms (MatMul+Add) and a Tanh."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(16, 32)
        self.rec = nn.Linear(32, 32)
        self.out = nn.Linear(32, 5)

    def forward(self, x):
        h = torch.zeros(x.size(0), 32)
        for t in range(x.size(1)):
            h = torch.tanh(self.inp(x[:, t]) + self.rec(h))
        return self.out(h)


class NhwcTf(nn.Module):
    """What tf2onnx makes of a Keras CNN: NHWC input, a Transpose to NCHW
    before and back to NHWC after every Conv, NHWC pooling via Transposes,
    a Reshape + MatMul classifier."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, stride=2, padding=1),
                                    nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.Conv2d(32, 64, 1)])
        self.fc = nn.Linear(64, 10)

    def forward(self, x):  # x: N,H,W,C
        for c in self.convs:
            x = F.relu6(c(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        return self.fc(x.mean(dim=(1, 2)))


class TinyVit(nn.Module):
    """A ViT at 64×64: patch-16 Conv embedding, class token, learned position
    embedding, 4 nn.TransformerEncoder layers (pre-norm, GELU), LayerNorm, head."""

    def __init__(self, dim=96, depth=4, heads=4):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 16, stride=16)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.enc = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        p = self.patch(x).flatten(2).transpose(1, 2)
        p = torch.cat([self.cls.expand(x.size(0), -1, -1), p], 1) + self.pos
        return self.head(self.norm(self.enc(p))[:, 0])


class GptPast(nn.Module):
    """A GPT-2-style decoder step with past key/values: 2 layers, 4 heads of
    32, causal mask over past + new tokens, present key/values as outputs."""

    def __init__(self, vocab=1000, dim=128, layers=2, heads=4):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.wte, self.wpe = nn.Embedding(vocab, dim), nn.Embedding(256, dim)
        self.ln1 = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers)])
        self.ln2 = nn.ModuleList([nn.LayerNorm(dim) for _ in range(layers)])
        self.qkv = nn.ModuleList([nn.Linear(dim, 3 * dim) for _ in range(layers)])
        self.proj = nn.ModuleList([nn.Linear(dim, dim) for _ in range(layers)])
        self.fc1 = nn.ModuleList([nn.Linear(dim, 4 * dim) for _ in range(layers)])
        self.fc2 = nn.ModuleList([nn.Linear(4 * dim, dim) for _ in range(layers)])
        self.lnf = nn.LayerNorm(dim)
        self.lm = nn.Linear(dim, vocab, bias=False)

    def forward(self, ids, past_k, past_v):  # past: layers, N, heads, P, hd
        n, s = ids.shape
        p = past_k.shape[3]
        pos = torch.arange(p, p + s).unsqueeze(0)
        x = self.wte(ids) + self.wpe(pos)
        mask = torch.arange(p + s).unsqueeze(0) > torch.arange(p, p + s).unsqueeze(1)
        ks, vs = [], []
        for i in range(len(self.qkv)):
            q, k, v = self.qkv[i](self.ln1[i](x)).split(self.heads * self.hd, 2)
            q, k, v = (t.reshape(n, s, self.heads, self.hd).transpose(1, 2) for t in (q, k, v))
            k = torch.cat([past_k[i], k], 2)
            v = torch.cat([past_v[i], v], 2)
            ks.append(k)
            vs.append(v)
            a = (q @ k.transpose(2, 3)) / self.hd ** 0.5
            a = torch.softmax(a.masked_fill(mask, -1e4), -1) @ v
            x = x + self.proj[i](a.transpose(1, 2).reshape(n, s, -1))
            x = x + self.fc2[i](F.gelu(self.fc1[i](self.ln2[i](x))))
        return self.lm(self.lnf(x)), torch.stack(ks), torch.stack(vs)


def torchvision_model(name, **kw):
    return lambda: getattr(torchvision.models, name)(weights=None, **kw)


def seg_model(name):
    return lambda: getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None, num_classes=5,
                                                                  **({"aux_loss": False} if "lraspp" not in name
                                                                     else {}))


class SegOut(nn.Module):
    """torchvision's segmentation models return a dict; export its "out"."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)["out"]


class Detector(nn.Module):
    """torchvision's detectors take a list of 3-d images and return a list of
    dicts; export one image's boxes, scores and labels."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        d = self.inner([x])[0]
        return d["boxes"], d["scores"], d["labels"]


def f32(*shape):
    return ("float32", shape)


# name -> dict(make, inputs {name: (dtype, shape[, high])}, opset, source, scripted, dynamic_axes)
IMG = {"x": f32(1, 3, 96, 96)}
MODELS = {}


def add(name, make, inputs, opset=13, source="torchvision", **kw):
    MODELS[name] = dict(make=make, inputs=inputs, opset=opset, source=source, **kw)


for op in (9, 11, 13, 17):
    add(f"resnet18_op{op}", torchvision_model("resnet18"), IMG, op)
add("mobilenet_v2_op11", torchvision_model("mobilenet_v2"), IMG, 11)
add("mobilenet_v3_small", torchvision_model("mobilenet_v3_small"), IMG)
add("shufflenet_v2_x0_5", torchvision_model("shufflenet_v2_x0_5"), IMG)
add("squeezenet1_1", torchvision_model("squeezenet1_1"), IMG)
add("googlenet", torchvision_model("googlenet", aux_logits=False, init_weights=True), IMG)
add("densenet121", torchvision_model("densenet121"), {"x": f32(1, 3, 64, 64)})
add("efficientnet_b0", torchvision_model("efficientnet_b0"), IMG)
add("regnet_y_400mf", torchvision_model("regnet_y_400mf"), IMG)
add("mnasnet0_5", torchvision_model("mnasnet0_5"), IMG, 11)
add("convnext_tiny", torchvision_model("convnext_tiny"), {"x": f32(1, 3, 64, 64)}, 17)
add("swin_t", torchvision_model("swin_t"), {"x": f32(1, 3, 64, 64)}, 17)
add("lraspp_mobilenet_v3_large", lambda: SegOut(seg_model("lraspp_mobilenet_v3_large")()), {"x": f32(1, 3, 128, 128)},
    11)
add("deeplabv3_mobilenet_v3_large", lambda: SegOut(seg_model("deeplabv3_mobilenet_v3_large")()),
    {"x": f32(1, 3, 128, 128)}, 11)
add("fcn_resnet50", lambda: SegOut(seg_model("fcn_resnet50")()), {"x": f32(1, 3, 64, 64)}, 13)
add("ssdlite320_mobilenet_v3_large",
    lambda: Detector(torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                                 num_classes=5)),
    {"x": f32(3, 160, 160)}, 11, outputs=["boxes", "scores", "labels"], no_bn_stats=True)
add("tiny_vit", TinyVit, {"x": f32(1, 3, 64, 64)}, 14, "torch nn.TransformerEncoder")
add("unet", UNet, {"x": f32(1, 3, 64, 64)}, 13, "torch")
add("yolo_head", YoloHead, {"x": f32(1, 3, 128, 128)}, 13, "torch", outputs=["small", "large"])
add("kws_gru", KwsGru, {"mel": f32(1, 40, 49)}, 13, "torch")
add("text_cnn", TextCnn, {"ids": ("int64", (1, 64), 5000)}, 13, "torch")
add("if_lstm", IfLstm, {"x": f32(1, 5, 8), "flag": ("float32", (1,), "ones")}, 11, "torch.jit.script", scripted=True)
add("loop_steps", LoopSteps, {"x": f32(1, 6, 16)}, 13, "torch.jit.script", scripted=True)
add("nhwc_tf", NhwcTf, {"x": f32(1, 64, 64, 3)}, 13, "torch (NHWC permutes)")
add("gpt_past_kv", GptPast, {"ids": ("int64", (1, 4), 1000), "past_k": f32(2, 1, 4, 12, 32),
                             "past_v": f32(2, 1, 4, 12, 32)}, 13, "torch", outputs=["logits", "present_k", "present_v"])


def make_input(spec, rng):
    dtype, shape = spec[0], spec[1]
    if dtype == "int64":
        return rng.integers(0, spec[2], size=shape, dtype=np.int64)
    if len(spec) > 2 and spec[2] == "ones":
        return np.ones(shape, np.float32)
    return rng.standard_normal(shape).astype(np.float32)


def set_batchnorm_stats(model, inputs):
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(*[torch.from_numpy(np.concatenate([a] * 4)) for a in inputs])
    model.eval()


def export(spec, path, inputs, torch_out):
    """Builds, exports to `path` and runs the model in PyTorch on `inputs`
    (name -> .npy), writing each float output to torch_out/<output>.npy.
    Returns the parameter count."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    model = spec["make"]()
    model.eval()
    sample = [make_input(s, rng) for s in spec["inputs"].values()]
    if not spec.get("scripted") and not spec.get("no_bn_stats"):
        set_batchnorm_stats(model, sample)
    params = sum(p.numel() for p in model.parameters())
    if spec.get("scripted"):
        model = torch.jit.script(model)

    def args_of(arrays):
        a = [torch.from_numpy(x) for x in arrays]
        return tuple(a)
    torch.onnx.export(model, args_of(sample), path, opset_version=spec["opset"], input_names=list(spec["inputs"]),
                      output_names=spec.get("outputs", ["y"]), do_constant_folding=True)
    with torch.no_grad():
        out = model(*args_of([np.load(inputs[n]) for n in spec["inputs"]]))
    if isinstance(out, torch.Tensor):
        out = [out]
    os.makedirs(torch_out, exist_ok=True)
    for n, t in zip(spec.get("outputs", ["y"]), out):
        np.save(os.path.join(torch_out, n + ".npy"), t.numpy())
    return params


def export_in_child(spec, path, inputs, torch_out, timeout):
    """export() in a forked process: a failed export leaves PyTorch's global
    export state behind (a later torch.jit.script then fails), and a hung
    one is killed after `timeout` seconds."""
    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rd)
        try:
            msg = json.dumps({"params": export(spec, path, inputs, torch_out)})
        except BaseException as e:  # noqa: BLE001 - sent to the parent
            msg = json.dumps({"error": last_line(str(e) or type(e).__name__)})
        os.write(wr, msg.encode())
        os._exit(0)
    os.close(wr)
    deadline = time.time() + timeout
    while time.time() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(rd)
        raise RuntimeError(f"timed out after {timeout} s")
    data = b""
    while True:
        chunk = os.read(rd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(rd)
    if not data:
        raise RuntimeError("the export process died")
    res = json.loads(data)
    if "error" in res:
        raise RuntimeError(res["error"])
    return res["params"]


# ---------------------------------------------------------------- checking ---

def sqnr(ref, x):
    ref = ref.astype(np.float64)
    noise = np.sum((ref - x.astype(np.float64)) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref ** 2) / noise))


def last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and "W:onnxruntime" not in ln]
    return lines[-1] if lines else "(no output)"


def run(cmd, timeout):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{os.path.basename(cmd[0]) if cmd[0] != 'node' else 'ort_run.js'} "
                           f"timed out after {timeout} s")
    if r.returncode != 0:
        tool = "ORT" if cmd[0] == "node" else f"kvant {cmd[1]}"
        raise RuntimeError(f"{tool}: {last_line(r.stderr or r.stdout)}")
    return r.stdout + r.stderr


def outputs_of(path):
    m = onnx.load(path, load_external_data=False)
    return [o.name for o in m.graph.output]


def load_outputs(d, names):
    out = {}
    for n in names:
        f = os.path.join(d, re.sub(r"[^A-Za-z0-9._-]", "_", n) + ".npy")
        if not os.path.exists(f):
            f = os.path.join(d, n + ".npy")
        a = np.load(f)
        if a.dtype.kind == "f":
            out[n] = a
    return out


def min_sqnr(ref, got):
    """The lowest SQNR over the float outputs; NaN when an output's shape
    differs (a detector keeping another number of boxes)."""
    if any(ref[n].shape != got[n].shape for n in ref):
        return float("nan")
    return min(sqnr(ref[n], got[n]) for n in ref)


class Runner:
    def __init__(self, kvant, work, timeout):
        self.kvant, self.work, self.timeout = kvant, work, timeout

    def kv_run(self, model, inputs, out):
        run([self.kvant, "run", model, *sum([["--input", f"{n}={f}"] for n, f in inputs.items()], []),
             "--output-dir", out, "--force"], self.timeout)

    def ort_run(self, model, inputs_dir, out, level=None):
        cmd = ["node", ORT_RUN, model, "--inputs-dir", inputs_dir, "--output-dir", out]
        if level:
            cmd += ["--opt-level", level]
        run(cmd, self.timeout)

    def fallbacks(self, model, shapes):
        try:
            out = run([self.kvant, "inspect", model, "--plan",
                       *sum([["--shape", f"{n}={'x'.join(map(str, s))}"] for n, s in shapes.items()], [])],
                      self.timeout)
        except RuntimeError as e:
            if "control flow run on the reference executor" in str(e):
                return "all (control flow)", []
            raise
        m = re.search(r"(\d+) reference fallbacks", out)
        if not m:
            raise RuntimeError("kvant inspect --plan printed no fallback count")
        fb = int(m.group(1))
        names = re.findall(r"^\s*\d+\s+reference\s+(\S+)", out, re.M)
        # An If/Loop/Scan step allocates its outputs, so the plan counts it
        # with the fallbacks, though its bodies are compiled models.
        names += [f"{op} (bodies compiled)" for op in re.findall(r"^\s*\d+\s+control flow (\S+)", out, re.M)]
        return fb, sorted(set(names))

    def float_left(self, model, name):
        opt = os.path.join(self.work, name + ".ort-optimized.onnx")
        run(["node", ORT_RUN, model, "--save-optimized", opt], self.timeout)
        g = onnx.load(opt, load_external_data=False).graph
        left = [n.op_type for n in g.node if n.op_type in FLOAT_COMPUTE]
        left += [f"{n.op_type}:{n2.op_type}" for n in g.node for a in n.attribute
                 if a.type == onnx.AttributeProto.GRAPH for n2 in a.g.node if n2.op_type in FLOAT_COMPUTE]
        return len(left), sorted(set(left))


def check_model(r, name, spec):
    row = dict(model=name, source=spec["source"], opset=spec["opset"], errors=[])
    d = os.path.join(r.work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    src = os.path.join(d, "model.onnx")
    t0 = time.time()
    rng = np.random.default_rng(2)
    calib = os.path.join(d, "calib")
    multi = len(spec["inputs"]) > 1
    for k in range(4):
        for n, s in spec["inputs"].items():
            sub = os.path.join(calib, n) if multi else calib
            os.makedirs(sub, exist_ok=True)
            np.save(os.path.join(sub, f"s{k}.npy"), make_input(s, rng))
    ind = os.path.join(d, "input")
    os.makedirs(ind)
    inputs = {}
    for n, s in spec["inputs"].items():
        inputs[n] = os.path.join(ind, n + ".npy")
        np.save(inputs[n], make_input(s, rng))
    try:
        row["params"] = export_in_child(spec, src, inputs, os.path.join(d, "fp32.torch"), r.timeout)
        onnx.checker.check_model(src)
    except Exception as e:  # noqa: BLE001 - recorded in the table
        row["errors"].append("export: " + str(e)[:160])
        return row
    m = onnx.load(src, load_external_data=False)
    row["nodes"] = len(m.graph.node)
    row["ops"] = sorted({n.op_type for n in m.graph.node})
    shapes = {n: s[1] for n, s in spec["inputs"].items()}
    names = outputs_of(src)

    def rel(got, want):  # NaN when an output's shape differs (a detector keeping another number of boxes)
        if any(got[n].shape != want[n].shape for n in want if n in got):
            return float("nan")
        return max(float(np.max(np.abs(got[n] - want[n])) / max(float(np.max(np.abs(want[n]))), 1e-30))
                   for n in want if n in got)

    # Each step on its own: a failure is recorded and the steps that do not
    # need its result still run (a model kvant cannot run in FP32 still gets
    # quantized and run in ONNX Runtime).
    def step(what, fn):
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - recorded in the table
            row["errors"].append(f"{what}: " + str(e)[:200])
            return None

    ref = step("fp32 kvant run", lambda: (r.kv_run(src, inputs, os.path.join(d, "fp32.kvant")),
                                          load_outputs(os.path.join(d, "fp32.kvant"), names))[1])
    ort = step("fp32 ORT run", lambda: (r.ort_run(src, ind, os.path.join(d, "fp32.ort")),
                                        load_outputs(os.path.join(d, "fp32.ort"), names))[1])
    pt = load_outputs(os.path.join(d, "fp32.torch"),
                      [n for n in names if os.path.exists(os.path.join(d, "fp32.torch", n + ".npy"))])
    if ref is not None and ort is not None:
        row["fp32_rel"] = rel(ref, ort)
    if ref is not None and pt:
        row["torch_rel"] = rel(ref, pt)
    fb = step("fp32 plan", lambda: r.fallbacks(src, shapes))
    if fb:
        row["fp32_fallbacks"], row["fp32_fallback_ops"] = fb

    for mode, args in (("static", ["--mode", "static", "--calib", calib, "--report-samples", "0"]),
                       ("dynamic", ["--mode", "dynamic", "--reduce-range"])):
        q = os.path.join(d, f"{mode}.onnx")
        res = row[mode] = {}
        if step(f"{mode} quantize", lambda: run([r.kvant, "quantize", src, "-o", q, "--force", "--no-speed-check",
                                                   *args], r.timeout)) is None:
            res["ok"] = False
            continue
        res["ok"] = True
        step(f"{mode} checker", lambda: onnx.checker.check_model(onnx.load(q), full_check=True))
        got = step(f"{mode} kvant run", lambda: (r.kv_run(q, inputs, os.path.join(d, mode + ".kvant")),
                                                 load_outputs(os.path.join(d, mode + ".kvant"), names))[1])
        if got is not None and ref is not None:
            res["sqnr"] = min_sqnr(ref, got)
        fb = step(f"{mode} plan", lambda: r.fallbacks(q, shapes))
        if fb:
            res["fallbacks"], res["fallback_ops"] = fb
        og = step(f"{mode} ORT run", lambda: (r.ort_run(q, ind, os.path.join(d, mode + ".ort"), "basic"),
                                              load_outputs(os.path.join(d, mode + ".ort"), names))[1])
        if og is not None:
            res["ort_ok"] = True
            if got is not None:
                res["ort_sqnr"] = min_sqnr(got, og)
            elif ort is not None:
                res["ort_vs_fp32"] = min_sqnr(ort, og)
        if mode == "static":
            fl = step("static ORT optimized graph", lambda: r.float_left(q, os.path.join(name, mode)))
            if fl:
                res["float_left"], res["float_ops"] = fl
    row["seconds"] = round(time.time() - t0, 1)
    return row


# ------------------------------------------------------------------- speed ---

# (label, engine, file): engine "kvant" or "ort"; the files are in build/zoo/M.
SPEED_PAIRS = (("kvant_fp32", "kvant", "model.onnx"), ("ort_fp32", "ort", "model.onnx"),
               ("kvant_s8", "kvant", "static.onnx"), ("kvant_s7", "kvant", "static7.onnx"),
               ("ort_s7", "ort", "static7.onnx"), ("kvant_dyn", "kvant", "dynamic.onnx"))


def cpu_per_run(r, engine, model, inputs_dir, runs):
    """(CPU ms per run, minimum wall ms) of `runs` timed runs after warm-up,
    1 thread, in one process: the process's CPU time over the timed runs
    (all threads; `kvant bench`'s `cpu` line, ort_run.js's cpu_ms_per_run)."""
    if engine == "ort":
        out = run(["node", ORT_RUN, model, "--inputs-dir", inputs_dir, "--threads", "1", "--bench", str(runs)],
                  r.timeout)
        c, w = re.search(r'"cpu_ms_per_run":([0-9.]+)', out), re.search(r'"min_ms":([0-9.]+)', out)
    else:
        out = run([r.kvant, "bench", model, "--threads", "1", "--runs", str(runs), "--warmup", "2"], r.timeout)
        c = re.search(r"^cpu +([0-9.]+) ms per run", out, re.M)
        w = re.search(r"^latency .* min ([0-9.]+) ms", out, re.M)
    if not c or not w:
        raise RuntimeError(f"{engine} bench printed no time for {os.path.basename(model)}")
    return float(c.group(1)), float(w.group(1))


def speed_model(r, name, spec, rounds):
    """Per pair: CPU ms per run (median over the rounds), the minimum wall
    ms, and the in-round ratios of issue 10's targets."""
    d = os.path.join(r.work, name)
    src, ind, calib = (os.path.join(d, f) for f in ("model.onnx", "input", "calib"))
    res = dict(model=name, errors=[])
    if not all(os.path.exists(p) for p in (src, ind, calib)):
        row = check_model(r, name, spec)
        if not os.path.exists(src):
            res["errors"] = row["errors"]
            return res
    for f, args in (("static.onnx", ["--mode", "static", "--calib", calib, "--report-samples", "0"]),
                    ("static7.onnx", ["--mode", "static", "--calib", calib, "--report-samples", "0",
                                      "--reduce-range"]),
                    ("dynamic.onnx", ["--mode", "dynamic", "--reduce-range"])):
        try:
            run([r.kvant, "quantize", src, "-o", os.path.join(d, f), "--force", "--no-speed-check", *args],
                r.timeout)
        except RuntimeError as e:
            res["errors"].append(f"quantize {f}: {e}")
    # N: about 0.4 s of kvant FP32 CPU time per process.
    try:
        ms = max(cpu_per_run(r, "kvant", src, ind, 5)[0], 0.02)
    except RuntimeError:
        ms = 20.0
    n = max(5, min(2000, round(400.0 / ms)))
    res["runs"] = n
    cpu, wall, failed = {}, {}, {}
    for _ in range(rounds):
        for label, engine, f in SPEED_PAIRS:
            model = os.path.join(d, f)
            if label in failed or not os.path.exists(model):
                continue
            try:
                c, w = cpu_per_run(r, engine, model, ind, n)
            except RuntimeError as e:
                failed[label] = str(e)[:160]
                continue
            cpu.setdefault(label, []).append(c)
            wall[label] = min(wall.get(label, w), w)
    res["cpu"] = {k: float(np.median(v)) for k, v in cpu.items()}
    res["wall"], res["failed"] = wall, failed

    def ratio(a, b):  # median over rounds of cpu[a] / cpu[b]
        if a not in cpu or b not in cpu or len(cpu[a]) != len(cpu[b]):
            return None
        return float(np.median([x / max(y, 1e-6) for x, y in zip(cpu[a], cpu[b])]))
    res["ratios"] = dict(int8_speedup=ratio("kvant_fp32", "kvant_s7"),
                         int8_8bit_speedup=ratio("kvant_fp32", "kvant_s8"), vs_ort_int8=ratio("ort_s7", "kvant_s7"),
                         fp32_vs_ort=ratio("kvant_fp32", "ort_fp32"), dyn_speedup=ratio("kvant_fp32", "kvant_dyn"))
    return res


def speed_table(rows):
    def ms(res, k):
        v = res.get("cpu", {}).get(k)
        return "-" if v is None else (f"{v:.2f}" if v < 10 else f"{v:.1f}")

    def x(v):
        return "-" if v is None else f"{v:.2f}"
    out = ["| model | kvant FP32 | ORT FP32 | kvant static 8-bit | kvant static 7-bit | ORT static 7-bit | "
           "kvant dynamic 7-bit | INT8 speedup: FP32 / static 7-bit (8-bit) | ORT INT8 / kvant INT8 (7-bit file) | "
           "kvant FP32 / ORT FP32 | dynamic speedup: FP32 / dynamic | N | errors |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for res in rows:
        q = res.get("ratios", {})
        sp = x(q.get("int8_speedup")) + (f" ({x(q['int8_8bit_speedup'])})" if q.get("int8_8bit_speedup") else "")
        err = [f"{k}: {v}" for k, v in res.get("failed", {}).items()] + res["errors"]
        err = "; ".join(short_errors(err)).replace("|", "\\|").replace("\n", " ")
        out.append(f"| {res['model']} | {' | '.join(ms(res, k) for k, _, _ in SPEED_PAIRS)} | {sp} | "
                   f"{x(q.get('vs_ort_int8'))} | {x(q.get('fp32_vs_ort'))} | {x(q.get('dyn_speedup'))} | "
                   f"{res.get('runs', '-')} | {err} |")
    return "\n".join(out)


# ------------------------------------------------------------------ report ---

def fmt_db(v):
    if v is None:
        return "-"
    return "inf" if v == float("inf") else ("shape differs" if v != v else f"{v:.1f}")


def short_errors(errors):
    """The same message from several steps once, with the steps named."""
    groups = {}
    for e in errors:
        where, _, msg = e.partition(": ")
        msg = re.sub(r"(kvant \w+: )?kvant: error: ", "", msg)
        msg = re.sub(r"/\S*/(build/zoo/)?", "", msg)
        groups.setdefault(msg, []).append(where)
    return [f"{', '.join(w)}: {m}" for m, w in groups.items()]


def table(rows):
    out = ["| model | source / opset | params | FP32 kvant vs ORT / vs PyTorch (rel) | "
           "static: ok / SQNR / ORT vs kvant / float left in ORT | dynamic: ok / SQNR / ORT vs kvant | "
           "plan fallbacks (FP32 / static / dynamic) | "
           "errors |",
           "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        p = row.get("params")
        params = "-" if p is None else (f"{p / 1e6:.2f} M" if p >= 1e5 else f"{p / 1e3:.1f} k")
        def rel_text(v):
            return "shape differs" if v != v else f"{v:.1e}"
        fp = "-" if "fp32_rel" not in row else rel_text(row["fp32_rel"])
        if "torch_rel" in row:
            fp += f" / {rel_text(row['torch_rel'])}"
        cells = []
        for mode in ("static", "dynamic"):
            res = row.get(mode)
            if res is None:
                cells.append("-")
                continue
            o = fmt_db(res.get("ort_sqnr"))
            if o == "-" and res.get("ort_ok"):
                o = "runs" + (f" ({fmt_db(res['ort_vs_fp32'])} vs ORT FP32)" if "ort_vs_fp32" in res else "")
            c = ["ok" if res.get("ok") else "FAIL", fmt_db(res.get("sqnr")), o]
            if mode == "static":
                fl = res.get("float_left")
                c.append("-" if fl is None else str(fl) + (f" ({', '.join(res['float_ops'])})" if fl else ""))
            cells.append(" / ".join(c))
        fb = []
        for v, ops in ((row.get("fp32_fallbacks"), row.get("fp32_fallback_ops")),
                       *(((row.get(m) or {}).get("fallbacks"), (row.get(m) or {}).get("fallback_ops"))
                         for m in ("static", "dynamic"))):
            fb.append("-" if v is None else str(v) + (f" ({', '.join(ops)})" if ops else ""))
        err = "; ".join(short_errors(row["errors"])).replace("|", "\\|").replace("\n", " ")
        out.append(f"| {row['model']} | {row['source']} / {row['opset']} | {params} | {fp} | {cells[0]} | {cells[1]} "
                   f"| {' / '.join(fb)} | {err} |")
    return "\n".join(out)


def problems(row):
    bad = list(row["errors"])
    if "fp32_rel" in row and row["fp32_rel"] > MAX_FP32_REL:
        bad.append(f"FP32 differs from ORT by {row['fp32_rel']:.1e} relative")
    for mode in ("static", "dynamic"):
        res = row.get(mode) or {}
        for key, what in (("sqnr", "INT8 vs FP32"), ("ort_sqnr", "ORT vs kvant")):
            if key in res and not res[key] >= MIN_SQNR:
                bad.append(f"{mode} {what} SQNR {res[key]:.1f} dB < {MIN_SQNR:.0f}")
    return bad


def cpu_name():
    cpu, flags = "unknown CPU", set()
    try:
        for ln in open("/proc/cpuinfo"):
            if ln.startswith("model name") and cpu == "unknown CPU":
                cpu = ln.split(":", 1)[1].strip()
            elif ln.startswith("flags") and not flags:
                flags = set(ln.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("fma", "FMA"),
                                   ("avx512_vnni", "AVX512-VNNI"), ("avx_vnni", "AVX-VNNI"), ("amx_int8", "AMX"))
           if flag in flags]
    return cpu + (" (" + " + ".join(isa) + ")" if isa else "")


def write_doc(table_text, command, what="zoo table", note=""):
    """Replaces docs/zoo.md's text between <!-- WHAT --> and <!-- end WHAT -->."""
    path = os.path.join(ROOT, "docs", "zoo.md")
    text = open(path).read()
    begin, end = f"<!-- {what} -->", f"<!-- end {what} -->"
    i, j = text.index(begin), text.index(end)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    body = (f"{begin}\nGenerated {stamp} by `{command}` on {cpu_name()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, onnx {onnx.__version__}, ONNX Runtime from "
            f"node_modules/onnxruntime-node.{note}\n\n{table_text}\n{end}")
    with open(path, "w") as f:
        f.write(text[:i] + body + text[j + len(end):])


def main():
    global MIN_SQNR
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kvant", default=os.path.join(ROOT, "build", "release", "kvant"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "zoo"))
    ap.add_argument("--models", default="", help="comma-separated names (default: all)")
    ap.add_argument("--timeout", type=int, default=240, help="seconds per step")
    ap.add_argument("--write", action="store_true", help="write the table into docs/zoo.md")
    ap.add_argument("--check", action="store_true", help="exit 1 on any failure or SQNR below --min-sqnr")
    ap.add_argument("--min-sqnr", type=float, default=15.0, help="dB (default 15)")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--speed", action="store_true", help="measure CPU time per run instead of checking")
    ap.add_argument("--rounds", type=int, default=3, help="with --speed: interleaved rounds (default 3)")
    a = ap.parse_args()
    MIN_SQNR = a.min_sqnr
    if a.list:
        print("\n".join(MODELS))
        return 0
    names = [n for n in a.models.split(",") if n] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"zoo.py: unknown model(s) {', '.join(unknown)}; --list names them", file=sys.stderr)
        return 2
    if not os.path.isfile(a.kvant):
        print(f"zoo.py: no kvant binary at {a.kvant} (--kvant)", file=sys.stderr)
        return 2
    if not os.path.isdir(os.path.join(ROOT, "node_modules", "onnxruntime-node")):
        why = "node_modules/onnxruntime-node is missing (scripts/install_deps.sh installs it)"
        if os.environ.get("KVANT_REQUIRE_ORT"):
            print(f"FAIL: {why}, and KVANT_REQUIRE_ORT is set", file=sys.stderr)
            return 1
        print(f"SKIPPED: {why} (set KVANT_REQUIRE_ORT=1 to make this a failure)")
        return 77
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    r = Runner(os.path.abspath(a.kvant), os.path.abspath(a.out), a.timeout)
    os.makedirs(r.work, exist_ok=True)
    command = "/usr/bin/python3 scripts/zoo.py " + " ".join(sys.argv[1:])
    if a.speed:
        rows = []
        for n in names:
            res = speed_model(r, n, MODELS[n], max(1, a.rounds))
            rows.append(res)
            print(speed_table([res]).splitlines()[-1])
            sys.stdout.flush()
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=1, default=str)
        if a.write:
            write_doc(speed_table(rows), command, "zoo speed",
                      f" CPU ms per run (median over {a.rounds} rounds), batch 1, 1 thread.")
        return 0
    rows, bad = [], 0
    for n in names:
        row = check_model(r, n, MODELS[n])
        rows.append(row)
        p = problems(row)
        bad += bool(p)
        print(f"{'FAIL' if p else 'PASS'} {n} ({row.get('seconds', '-')} s)" + (": " + "; ".join(p) if p else ""))
        print(table([row]).splitlines()[-1])
        sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1, default=str)
    if a.write:
        write_doc(table(rows), command)
    print(f"{len(rows) - bad} of {len(rows)} models without problems")
    return 1 if a.check and bad else 0


if __name__ == "__main__":
    sys.exit(main())
