"""kvant.torch: quantization-aware training (QAT) in PyTorch that kvant runs bit-exactly.

    import kvant.torch as kqat
    qat = kqat.prepare_qat(model, (example,), weight_bits=4, init_from="model.w4a8.onnx")
    ... train qat as usual (its weights and biases; activation ranges are frozen) ...
    kqat.export(qat, "model.qat.onnx", (example,))   # QDQ ONNX: kvant run / kvant bench compile it

The fake quantization is kvant's static scheme (docs/design-decisions.md 38):
  * weights per output channel, symmetric, zero point 0: int8 codes with scale max|w| / 127, or int4
    codes -8..7 with scale r * max|w| / 7 for the r in {1, 0.98, ..., 0.5} whose codes reconstruct the
    channel with the least squared error (kvant's MSE clipping); recomputed from the current weights
    on every forward pass;
  * activations per tensor, affine uint8 (0..255), the range widened to include 0, zero point
    round(-min / scale); on each graph input, after each Conv / Linear (after its ReLU when one
    follows), after each residual Add (+ReLU); MaxPool and Flatten re-quantize with their input's
    parameters, as kvant's files do;
  * biases int32 at input scale * weight scale;
  * round half to even everywhere, computed in float64 like kvant's quantize_value; gradients pass
    straight through (zero where a value was clipped).
BatchNorm is folded into the Conv before it (eval-mode statistics, frozen), which is what a QAT
fine-tune of a trained network does in practice. Supported layers: Conv2d, Linear, BatchNorm2d after
a Conv2d, ReLU, MaxPool2d, Flatten, residual additions, and LSTM (QLSTM: unidirectional, int8 weights
per gate row, exported as int8 codes -> DequantizeLinear -> LSTM; its input is quantized where the
graph quantizes it, the value a Linear / Conv reads from its outputs is quantized there, and the
hidden and cell states inside the recurrence stay float, as in an ONNX LSTM that kvant runs); the
model must be traceable by torch.fx (index an LSTM's output tuple: torch 1.13's fx cannot unpack a
traced tuple on Python 3.11).

Activation ranges come from a kvant PTQ file of the same model (init_from: its activation
QuantizeLinear parameters, matched to this model's quantization points in graph order; the counts
must agree) or from min / max observed over calibration batches. They stay frozen during training.

Import this subpackage explicitly (import kvant.torch); `import kvant` does not import torch.
"""

import operator as _operator

import numpy as _np

try:
    import torch as _torch
    from torch import nn as _nn
    import torch.nn.functional as _F
except ImportError as _error:  # pragma: no cover
    raise ImportError("kvant.torch needs PyTorch (Debian: apt install python3-torch): %s" % _error) from None

__all__ = ["prepare_qat", "export", "ActivationFakeQuant", "WeightFakeQuant", "QConv2d", "QLinear", "QLSTM"]

_ACT_QMIN, _ACT_QMAX = 0, 255
_MIN_SCALE = float(_np.finfo(_np.float32).tiny)  # kvant's kMinScale
# kvant's MSE clipping ratios, computed in float32 as mse_clip.cc does: 1.0f - 0.02f * step.
_CLIP_RATIOS = [_np.float32(1.0) - _np.float32(0.02) * _np.float32(step) for step in range(26)]


def choose_qparams(lo, hi):
    """kvant's per-tensor affine uint8 parameters for the range [lo, hi] (widened to include 0)."""
    lo = min(float(_np.float32(lo)), 0.0)
    hi = max(float(_np.float32(hi)), 0.0)
    if not (_np.isfinite(lo) and _np.isfinite(hi)):
        raise ValueError("cannot quantize a range with a non-finite bound [%r, %r]" % (lo, hi))
    if lo == hi:
        return 1.0, _ACT_QMIN
    scale = float(_np.float32(_np.float32(hi) - _np.float32(lo)) / _np.float32(_ACT_QMAX - _ACT_QMIN))
    scale = max(scale, _MIN_SCALE)
    zero_point = int(_np.clip(_np.rint(_ACT_QMIN - lo / scale), _ACT_QMIN, _ACT_QMAX))
    return scale, zero_point


class _FakeQuant(_torch.autograd.Function):
    """round(x / scale) + zero point, clamped, back to float; float64 like kvant's quantize_value.
    Backward: the straight-through estimator, zero where the value was clipped."""

    @staticmethod
    def forward(ctx, x, scale, zero_point, qmin, qmax):
        q = _torch.round(x.double() / scale) + zero_point
        inside = (q >= qmin) & (q <= qmax)
        ctx.save_for_backward(inside)
        q = q.clamp(qmin, qmax)
        return ((q - zero_point) * scale).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None, None, None


