#!/usr/bin/python3
"""QAT vs PTQ at INT8 on the LSTM classifier (models/fmnist/lstm_rows.onnx), with kvant.torch's QLSTM.

  1. FP32: the ONNX model's weights loaded into PyTorch (LSTM hidden 128 over the 28 image rows,
     last hidden state, Linear 128->10); its top-1 in PyTorch must equal kvant's on the ONNX file.
  2. PTQ with kvant: `kvant quantize --mode dynamic` (LSTM W/R and Gemm weights int8, activations
     at run time) and `--mode static` (--calib-images training images; static mode quantizes the
     LSTM's W/R per gate row and its input/output, and the Gemm's input; the logits stay float).
  3. QAT: kvant.torch.prepare_qat(weight_bits=8, calibration=the same training images): the LSTM's
     W/R fake-quantized per gate row (int8), the graph input and the Linear's input/output uint8;
     measured before training ("QAT start", a PTQ in kvant.torch's scheme) and after --epochs epochs
     of --train-images images (AdamW, cosine lr from --lr, gradient norm clipped at 1), exported
     with kvant.torch.export.
  4. QAT from kvant's own PTQ: prepare_qat(init_from=the static PTQ file of step 2): the LSTM's
     input and the Gemm's input ranges are the file's; the logits, which static mode leaves float
     (no point in the file), are observed on the calibration images. Trained the same way.
  5. Control: the FP32 model fine-tuned the same epochs on the same images in the same order with
     the same optimizer (no fake quantization), exported to ONNX, and quantized by kvant the same
     two ways as step 2: whether QAT's gain is more than the extra training.
Top-1 on the 10,000 Fashion-MNIST test images; each QAT model three ways: the PyTorch fake-quant
model, kvant's compiled runtime (kvant.InferenceSession) and ONNX Runtime 1.30 (scripts/ort_run.js)
on the exported file; exit status 1 if kvant or ONNX Runtime differ from PyTorch by more than 0.1 point.

--out FILE replaces the section between LSTM_BEGIN and LSTM_END in FILE (appended the first time).

Usage: PYTHONPATH=build/release/python /usr/bin/python3 python/tools/qat_lstm.py [--out docs/accuracy.md]
       [--kvant build/release/kvant] [--epochs 1] [--train-images 20000] [--lr 1e-4] [--reduce-range]
"""

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from doc_section import cpu_name, write_section  # noqa: E402
from train_demo_cnn import load_split  # noqa: E402  (the same normalisation: (pixel / 255 - 0.2860) / 0.3530)
from qat_table import top1_kvant, top1_ort, top1_torch  # noqa: E402  (top-1 in PyTorch, kvant and ONNX Runtime)

import kvant  # noqa: E402
import kvant.torch as kqat  # noqa: E402

LSTM_BEGIN = "<!-- qat_lstm.py: begin (regenerated; edit python/tools/qat_lstm.py, not this section) -->"
LSTM_END = "<!-- qat_lstm.py: end -->"


class LstmRows(nn.Module):
    """scripts/train_fmnist_models.py's LstmRows, indexing the LSTM's outputs instead of unpacking
    them (torch 1.13's fx cannot unpack a traced tuple on Python 3.11); the same parameters."""

    def __init__(self, hidden=128):
        super().__init__()
        self.lstm = nn.LSTM(input_size=28, hidden_size=hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 10)

    def forward(self, image):
        out = self.lstm(image.reshape(-1, 28, 28))
        return self.fc(out[1][0][-1])


