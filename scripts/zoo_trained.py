#!/usr/bin/python3
"""Top-1 agreement of INT8 with FP32 on zoo classifier architectures with
trained weights (issue 9). No pretrained weights can be downloaded here, so
each torchvision architecture (num_classes=10) is trained on Fashion-MNIST
from Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
each 28x28 image resized (bilinear) to --size and replicated to 3 channels:

    /usr/bin/python3 scripts/zoo_trained.py [--kvant build/release/kvant] [--out build/zoo_trained]
        [--models a,b,...] [--size 32] [--train-images N] [--epochs E]
        [--calib-images 200] [--test-images 10000] [--write] [--min-agreement P]

Per model:
  - training (1 thread, Adam with a one-cycle schedule, batch 64, the first
    N training images for E epochs, per model in MODELS; BatchNorm running
    statistics then recomputed over 2048 of them), cached in
    OUT/<model>/weights.pt with its PyTorch FP32 test accuracy (delete the
    file to retrain);
  - export at the model's opset (11/13/17), batch axis dynamic;
  - `kvant quantize --mode static --calib DIR` (DIR: --calib-images training
    images not used for training, one .npy each) and `--mode dynamic
    --reduce-range`;
  - every test image through kvant (FP32, static, dynamic) and ONNX Runtime
    (FP32, and the static file at the default optimization level, its fused
    integer kernels, and at --opt-level basic, QDQ semantics), in chunks of
    1000 images;
  - top-1 accuracy of each, and the top-1 agreement of each INT8 run with the
    same engine's FP32 run (the share of test images whose argmax is equal).

--write replaces docs/zoo.md's "<!-- trained table -->" section (with
--from-saved DIR,DIR: from what earlier runs left in their --out folders,
e.g. the models split over two processes, without running anything);
--min-agreement P exits 1 when a static or dynamic agreement in kvant is
below P (a fraction). Needs torch, torchvision, onnx, numpy, node and
node_modules/onnxruntime-node.
"""
import argparse
import json
import os
import re
import shutil
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
    print(f"SKIPPED: zoo_trained.py needs torch, torchvision and onnx ({missing})")
    sys.exit(77)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from train_demo_cnn import MEAN, STD, read_idx  # noqa: E402
from zoo import cpu_name  # noqa: E402

ORT_RUN = os.path.join(ROOT, "scripts", "ort_run.js")
DATA = "/usr/share/datasets/fashion-mnist"
F = torch.nn.functional

# name -> (constructor keyword arguments, opset, learning rate, training images, epochs): the training budget is
# what reached > 80% FP32 test accuracy here (SqueezeNet, without BatchNorm, ShuffleNet 0.5x and MobileNetV2 need more).
MODELS = {
    "resnet18": ({}, 11, 1e-3, 15000, 1),
    "mobilenet_v2": ({}, 13, 2e-3, 30000, 2),
    "mobilenet_v3_small": ({}, 17, 2e-3, 15000, 1),
    "shufflenet_v2_x0_5": ({}, 13, 4e-3, 30000, 2),
    "squeezenet1_1": ({}, 11, 1e-3, 30000, 2),
    "efficientnet_b0": ({}, 13, 2e-3, 15000, 1),
    "mnasnet0_5": ({}, 17, 4e-3, 15000, 1),
    "regnet_y_400mf": ({}, 13, 2e-3, 15000, 1),
}


def images(prefix, first, count, size):
    """Fashion-MNIST images [first, first + count) of the split, normalised,
    resized to size x size, 1 channel (replicated to 3 at use)."""
    x = read_idx(os.path.join(DATA, f"{prefix}-images-idx3-ubyte.gz"))[first:first + count]
    y = read_idx(os.path.join(DATA, f"{prefix}-labels-idx1-ubyte.gz"))[first:first + count]
    t = torch.from_numpy((x.astype(np.float32) / 255.0 - MEAN) / STD)[:, None]
    if size != 28:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.contiguous(), torch.from_numpy(y.astype(np.int64))


def rgb(t):
    return t.expand(-1, 3, -1, -1).contiguous()


def build(name):
    kw = MODELS[name][0]
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None, num_classes=10, **kw)