class ActivationFakeQuant(_nn.Module):
    """Per-tensor affine uint8 fake quantization with a frozen scale and zero point.

    mode "observe": records min / max and passes x through; "quant": fake-quantizes;
    "export": torch.fake_quantize_per_tensor_affine, which torch.onnx writes as QuantizeLinear +
    DequantizeLinear."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", _torch.tensor(1.0, dtype=_torch.float32))
        self.register_buffer("zero_point", _torch.tensor(0, dtype=_torch.int32))
        self.register_buffer("observed", _torch.tensor([float("inf"), float("-inf")], dtype=_torch.float32))
        self.mode = "observe"

    def set_qparams(self, scale, zero_point):
        if not (scale > 0 and _np.isfinite(scale)) or not _ACT_QMIN <= zero_point <= _ACT_QMAX:
            raise ValueError("bad activation quantization parameters: scale %r, zero point %r" % (scale, zero_point))
        self.scale.fill_(float(_np.float32(scale)))
        self.zero_point.fill_(int(zero_point))
        self.mode = "quant"

    def freeze_observed(self):
        lo, hi = self.observed.tolist()
        if not lo <= hi:
            raise RuntimeError("an activation was never observed: run the calibration batches through the model")
        self.set_qparams(*choose_qparams(lo, hi))

    def forward(self, x):
        if self.mode == "observe":
            with _torch.no_grad():
                self.observed[0] = _torch.minimum(self.observed[0], x.detach().min())
                self.observed[1] = _torch.maximum(self.observed[1], x.detach().max())
            return x
        if self.mode == "export":
            return _torch.fake_quantize_per_tensor_affine(x, float(self.scale), int(self.zero_point), _ACT_QMIN,
                                                          _ACT_QMAX)
        return _FakeQuant.apply(x, self.scale.double(), self.zero_point.double(), _ACT_QMIN, _ACT_QMAX)

    def extra_repr(self):
        return "mode=%s, scale=%.6g, zero_point=%d" % (self.mode, float(self.scale), int(self.zero_point))


def weight_scales(weight, bits, reduce_range=False):
    """kvant's per-output-channel symmetric scales (float32 [C]) for weight [C, ...]; reduce_range:
    7-bit int8 codes (-64..63), kvant quantize --reduce-range."""
    w = weight.detach().float().reshape(weight.shape[0], -1)
    a = w.abs().amax(dim=1)
    qmax = 7 if bits == 4 else (63 if reduce_range else 127)
    if bits == 8:
        scale = a / _torch.tensor(float(qmax), dtype=_torch.float32)
    else:
        w64 = w.double()
        best_err = None
        scale = None
        for r in _CLIP_RATIOS:
            s = (a * _torch.tensor(float(r), dtype=_torch.float32)) / _torch.tensor(7.0, dtype=_torch.float32)
            s = _torch.where(s > 0, s, _torch.ones_like(s))
            q = _torch.round(w64 / s.double()[:, None]).clamp(-qmax - 1, qmax)
            dq = (q * s.double()[:, None]).float().double()
            err = ((w64 - dq) ** 2).sum(dim=1)
            if best_err is None:
                best_err, scale = err, s
            else:
                better = err < best_err  # ties keep the larger r, as kvant does
                best_err = _torch.where(better, err, best_err)
                scale = _torch.where(better, s, scale)
    scale = _torch.where(a > 0, scale, _torch.ones_like(scale))  # an all-zero channel: scale 1
    return scale.clamp_min(_MIN_SCALE)


class WeightFakeQuant(_nn.Module):
    """Per-output-channel symmetric fake quantization of a weight, int8 or int4 (see weight_scales)."""

    def __init__(self, bits, reduce_range=False):
        super().__init__()
        if bits not in (4, 8):
            raise ValueError("weight_bits must be 8 or 4, not %r" % (bits,))
        self.bits = bits
        self.reduce_range = bool(reduce_range)
        self.mode = "quant"

    def qrange(self):
        if self.bits == 4:
            return (-8, 7)
        return (-64, 63) if self.reduce_range else (-128, 127)

    def scales(self, weight):
        return weight_scales(weight, self.bits, self.reduce_range)

    def codes(self, weight):
        s = self.scales(weight)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        qmin, qmax = self.qrange()
        q = _torch.round(weight.detach().double() / s.double().reshape(shape)).clamp(qmin, qmax)
        return q, s

    def forward(self, weight):
        s = self.scales(weight)
        shape = (-1,) + (1,) * (weight.dim() - 1)
        qmin, qmax = self.qrange()
        return _FakeQuant.apply(weight, s.double().reshape(shape), 0.0, qmin, qmax)

    def extra_repr(self):
        return "bits=%d, reduce_range=%s" % (self.bits, self.reduce_range)


def _fake_quant_bias(bias, in_fq, w_scale, exporting):
    """The bias as kvant stores it: int32 codes at in_scale * w_scale (float32 product)."""
    if bias is None or in_fq is None or in_fq.mode == "observe":
        return bias
    bias_scale = (in_fq.scale * w_scale).double()
    q = _torch.round(bias.double() / bias_scale).clamp(-(2**31), 2**31 - 1)
    if exporting:
        return (q * bias_scale).float()
    return bias + ((q * bias_scale).to(bias.dtype) - bias).detach()


def _quantized_weight_bias(layer):
    if layer.weight_fq.mode == "export":
        # Constants computed outside the trace, so the ONNX file holds plain initializers.
        wq, _, bq = layer.frozen
        return wq, bq
    w = layer.weight_fq(layer.weight)
    b = _fake_quant_bias(layer.bias, layer.input_fq[0], layer.weight_fq.scales(layer.weight), False)
    return w, b


def _freeze_for_export(layer):
    """The layer's quantized weight (float, exactly codes * scale), scales and bias, as constants.
    torch.onnx writes only int8 / uint8 quantization ranges and folds a constant's Q/DQ pair away,
    so the weight goes out as this float initializer; export() finds it by value and rewrites it
    into integer codes (int4 for W4A8) + DequantizeLinear."""
    with _torch.no_grad():
        q, s = layer.weight_fq.codes(layer.weight)
        shape = (-1,) + (1,) * (layer.weight.dim() - 1)
        wq = (q * s.double().reshape(shape)).float()
        b = _fake_quant_bias(layer.bias, layer.input_fq[0], s, True)
    layer.frozen = (wq.detach().clone(), s.detach().clone(), None if b is None else b.detach().clone())


class QConv2d(_nn.Conv2d):
    """A Conv2d whose weight (and bias) are fake-quantized the way kvant stores them."""

    def attach(self, bits, input_fq, reduce_range=False):
        self.weight_fq = WeightFakeQuant(bits, reduce_range)
        self.input_fq = [input_fq]  # a list: not registered as a submodule twice

    def forward(self, x):
        w, b = _quantized_weight_bias(self)
        return self._conv_forward(x, w, b)


class QLinear(_nn.Linear):
    """A Linear whose weight (and bias) are fake-quantized the way kvant stores them."""

    def attach(self, bits, input_fq, reduce_range=False):
        self.weight_fq = WeightFakeQuant(bits, reduce_range)
        self.input_fq = [input_fq]

    def forward(self, x):
        w, b = _quantized_weight_bias(self)
        return _F.linear(x, w, b)


# ONNX's LSTM gate order (i, o, f, c) as blocks of torch's (i, f, g, o).
_ONNX_LSTM_GATES = (0, 3, 1, 2)


class QLSTM(_nn.LSTM):
    """An LSTM whose weights (W: weight_ih, R: weight_hh) are fake-quantized per output channel (one
    symmetric scale per gate row), as kvant stores an LSTM's weights (int8 codes -> DequantizeLinear
    along the rows -> LSTM). Biases, and the hidden and cell states inside the recurrence, stay
    float: an ONNX LSTM has no quantization point inside it, and kvant runs the cell in FP32 on the
    dequantized weights. Its input is quantized where the graph quantizes it (a graph input, a
    Reshape of one). Batched input (3-D), no projections."""

    def attach(self, bits, input_fq, reduce_range=False):
        if self.proj_size or self.bidirectional:
            raise ValueError("kvant.torch: LSTM with proj_size or bidirectional is not supported")
        if bits != 8:
            raise ValueError("kvant.torch: LSTM weights are int8 only (weight_bits=8), not %r" % (bits,))
        self.weight_fq = WeightFakeQuant(bits, reduce_range)
        self.input_fq = [input_fq]

    def _weights(self):
        if self.weight_fq.mode == "export":
            return list(self.frozen)
        return [self.weight_fq(w) if name.startswith("weight_") else w
                for name, w in zip(self._flat_weights_names, self._flat_weights)]

    def forward(self, input, hx=None):  # noqa: A002 (nn.LSTM's argument name)
        if input.dim() != 3:
            raise ValueError("kvant.torch.QLSTM: expected batched 3-D input, got %d-D" % input.dim())
        directions = 2 if self.bidirectional else 1
        if hx is None:
            batch = input.size(0 if self.batch_first else 1)
            zeros = _torch.zeros(self.num_layers * directions, batch, self.hidden_size, dtype=input.dtype,
                                 device=input.device)
            hx = (zeros, zeros)
        result = _torch._VF.lstm(input, hx, self._weights(), self.bias, self.num_layers, float(self.dropout),
                                 self.training, self.bidirectional, self.batch_first)
        return result[0], result[1:]


def _freeze_lstm_for_export(layer):
    """The LSTM's weights as constants, each weight exactly codes * scale; layer.lstm_weights keeps
    (quantized weight, scales) per weight for export() to find in the ONNX file."""
    with _torch.no_grad():
        frozen, pairs = [], []
        for name, w in zip(layer._flat_weights_names, layer._flat_weights):
            if name.startswith("weight_"):
                q, s = layer.weight_fq.codes(w)
                wq = (q * s.double()[:, None]).float()
                frozen.append(wq.detach().clone())
                pairs.append((wq.detach().clone(), s.detach().clone()))
            else:
                frozen.append(w.detach().clone())
    layer.frozen = frozen
    layer.lstm_weights = pairs


def _is_relu(gm, node):
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), _nn.ReLU)
    if node.op == "call_function":
        return node.target in (_F.relu, _torch.relu)
    return node.op == "call_method" and node.target == "relu"


def _is_add(node):
    if node.op == "call_function" and node.target in (_operator.add, _operator.iadd, _torch.add):
        return len(node.args) >= 2 and all(isinstance(a, _torch.fx.Node) for a in node.args[:2])
    return node.op == "call_method" and node.target == "add" and isinstance(node.args[1], _torch.fx.Node)


def _is_passthrough(gm, node):
    """MaxPool / Flatten: re-quantized with their input's parameters."""
    if node.op == "call_module":
        return isinstance(gm.get_submodule(node.target), (_nn.MaxPool2d, _nn.Flatten))
    if node.op == "call_function":
        return node.target in (_torch.flatten, _F.max_pool2d)
    return node.op == "call_method" and node.target in ("flatten", "view", "reshape")