def load_lstm(path):
    """The ONNX file's LSTM (gates i, o, f, c) and Gemm weights in PyTorch's layout (gates i, f, g, o)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    (lstm,) = [n for n in proto.graph.node if n.op_type == "LSTM"]
    (gemm,) = [n for n in proto.graph.node if n.op_type == "Gemm"]
    w, r, b = consts[lstm.input[1]][0], consts[lstm.input[2]][0], consts[lstm.input[3]][0]
    h = r.shape[1]
    order = np.concatenate([np.arange(g * h, (g + 1) * h) for g in (0, 2, 3, 1)])  # torch block <- ONNX block
    model = LstmRows(h)
    with torch.no_grad():
        model.lstm.weight_ih_l0.copy_(torch.from_numpy(w[order].copy()))
        model.lstm.weight_hh_l0.copy_(torch.from_numpy(r[order].copy()))
        model.lstm.bias_ih_l0.copy_(torch.from_numpy(b[:4 * h][order].copy()))
        model.lstm.bias_hh_l0.copy_(torch.from_numpy(b[4 * h:][order].copy()))
        fc_w = consts[gemm.input[1]]
        trans_b = any(a.name == "transB" and a.i == 1 for a in gemm.attribute)
        model.fc.weight.copy_(torch.from_numpy((fc_w if trans_b else fc_w.T).copy()))
        model.fc.bias.copy_(torch.from_numpy(consts[gemm.input[2]].copy()))
    return model.eval()


def fine_tune(model, train_x, train_y, args, label):
    start = time.time()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    batch = 128
    steps = args.epochs * ((args.train_images + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(0)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)[:args.train_images]
        total = 0.0
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            loss = F.cross_entropy(model(train_x[idx]), train_y[idx])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        print("%s epoch %d: train loss %.4f (%.0f s)" % (label, epoch + 1, total / len(order), time.time() - start),
              flush=True)
    model.eval()
    return time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "fmnist", "lstm_rows.onnx"))
    parser.add_argument("--kvant", default=os.environ.get("KVANT_CLI", os.path.join(ROOT, "build", "release", "kvant")))
    parser.add_argument("--calib-images", type=int, default=500)
    parser.add_argument("--train-images", type=int, default=20000, help="training images per QAT epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weight codes (ONNX Runtime on AVX2)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="write the section into this markdown file")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start_wall, start_cpu = time.time(), time.process_time()
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "t10k")
    tmp = tempfile.mkdtemp(prefix="kvant_qat_lstm_")
    calib = train_x[:args.calib_images]
    np.save(os.path.join(tmp, "calib.npy"), calib.numpy())
    x_file = os.path.join(tmp, "test.npy")
    np.save(x_file, test_x.numpy())

    fp32 = load_lstm(args.model)
    fp32_torch, fp32_kvant = top1_torch(fp32, test_x, test_y), top1_kvant(args.model, test_x, test_y)
    if abs(fp32_torch - fp32_kvant) > 0.001:
        raise SystemExit("the PyTorch copy (%.4f) does not compute the ONNX model (%.4f)" % (fp32_torch, fp32_kvant))

    def ptq(model_path, label):
        """kvant quantize --mode dynamic and --mode static of model_path: (top-1, bytes, file) each."""
        out = {}
        for mode, extra in (("dynamic", ["--mode", "dynamic"]),
                            ("static", ["--mode", "static", "--calib", os.path.join(tmp, "calib.npy"),
                                        "--report-samples", "0"])):
            path = os.path.join(tmp, "%s_ptq_%s.onnx" % (label, mode))
            subprocess.run([args.kvant, "quantize", model_path, "-o", path, "--no-speed-check"] +
                           extra + (["--reduce-range"] if args.reduce_range else []), check=True, capture_output=True)
            out[mode] = (top1_kvant(path, test_x, test_y), os.path.getsize(path), path)
        return out

    def three_ways(model, path):
        """Top-1 of a QAT model in PyTorch, of its export in kvant and in ONNX Runtime; the file's bytes."""
        kqat.export(model, path, (calib[:1],), output_names=["logits"])
        return (top1_torch(model, test_x, test_y), top1_kvant(path, test_x, test_y),
                top1_ort(path, x_file, test_y, tmp), os.path.getsize(path))

    rows = ptq(args.model, "fp32")

    qat = kqat.prepare_qat(fp32, (calib[:1],), weight_bits=8, calibration=[calib], reduce_range=args.reduce_range)
    start = three_ways(qat, os.path.join(tmp, "qat_start.onnx"))
    seconds = fine_tune(qat, train_x, train_y, args, "QAT")
    tuned = three_ways(qat, os.path.join(tmp, "qat.onnx"))

    # QAT from kvant's own static PTQ parameters (the logits' range observed: static leaves them float).
    qat_ptq = kqat.prepare_qat(fp32, (calib[:1],), weight_bits=8, init_from=rows["static"][2], calibration=[calib],
                               reduce_range=args.reduce_range)
    ptq_start = three_ways(qat_ptq, os.path.join(tmp, "qat_ptq_start.onnx"))
    fine_tune(qat_ptq, train_x, train_y, args, "QAT from PTQ")
    ptq_tuned = three_ways(qat_ptq, os.path.join(tmp, "qat_ptq.onnx"))

    # Control: the same training without fake quantization, then kvant's PTQ.
    control = copy.deepcopy(fp32)
    fine_tune(control, train_x, train_y, args, "FP32 control")
    control_path = os.path.join(tmp, "control.onnx")
    torch.onnx.export(control, (calib[:1],), control_path, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}}, opset_version=13)
    control_fp32 = (top1_torch(control, test_x, test_y), top1_kvant(control_path, test_x, test_y))
    control_ptq = ptq(control_path, "control")

    best_ptq = max(rows["dynamic"][0], rows["static"][0])
    best_control = max(control_ptq["dynamic"][0], control_ptq["static"][0])
    bits = "7-bit (`--reduce-range`)" if args.reduce_range else "full-range int8"
    lines = [
        LSTM_BEGIN,
        "",
        "`PYTHONPATH=build/release/python /usr/bin/python3 python/tools/qat_lstm.py --epochs %d --train-images %d "
        "--lr %g%s --out docs/accuracy.md` on %s, %d PyTorch threads (PyTorch %s, ONNX Runtime 1.30). Top-1 on the "
        "10,000 Fashion-MNIST test images; %s weights; %d training images calibrate (static PTQ, QAT's activation "
        "ranges)." % (args.epochs, args.train_images, args.lr, " --reduce-range" if args.reduce_range else "",
                      cpu_name(), args.threads, torch.__version__.split("+")[0], bits, args.calib_images),
        "",
        "| model | what is quantized | file | PyTorch (fake-quant) | kvant compiled | ONNX Runtime 1.30 |",
        "|---|---|---|---|---|---|",
        "| FP32 `lstm_rows.onnx` | - | %.1f KB | %.4f | %.4f | |" % (os.path.getsize(args.model) / 1024, fp32_torch,
                                                                  fp32_kvant),
        "| PTQ `kvant quantize --mode dynamic` | LSTM W/R and Gemm weights int8, activations at run time | %.1f KB | "
        "| %.4f | |" % (rows["dynamic"][1] / 1024, rows["dynamic"][0]),
        "| PTQ `kvant quantize --mode static` | LSTM W/R int8 per gate row, its input/output and the Gemm's input "
        "uint8 (logits float) | %.1f KB | | %.4f | |" %
        (rows["static"][1] / 1024, rows["static"][0]),
        "| kvant.torch QAT start (no training: PTQ in its scheme) | LSTM W/R int8 per gate row, input and Gemm "
        "uint8/int8 | %.1f KB | %.4f | %.4f | %.4f |" % (start[3] / 1024, start[0], start[1], start[2]),
        "| kvant.torch QAT, %d epoch(s) x %d images (%.0f s) | the same | %.1f KB | %.4f | %.4f | %.4f |" %
        (args.epochs, args.train_images, seconds, tuned[3] / 1024, tuned[0], tuned[1], tuned[2]),
        "| kvant.torch QAT start from kvant's static PTQ file (`init_from`; the logits' range observed) | the same | "
        "%.1f KB | %.4f | %.4f | %.4f |" % (ptq_start[3] / 1024, ptq_start[0], ptq_start[1], ptq_start[2]),
        "| kvant.torch QAT from kvant's PTQ, %d epoch(s) x %d images | the same | %.1f KB | %.4f | %.4f | %.4f |" %
        (args.epochs, args.train_images, ptq_tuned[3] / 1024, ptq_tuned[0], ptq_tuned[1], ptq_tuned[2]),
        "| control: FP32 fine-tuned the same %d epoch(s) x %d images, no fake quantization | - | %.1f KB | %.4f | "
        "%.4f | |" % (args.epochs, args.train_images, os.path.getsize(control_path) / 1024, control_fp32[0],
                      control_fp32[1]),
        "| control, then PTQ `kvant quantize --mode dynamic` | as PTQ dynamic | %.1f KB | | %.4f | |" %
        (control_ptq["dynamic"][1] / 1024, control_ptq["dynamic"][0]),
        "| control, then PTQ `kvant quantize --mode static` | as PTQ static | %.1f KB | | %.4f | |" %
        (control_ptq["static"][1] / 1024, control_ptq["static"][0]),
        "",
        "QAT vs the best PTQ in kvant: %+.2f points; QAT vs its own start: %+.2f points; QAT from kvant's PTQ vs the "
        "best PTQ: %+.2f points. Against the control (the same training without fake quantization, then kvant's "
        "best PTQ): QAT %+.2f points, QAT from kvant's PTQ %+.2f points; the control's own gain over the best PTQ of "
        "the untrained model: %+.2f points. Whole script %.0f s wall / %.0f s CPU (this process)." %
        (100 * (tuned[1] - best_ptq), 100 * (tuned[1] - start[1]), 100 * (ptq_tuned[1] - best_ptq),
         100 * (tuned[1] - best_control), 100 * (ptq_tuned[1] - best_control), 100 * (best_control - best_ptq),
         time.time() - start_wall, time.process_time() - start_cpu),
        "",
        LSTM_END,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_section(args.out, LSTM_BEGIN, LSTM_END, text)
    bad = [(name, v) for name, v in (("start", start), ("tuned", tuned), ("PTQ start", ptq_start),
                                     ("from PTQ", ptq_tuned))
           if abs(v[1] - v[0]) > 0.001 or abs(v[2] - v[0]) > 0.001]
    if bad:
        print("runtimes disagree with PyTorch by more than 0.1 point: %s" % bad, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