def accuracy(model, x, y):
    model.eval()
    hit = 0
    with torch.no_grad():
        for i in range(0, len(x), 500):
            hit += int((model(rgb(x[i:i + 500])).argmax(1) == y[i:i + 500]).sum())
    return hit / len(x)


def recalibrate_batchnorm(model, x, batch, images=2048):
    """BatchNorm running statistics recomputed as plain averages over the
    first `images` training images (train mode, no gradient): torchvision's
    MobileNetV3 and MNASNet use momentum 0.01 and 0.0003, so after a few
    hundred steps their running statistics are still near the initial
    0 / 1 and the eval-mode network predicts one class."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, min(len(x), images), batch):
            model(rgb(x[i:i + batch]))
    model.eval()


def budget(name, a):
    """(training images, epochs) of a model: the table's unless given."""
    return a.train_images or MODELS[name][3], a.epochs or MODELS[name][4]


def train(name, a, d, test):
    """Trains (or loads the cached weights of) one model; returns (model, info)."""
    model = build(name)
    cache = os.path.join(d, "weights.pt")
    if os.path.exists(cache):
        saved = torch.load(cache)
        model.load_state_dict(saved["state"])
        model.eval()
        return model, saved["info"]
    n_train, epochs = budget(name, a)
    x, y = images("train", 0, n_train, a.size)
    opt = torch.optim.Adam(model.parameters(), lr=MODELS[name][2])
    steps = epochs * ((len(x) + a.batch - 1) // a.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, MODELS[name][2], total_steps=steps)
    g = torch.Generator().manual_seed(0)
    t0, c0 = time.time(), time.process_time()
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), a.batch):
            idx = order[i:i + a.batch]
            if len(idx) < 2:
                continue
            loss = F.cross_entropy(model(rgb(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    recalibrate_batchnorm(model, x, a.batch)
    info = dict(train_images=len(x), epochs=epochs, size=a.size, train_s=round(time.time() - t0, 1),
                train_cpu_s=round(time.process_time() - c0, 1), params=sum(p.numel() for p in model.parameters()))
    info["torch_acc"] = accuracy(model, *test)
    torch.save({"state": model.state_dict(), "info": info}, cache)
    return model, info


def run(cmd, timeout=900):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if r.returncode != 0:
        tool = "ORT" if cmd[0] == "node" else f"kvant {cmd[1]}"
        lines = [ln for ln in (r.stderr or r.stdout).strip().splitlines() if "W:onnxruntime" not in ln]
        raise RuntimeError(f"{tool}: {lines[-1] if lines else '(no output)'}")
    return r.stdout + r.stderr


def logits(engine, model, chunks, out, level=None):
    """Runs every chunk of test images through one engine; returns [N, 10]."""
    parts = []
    for k, chunk in enumerate(chunks):
        o = os.path.join(out, f"c{k}")
        if engine == "kvant":
            run([KVANT, "run", model, "--input", f"x={chunk}", "--output-dir", o, "--force"])
        else:
            cmd = ["node", ORT_RUN, model, "--input", f"x={chunk}", "--output-dir", o]
            run(cmd + (["--opt-level", level] if level else []))
        parts.append(np.load(os.path.join(o, "y.npy")))
    return np.concatenate(parts)


def evaluate(name, a, test_dir, chunks, labels, test):
    d = os.path.join(a.out, name)
    os.makedirs(d, exist_ok=True)
    model, info = train(name, a, d, test)
    row = dict(model=name, opset=MODELS[name][1], **info)
    src = os.path.join(d, "model.onnx")
    model.eval()
    torch.onnx.export(model, torch.zeros(1, 3, a.size, a.size), src, opset_version=MODELS[name][1],
                      input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
                      do_constant_folding=True)
    calib = os.path.join(d, "calib")
    shutil.rmtree(calib, ignore_errors=True)
    os.makedirs(calib)
    # Calibration: training images after the ones used for training.
    cx, _ = images("train", budget(name, a)[0], a.calib_images, a.size)
    for i in range(len(cx)):
        np.save(os.path.join(calib, f"s{i:04d}.npy"), rgb(cx[i:i + 1]).numpy())
    files = {"fp32": src}
    for mode, args in (("static", ["--mode", "static", "--calib", calib, "--samples", str(a.calib_images),
                                  "--report-samples", "0"]),
                       ("dynamic", ["--mode", "dynamic", "--reduce-range"])):
        files[mode] = os.path.join(d, mode + ".onnx")
        t0 = time.time()
        run([KVANT, "quantize", src, "-o", files[mode], "--force", "--no-speed-check", *args])
        row[f"{mode}_quantize_s"] = round(time.time() - t0, 1)
        onnx.checker.check_model(onnx.load(files[mode]), full_check=True)
    out = {}
    for key, engine, f, level in (("kv_fp32", "kvant", "fp32", None), ("kv_static", "kvant", "static", None),
                                  ("kv_dynamic", "kvant", "dynamic", None), ("ort_fp32", "ort", "fp32", None),
                                  ("ort_static", "ort", "static", None),
                                  ("ort_static_basic", "ort", "static", "basic")):
        out[key] = logits(engine, files[f], chunks, os.path.join(d, key), level)
    return scores(d, row, out, labels)


RUNS = ("kv_fp32", "kv_static", "kv_dynamic", "ort_fp32", "ort_static", "ort_static_basic")


def scores(d, row, out, labels):
    """Top-1, agreement, margins and logits SQNR of one model's runs (out:
    run -> [N, 10] logits)."""
    top = {k: v.argmax(1) for k, v in out.items()}
    for k, t in top.items():
        row[f"acc_{k}"] = float(np.mean(t == labels))
    row["agree_kv_static"] = float(np.mean(top["kv_static"] == top["kv_fp32"]))
    row["agree_kv_dynamic"] = float(np.mean(top["kv_dynamic"] == top["kv_fp32"]))
    row["agree_ort_static"] = float(np.mean(top["ort_static"] == top["ort_fp32"]))
    row["agree_ort_static_basic"] = float(np.mean(top["ort_static_basic"] == top["ort_fp32"]))
    row["fp32_kv_vs_ort_agree"] = float(np.mean(top["kv_fp32"] == top["ort_fp32"]))
    margin_stats(d, row, (len(labels) + 999) // 1000)
    ref = out["kv_fp32"].astype(np.float64)
    for k in ("kv_static", "kv_dynamic"):
        noise = np.sum((ref - out[k]) ** 2)
        row[f"sqnr_{k}"] = float(10 * np.log10(np.sum(ref ** 2) / noise)) if noise else float("inf")
    return row


def probe(name, a, chunks, labels):
    """--probe: the trained, exported model of an earlier run quantized with
    other `kvant quantize` arguments; its top-1 and agreement in kvant and
    in ONNX Runtime (default optimizations)."""
    d = os.path.join(a.out, name)
    tag = "probe-" + re.sub(r"[^A-Za-z0-9.]+", "_", a.probe).strip("_")  # concurrent probes do not collide
    q = os.path.join(d, tag + ".onnx")
    args = a.probe.split()
    if "--calib" in args:  # the run's calibration folder
        args[args.index("--calib") + 1] = os.path.join(d, "calib")
    run([KVANT, "quantize", os.path.join(d, "model.onnx"), "-o", q, "--force", "--no-speed-check", *args])
    ref = logits("kvant", os.path.join(d, "model.onnx"), chunks, os.path.join(d, "kv_fp32")).argmax(1)
    got = logits("kvant", q, chunks, os.path.join(d, tag + ".kv")).argmax(1)
    ort_ref = logits("ort", os.path.join(d, "model.onnx"), chunks, os.path.join(d, "ort_fp32")).argmax(1)
    ort = logits("ort", q, chunks, os.path.join(d, tag + ".ort")).argmax(1)
    print(f"| {name} | `{a.probe}` | {pct(np.mean(ref == labels))} | {pct(np.mean(got == labels))} | "
          f"{pct(np.mean(got == ref))} | {pct(np.mean(ort == labels))} | {pct(np.mean(ort == ort_ref))} |")
    sys.stdout.flush()


def margin_stats(d, row, n_chunks):
    """Where the INT8 runs' top-1 flips sit: how many of kvant's static
    (dynamic) disagreements are among the 5% of test images whose FP32
    top-1 / top-2 logit margin is smallest, and the median margin of the
    flipped images against all images'."""
    def load(key):
        return np.concatenate([np.load(os.path.join(d, key, f"c{k}", "y.npy")) for k in range(n_chunks)])
    f = load("kv_fp32")
    s = np.sort(f, 1)
    margin = s[:, -1] - s[:, -2]
    low = margin < np.quantile(margin, 0.05)
    row["margin_median"] = float(np.median(margin))
    for mode in ("static", "dynamic"):
        flip = load("kv_" + mode).argmax(1) != f.argmax(1)
        row[f"flips_{mode}"] = int(flip.sum())
        row[f"flips_low_margin_{mode}"] = int((flip & low).sum())
        row[f"flip_margin_median_{mode}"] = float(np.median(margin[flip])) if flip.any() else 0.0


def pct(v):
    return f"{100 * v:.2f}"


def table(rows, n_test):
    head = ("| model | opset | params | trained on (images x epochs, CPU s) | FP32 top-1: PyTorch / kvant / ORT "
            "| static INT8 top-1: kvant / ORT / ORT basic | static agreement: kvant / ORT / ORT basic "
            "| dynamic top-1 / agreement (kvant) | logits SQNR dB: static / dynamic "
            "| kvant flips in the 5% lowest-margin images: static / dynamic | median FP32 margin: all / flipped "
            "(static) |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {MODELS[r['model']][1]} | | | | | | | | | error: {r['error']} |")
            continue
        lines.append(
            f"| {r['model']} | {r['opset']} | {r['params'] / 1e6:.2f} M | {r['train_images']} x {r['epochs']}, "
            f"{r['train_cpu_s']:.0f} | {pct(r['torch_acc'])} / {pct(r['acc_kv_fp32'])} / {pct(r['acc_ort_fp32'])} | "
            f"{pct(r['acc_kv_static'])} / {pct(r['acc_ort_static'])} / {pct(r['acc_ort_static_basic'])} | "
            f"**{pct(r['agree_kv_static'])}** / {pct(r['agree_ort_static'])} / {pct(r['agree_ort_static_basic'])} | "
            f"{pct(r['acc_kv_dynamic'])} / **{pct(r['agree_kv_dynamic'])}** | "
            f"{r['sqnr_kv_static']:.1f} / {r['sqnr_kv_dynamic']:.1f} | "
            f"{r['flips_low_margin_static']} of {r['flips_static']} / "
            f"{r['flips_low_margin_dynamic']} of {r['flips_dynamic']} | "
            f"{r['margin_median']:.2f} / {r['flip_margin_median_static']:.2f} |")
    return "\n".join(lines)


def write_doc(text, command):
    path = os.path.join(ROOT, "docs", "zoo.md")
    doc = open(path).read()
    begin, end = "<!-- trained table -->", "<!-- end trained table -->"
    i, j = doc.index(begin), doc.index(end)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    body = (f"{begin}\nGenerated {stamp} by `{command}` on {cpu_name()}, torch {torch.__version__}, "
            f"torchvision {torchvision.__version__}, onnx {onnx.__version__}, ONNX Runtime from "
            f"node_modules/onnxruntime-node. Top-1 and agreement in %.\n\n{text}\n{end}")
    with open(path, "w") as f:
        f.write(doc[:i] + body + doc[j + len(end):])


def main():
    global KVANT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kvant", default=os.path.join(ROOT, "build", "release", "kvant"))
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "zoo_trained"))
    ap.add_argument("--models", default="", help="comma-separated names (default: all)")
    ap.add_argument("--size", type=int, default=32, help="image side after resizing (default 32)")
    ap.add_argument("--train-images", type=int, help="training images used (default: the model's, MODELS)")
    ap.add_argument("--epochs", type=int, help="training epochs (default: the model's, MODELS)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--calib-images", type=int, default=200, help="calibration images (default 200)")
    ap.add_argument("--test-images", type=int, default=10000, help="test images (default all 10000)")
    ap.add_argument("--write", action="store_true", help="write the table into docs/zoo.md")
    ap.add_argument("--json", help="also write the rows as JSON here")
    ap.add_argument("--from-saved", help="comma-separated --out folders of earlier runs: the table from the weights "
                    "and outputs they saved (models whose runs are complete), nothing run")
    ap.add_argument("--probe", help="kvant quantize arguments (\"--calib\" is replaced by the run's calibration "
                    "folder): quantize the cached models of an earlier run with them and print kvant's top-1 and "
                    "agreement with FP32")
    ap.add_argument("--min-agreement", type=float, help="exit 1 when a kvant agreement is below this fraction")
    a = ap.parse_args()
    names = [n for n in a.models.split(",") if n] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"zoo_trained.py: unknown model(s) {', '.join(unknown)}", file=sys.stderr)
        return 2
    if a.from_saved:
        # The rows of earlier runs from what they left in their --out folders
        # (weights.pt's training record and every run's logits), nothing run.
        labels = images("t10k", 0, a.test_images, a.size)[1].numpy()
        n_chunks = (a.test_images + 999) // 1000
        rows = []
        for n in names:
            d = [os.path.join(x, n) for x in a.from_saved.split(",") if os.path.isfile(os.path.join(x, n, "weights.pt"))
                 and os.path.isfile(os.path.join(x, n, "ort_static_basic", f"c{n_chunks - 1}", "y.npy"))]
            if not d:
                continue
            info = torch.load(os.path.join(d[0], "weights.pt"))["info"]
            row = dict(model=n, opset=MODELS[n][1], **info)
            out = {k: np.concatenate([np.load(os.path.join(d[0], k, f"c{i}", "y.npy")) for i in range(n_chunks)])
                   for k in RUNS}
            scores(d[0], row, out, labels)
            rows.append(row)
        text = table(rows, a.test_images)
        print(text)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(rows, f, indent=1)
        if a.write:
            write_doc(text, "/usr/bin/python3 scripts/zoo_trained.py " + " ".join(sys.argv[1:]))
        return 0
    KVANT = os.path.abspath(a.kvant)
    a.out = os.path.abspath(a.out)
    if not os.path.isfile(KVANT):
        print(f"zoo_trained.py: no kvant binary at {KVANT} (--kvant)", file=sys.stderr)
        return 2
    if not os.path.isdir(DATA):
        print(f"SKIPPED: no Fashion-MNIST at {DATA} (Debian's dataset-fashion-mnist)")
        return 77
    if not os.path.isdir(os.path.join(ROOT, "node_modules", "onnxruntime-node")):
        print("SKIPPED: node_modules/onnxruntime-node is missing")
        return 77
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    test = images("t10k", 0, a.test_images, a.size)
    labels = test[1].numpy()
    test_dir = os.path.join(a.out, f"test{a.size}_{a.test_images}")
    os.makedirs(test_dir, exist_ok=True)
    chunks = []
    for k, i in enumerate(range(0, a.test_images, 1000)):
        chunks.append(os.path.join(test_dir, f"x{k}.npy"))
        np.save(chunks[-1], rgb(test[0][i:i + 1000]).numpy())
    if a.probe:
        print("| model | kvant quantize | FP32 top-1 | kvant INT8 top-1 | kvant agreement | ORT INT8 top-1 (default "
              "optimizations) | ORT agreement |\n|---|---|---|---|---|---|---|")
        for n in names:
            probe(n, a, chunks, labels)
        return 0
    rows, bad = [], 0
    for n in names:
        t0 = time.time()
        try:
            row = evaluate(n, a, test_dir, chunks, labels, test)
        except Exception as e:  # noqa: BLE001 - recorded in the table
            row = dict(model=n, error=str(e)[:200])
        rows.append(row)
        low = "error" in row or (a.min_agreement is not None and min(row["agree_kv_static"], row[
            "agree_kv_dynamic"]) < a.min_agreement)
        bad += low
        print(f"{'FAIL' if low else 'done'} {n} ({time.time() - t0:.0f} s)")
        print(table([row], a.test_images).splitlines()[-1])
        sys.stdout.flush()
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    if a.write:
        write_doc(table(rows, a.test_images), "/usr/bin/python3 scripts/zoo_trained.py " + " ".join(sys.argv[1:]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