def _reads_an_lstm(gm, node):
    """Whether node is an output of an LSTM, through indexing (getitem) only."""
    while isinstance(node, _torch.fx.Node) and node.op == "call_function" and node.target is _operator.getitem:
        node = node.args[0]
    return (isinstance(node, _torch.fx.Node) and node.op == "call_module" and
            isinstance(gm.get_submodule(node.target), _nn.LSTM))


def _replace_module(gm, target, module):
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def _quantized_copy(module, bits, input_fq, reduce_range):
    if isinstance(module, _nn.LSTM):
        q = QLSTM(module.input_size, module.hidden_size, module.num_layers, module.bias, module.batch_first,
                  module.dropout, module.bidirectional, module.proj_size)
    elif isinstance(module, _nn.Conv2d):
        q = QConv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
                    module.dilation, module.groups, module.bias is not None, module.padding_mode)
    else:
        q = QLinear(module.in_features, module.out_features, module.bias is not None)
    q.load_state_dict(module.state_dict())
    q.attach(bits, input_fq, reduce_range)
    return q


def activation_fake_quants(model):
    """The model's distinct ActivationFakeQuant modules in graph order (the order init_from matches)."""
    seen = []
    for node in model.graph.nodes:
        if node.op == "call_module" and node.target.startswith("kvant_act_"):
            module = model.get_submodule(node.target)
            if all(module is not m for m in seen):
                seen.append(module)
    return seen


def _read_ptq_qparams(path):
    """A kvant PTQ file's activation (scale, zero point) pairs, in graph order of first use."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    tensors = {t.name: t for t in proto.graph.initializer}
    result, seen = [], set()
    for node in proto.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in tensors:
            continue
        key = (node.input[1], node.input[2] if len(node.input) > 2 else "")
        if key in seen:
            continue
        seen.add(key)
        if node.input[1] not in tensors or (key[1] and key[1] not in tensors):
            raise ValueError("%s: QuantizeLinear %r has a non-constant scale or zero point" % (path, node.name))
        scale = numpy_helper.to_array(tensors[node.input[1]])
        zero = numpy_helper.to_array(tensors[key[1]]) if key[1] else _np.zeros((), _np.uint8)
        if scale.size != 1 or zero.dtype != _np.uint8:
            raise ValueError("%s: activation QuantizeLinear %r is not per-tensor uint8 (kvant quantize's default)" %
                             (path, node.name))
        result.append((float(scale.reshape(())), int(zero.reshape(()))))
    return result


def _ptq_output_quantized(path):
    """Whether a kvant PTQ file's graph outputs come out of a DequantizeLinear (quantized logits)."""
    import onnx

    proto = onnx.load(path)
    producers = {out: node.op_type for node in proto.graph.node for out in node.output}
    return any(producers.get(o.name) == "DequantizeLinear" for o in proto.graph.output)


def prepare_qat(model, example_inputs, weight_bits=8, init_from=None, calibration=None, reduce_range=False):
    """A copy of model with BatchNorm folded and kvant's fake quantization inserted.

    example_inputs: a tuple of tensors (traced shapes; also the calibration data by default).
    weight_bits: 8 (INT8) or 4 (W4A8).
    reduce_range: 7-bit int8 weight codes (-64..63), as kvant quantize --reduce-range writes for
    CPUs without VNNI (ONNX Runtime's AVX2 u8s8 kernels saturate full-range int8 products).
    init_from: a kvant PTQ file of the same model (kvant quantize), whose activation scales and zero
    points are taken in graph order; otherwise the ranges are min / max over `calibration` (an
    iterable of input tuples, or of single tensors) run through the BN-folded float model. The
    logits of a final Gemm have no point in a static PTQ file (kvant leaves them float), nor, in
    files from before static LSTMs, a value only LSTMs read: those ranges are observed on
    `calibration` (the example inputs when not given; required for the LSTM case), the other
    points come from the file.
    Returns a torch.fx.GraphModule in training mode; train it as usual, then export() it.
    """
    from torch.fx.experimental.optimization import fuse

    if weight_bits not in (4, 8):
        raise ValueError("weight_bits must be 8 or 4, not %r" % (weight_bits,))
    if reduce_range and weight_bits != 8:
        raise ValueError("reduce_range applies to 8-bit weights only")
    if isinstance(example_inputs, _torch.Tensor):
        example_inputs = (example_inputs,)
    was_training = model.training
    model.eval()
    try:
        gm = fuse(model)  # torch.fx trace + BatchNorm folded into the Conv before it (eval statistics)
    except Exception as error:  # torch.fx's errors for data-dependent control flow and the like
        raise ValueError("kvant.torch.prepare_qat: torch.fx cannot trace this model (%s: %s)" %
                         (type(error).__name__, error)) from error
    finally:
        model.train(was_training)
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), _nn.modules.batchnorm._BatchNorm):
            raise ValueError("BatchNorm %r does not follow a Conv: kvant.torch folds BatchNorm into Conv only" %
                             node.target)

    graph = gm.graph
    fq_of = {}  # fx node -> the ActivationFakeQuant its (quantized) value went through
    count = [0]

    def new_fq():
        module = ActivationFakeQuant()
        name = "kvant_act_%d" % count[0]
        count[0] += 1
        gm.add_module(name, module)
        return name, module

    def insert_after(node, name):
        with graph.inserting_after(node):
            fq_node = graph.call_module(name, (node,))
        node.replace_all_uses_with(fq_node)
        fq_node.args = (node,)
        return fq_node

    layers = []
    for node in list(graph.nodes):
        if node.op == "placeholder":
            name, module = new_fq()
            fq_of[insert_after(node, name)] = module
            continue
        if node.op == "call_module" and type(gm.get_submodule(node.target)) in (_nn.Conv2d, _nn.Linear, _nn.LSTM):
            layers.append(node)
    # The input quantizer of each Conv / Linear is found once all points exist; record them now.
    anchored = []  # quantizers of a layer's (or Add's) output
    for node in list(graph.nodes):
        if node.op == "output" or node.op == "placeholder" or node.target in [f"kvant_act_{i}" for i in range(count[0])]:
            continue
        anchor = None
        if node in layers and isinstance(gm.get_submodule(node.target), _nn.LSTM):
            # Its outputs are a tuple: the value a Conv / Linear reads (h_n[-1], out[:, -1]) is
            # quantized where that layer reads it (below), as kvant's static mode does.
            continue
        if node in layers or _is_add(node):
            anchor = node
            users = list(node.users)
            if len(users) == 1 and _is_relu(gm, users[0]):
                anchor = users[0]
            name, module = new_fq()
            fq_of[insert_after(anchor, name)] = module
            anchored.append(module)
        elif _is_passthrough(gm, node) and isinstance(node.args[0], _torch.fx.Node):
            source = fq_of.get(node.args[0])
            if source is not None:
                name = next(n for n, m in gm.named_children() if m is source)
                fq_of[insert_after(node, name)] = source
    graph.lint()

    # Swap in the quantized layers, each told which quantizer feeds it (for its int32 bias).
    lstm_inputs, layer_inputs = [], []
    for node in layers:
        source = node.args[0]
        input_fq = fq_of.get(source)
        if input_fq is None and _reads_an_lstm(gm, source):
            name, module = new_fq()
            with graph.inserting_before(node):
                fq_node = graph.call_module(name, (source,))
            node.args = (fq_node,) + tuple(node.args[1:])
            fq_of[fq_node] = input_fq = module
        if input_fq is None:
            raise ValueError("the input of %r is not quantized (an operator kvant.torch does not handle before it)" %
                             node.target)
        (lstm_inputs if isinstance(gm.get_submodule(node.target), _nn.LSTM) else layer_inputs).append(input_fq)
        _replace_module(gm, node.target, _quantized_copy(gm.get_submodule(node.target), weight_bits, input_fq,
                                                           reduce_range))
    gm.recompile()

    fqs = activation_fake_quants(gm)
    observed = fqs
    if init_from is not None:
        params = _read_ptq_qparams(init_from)
        # A kvant static file can lack two kinds of point this model has: the logits of a final
        # Gemm, which static mode leaves float (design decision 68), and, in files written before
        # static mode quantized main-graph LSTMs (decision 69), a value only an LSTM reads. Those
        # are observed on `calibration` instead; every other point takes the file's parameters.
        missing = fqs[-1:] if len(params) < len(fqs) and not _ptq_output_quantized(init_from) else []
        fp32_in_ptq = [m for m in fqs if any(m is x for x in lstm_inputs) and
                       not any(m is x for x in layer_inputs + anchored + missing)]
        if fp32_in_ptq and len(params) == len(fqs) - len(missing) - len(fp32_in_ptq):
            if calibration is None:
                raise ValueError("%s leaves the LSTM FP32 (no parameters for its input): give calibration= to "
                                 "observe that range" % init_from)
            missing += fp32_in_ptq
        targets = [m for m in fqs if all(m is not x for x in missing)]
        if len(params) != len(targets):
            raise ValueError("%s has %d activation quantization points, this model %d: not the same network?" %
                             (init_from, len(params), len(fqs)))
        for module, (scale, zero) in zip(targets, params):
            module.set_qparams(scale, zero)
        observed = missing
    if observed:
        for module in observed:
            module.mode = "observe"
        gm.eval()
        with _torch.no_grad():
            for batch in (calibration if calibration is not None else [example_inputs]):
                gm(*((batch,) if isinstance(batch, _torch.Tensor) else tuple(batch)))
        for module in observed:
            module.freeze_observed()
    gm.train()
    return gm


def _set_mode(model, mode):
    for module in model.modules():
        if isinstance(module, ActivationFakeQuant) and mode in ("export", "quant"):
            module.mode = mode
        if isinstance(module, WeightFakeQuant):
            module.mode = mode
        if isinstance(module, (QConv2d, QLinear)):
            if mode == "export":
                _freeze_for_export(module)
            else:
                module.frozen = None
        if isinstance(module, QLSTM):
            if mode == "export":
                _freeze_lstm_for_export(module)
            else:
                module.frozen = None


def export(model, path, example_inputs, input_names=None, output_names=None, dynamic_batch=True):
    """Writes model (from prepare_qat) as a QDQ ONNX file kvant compiles: INT8 at opset 13; W4A8 at
    opset 21 with int4 weight initializers. Weights become integer codes + DequantizeLinear (per
    output channel), biases int32 codes + DequantizeLinear, activations QuantizeLinear +
    DequantizeLinear uint8 with the frozen parameters."""
    import io
    import warnings

    import onnx

    if isinstance(example_inputs, _torch.Tensor):
        example_inputs = (example_inputs,)
    bits = {m.bits for m in model.modules() if isinstance(m, WeightFakeQuant)}
    if len(bits) > 1:
        raise ValueError("mixed weight bit widths %s are not supported" % sorted(bits))
    bits = bits.pop() if bits else 8
    if input_names is None:
        input_names = [n.target for n in model.graph.nodes if n.op == "placeholder"]
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "N"} for name in input_names + list(output_names or [])}
    was_training = model.training
    model.eval()
    buffer = io.BytesIO()
    try:
        _set_mode(model, "export")
        with _torch.no_grad(), warnings.catch_warnings():
            # The frozen scales become constants of the trace, as they should.
            warnings.simplefilter("ignore", _torch.jit.TracerWarning)
            _torch.onnx.export(model, tuple(example_inputs), buffer, input_names=input_names,
                               output_names=output_names, dynamic_axes=dynamic_axes, opset_version=13,
                               do_constant_folding=True)
    except BaseException:
        _set_mode(model, "quant")
        raise
    finally:
        model.train(was_training)
    layers = [(m.frozen[0].numpy(), m.frozen[1].numpy()) for m in model.modules() if isinstance(m, (QConv2d, QLinear))]
    lstm_weights = [(w.numpy(), s.numpy()) for m in model.modules() if isinstance(m, QLSTM)
                    for w, s in m.lstm_weights]
    _set_mode(model, "quant")
    proto = onnx.load_from_string(buffer.getvalue())
    _integer_weights(proto, bits, layers, lstm_weights)
    onnx.save(proto, path)
    return path


def _int4_tensor(name, codes):
    """An ONNX INT4 (data type 22) tensor: two codes a byte, low nibble first, as raw_data."""
    import onnx

    flat = codes.astype(_np.int8).reshape(-1)
    nibbles = (flat & 0x0F).astype(_np.uint8)
    if nibbles.size % 2:
        nibbles = _np.append(nibbles, _np.uint8(0))
    packed = (nibbles[0::2] | (nibbles[1::2] << 4)).astype(_np.uint8)
    tensor = onnx.TensorProto()
    tensor.name = name
    tensor.data_type = 22
    tensor.dims.extend(codes.shape)
    tensor.raw_data = packed.tobytes()
    return tensor


def _integer_weights(proto, bits, layers, lstm_weights=()):
    """Rewrites the export: weight Q(float constant) -> DQ becomes integer codes -> DQ; float biases
    of Conv / Gemm with quantized inputs become int32 codes -> DQ; W4A8 moves to opset 21."""
    import onnx
    from onnx import helper, numpy_helper

    graph = proto.graph
    # Constant nodes -> initializers, so every constant is looked up in one place.
    for node in [n for n in graph.node if n.op_type == "Constant"]:
        value = next((a for a in node.attribute if a.name == "value"), None)
        if value is None:
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(value.t)
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        graph.node.remove(node)
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    new_inits = []
    qmin, qmax = (-128, 127) if bits == 8 else (-8, 7)

    def add_init(name, tensor_or_array):
        tensor = tensor_or_array if isinstance(tensor_or_array, onnx.TensorProto) else numpy_helper.from_array(
            tensor_or_array, name)
        new_inits.append(tensor)
        return name

    # Weights: each Conv / Gemm weight that equals a quantized layer's weight (codes * scale,
    # exactly) becomes codes + DequantizeLinear (axis 0, the output channel; Gemm has transB=1).
    for node in list(graph.node):
        if node.op_type not in ("Conv", "Gemm") or node.input[1] not in consts:
            continue
        w = consts[node.input[1]]
        match = [scale for wq, scale in layers if wq.shape == w.shape and _np.array_equal(wq, w)]
        if not match:
            continue
        if node.op_type == "Gemm" and not any(a.name == "transB" and a.i == 1 for a in node.attribute):
            raise ValueError("Gemm %r: expected transB=1 (torch.onnx's Linear)" % node.name)
        scale = match[0].astype(_np.float32)
        shape = (-1,) + (1,) * (w.ndim - 1)
        codes = _np.clip(_np.rint(w.astype(_np.float64) / scale.astype(_np.float64).reshape(shape)), qmin, qmax)
        if not _np.array_equal((codes * scale.reshape(shape)).astype(_np.float32), w):
            raise AssertionError("weight %r is not codes * scale" % node.input[1])
        base = node.input[1] + "_quantized"
        zero = _np.zeros(scale.shape, _np.int8)
        if bits == 4:
            add_init(base, _int4_tensor(base, codes))
            add_init(base + "_zero_point", _int4_tensor(base + "_zero_point", zero))
        else:
            add_init(base, codes.astype(_np.int8))
            add_init(base + "_zero_point", zero)
        add_init(base + "_scale", scale)
        dq_out = base + "_dequantized"
        graph.node.insert(list(graph.node).index(node),
                          helper.make_node("DequantizeLinear", [base, base + "_scale", base + "_zero_point"], [dq_out],
                                           axis=0, name=base + "_DequantizeLinear"))
        node.input[1] = dq_out
        consts[base + "_scale"] = scale

    # LSTM W / R [directions, 4H, in]: each direction's matrix equals a quantized weight with its gate
    # blocks in ONNX's order; it becomes codes + DequantizeLinear along the rows (axis 1), the form
    # kvant quantize --mode weight-only writes for LSTM weights.
    for node in list(graph.node):
        if node.op_type != "LSTM":
            continue
        for k in (1, 2):
            if k >= len(node.input) or node.input[k] not in consts:
                continue
            w = consts[node.input[k]]
            if w.ndim != 3 or w.dtype != _np.float32:
                continue
            if w.shape[0] != 1:  # per-axis DequantizeLinear has one scale per row of all directions
                raise ValueError("LSTM %r: bidirectional LSTMs are not supported" % node.name)
            scales = []
            for d in range(w.shape[0]):
                found = None
                for wq, scale in lstm_weights:
                    if wq.shape != w.shape[1:] or wq.shape[0] % 4:
                        continue
                    h = wq.shape[0] // 4
                    order = _np.concatenate([_np.arange(g * h, (g + 1) * h) for g in _ONNX_LSTM_GATES])
                    if _np.array_equal(wq[order], w[d]):
                        found = scale[order]
                        break
                if found is None:
                    raise ValueError("LSTM %r: input %d is not one of the model's quantized LSTM weights" %
                                     (node.name, k))
                scales.append(found)
            scale = scales[0].astype(_np.float32)  # [4H]
            codes = _np.clip(_np.rint(w.astype(_np.float64) / scale.astype(_np.float64)[None, :, None]), qmin, qmax)
            if not _np.array_equal((codes * scale[None, :, None]).astype(_np.float32), w):
                raise AssertionError("LSTM weight %r is not codes * scale" % node.input[k])
            if bits == 4:
                raise ValueError("LSTM %r: weight_bits=4 is not supported for LSTM weights" % node.name)
            base = node.input[k] + "_quantized"
            add_init(base, codes.astype(_np.int8))
            add_init(base + "_zero_point", _np.zeros(scale.shape, _np.int8))
            add_init(base + "_scale", scale)
            dq_out = base + "_dequantized"
            graph.node.insert(list(graph.node).index(node),
                              helper.make_node("DequantizeLinear", [base, base + "_scale", base + "_zero_point"],
                                               [dq_out], axis=1, name=base + "_DequantizeLinear"))
            node.input[k] = dq_out

    # Biases: int32 codes at input scale * weight scale.
    producer = {o: n for n in graph.node for o in n.output}
    for node in list(graph.node):
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in consts:
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        if x_dq is None or w_dq is None or x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
            continue
        bias = consts[node.input[2]]
        if bias.dtype != _np.float32:
            continue
        s_x = consts[x_dq.input[1]].astype(_np.float32)
        s_w = consts[w_dq.input[1]].astype(_np.float32)
        b_scale = (s_x.reshape(()) * s_w).astype(_np.float32).reshape(-1)
        b_scale = _np.broadcast_to(b_scale, bias.shape).astype(_np.float32)
        codes = _np.clip(_np.rint(bias.astype(_np.float64) / b_scale.astype(_np.float64)), -(2**31), 2**31 - 1)
        base = node.input[2] + "_quantized"
        add_init(base, codes.astype(_np.int32))
        add_init(base + "_scale", b_scale.copy())
        dq_out = base + "_dequantized"
        graph.node.insert(list(graph.node).index(node),
                          helper.make_node("DequantizeLinear", [base, base + "_scale"], [dq_out], axis=0,
                                           name=base + "_DequantizeLinear"))
        node.input[2] = dq_out

    graph.initializer.extend(new_inits)
    used = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    if bits == 4:
        for opset in proto.opset_import:
            if opset.domain in ("", "ai.onnx"):
                opset.version = 21
        proto.ir_version = max(proto.ir_version, 10)
