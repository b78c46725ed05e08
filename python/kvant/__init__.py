"""kvant: quantize ONNX models and run them, from Python.

The calls are shaped like ONNX Runtime's, so that swapping the import is
enough for the common cases::

    import kvant as ort                      # was: import onnxruntime as ort
    sess = ort.InferenceSession("model.int8.onnx")
    name = sess.get_inputs()[0].name
    logits, = sess.run(None, {name: images})  # NumPy in, NumPy out

    kvant.quantize_static("model.onnx", "model.int8.onnx", reader)  # reader.get_next() -> dict or None

Everything goes through kvant's C++ API (include/kvant/kvant.h) in the
extension module kvant._kvant. Errors are KvantError (a RuntimeError)
subclasses carrying the one-line message the kvant command prints.
See docs/python.md.
"""

import os as _os

from ._errors import CancelledError, InvalidArgumentError, KvantError, NotFoundError, UnsupportedError
from . import _kvant

__version__ = _kvant.version()

__all__ = [
    "Decoder",
    "decoder_info",
    "InferenceSession",
    "SessionOptions",
    "NodeArg",
    "quantize_static",
    "quantize_dynamic",
    "quantize_weight_only",
    "sensitivity",
    "inspect",
    "KvantError",
    "InvalidArgumentError",
    "UnsupportedError",
    "NotFoundError",
    "CancelledError",
]

# kvant's type names -> ONNX Runtime's NodeArg.type strings.
_ORT_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "float16": "tensor(float16)",
    "bfloat16": "tensor(bfloat16)",
}


def _ort_type(kvant_type):
    return _ORT_TYPES.get(kvant_type, "tensor(%s)" % kvant_type)


class NodeArg:
    """An input or output as the model declares it, like onnxruntime.NodeArg.

    name: str; type: "tensor(float)", "tensor(uint8)", ...; shape: a list with
    an int per fixed dim, the dim's name (str) for a symbolic one and None for
    an unknown one, or None when the model declares no shape at all.
    """

    __slots__ = ("name", "type", "shape")

    def __init__(self, name, type, shape):  # noqa: A002 (ONNX Runtime's name)
        self.name = name
        self.type = type
        self.shape = shape

    def __repr__(self):
        return "NodeArg(name=%r, type=%r, shape=%r)" % (self.name, self.type, self.shape)


def _node_args(infos):
    return [NodeArg(name, _ort_type(dtype), shape) for name, dtype, shape in infos]


class SessionOptions:
    """The subset of onnxruntime.SessionOptions kvant reads.

    intra_op_num_threads: kernel threads (0 or unset: 1, kvant's default);
    kvant-specific: isa ("" = best for this CPU, "ref", "avx2", ...), nhwc.
    Other attributes may be set (ONNX Runtime code sets many) and are ignored.
    """

    def __init__(self):
        self.intra_op_num_threads = 0
        self.isa = ""
        self.nhwc = True


def _source(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return path_or_bytes
    return _os.fspath(path_or_bytes)


class InferenceSession:
    """A model compiled for this CPU, like onnxruntime.InferenceSession.

    InferenceSession(path_or_bytes, sess_options=None, providers=None,
                     provider_options=None, *, threads=None, isa=None,
                     nhwc=None, reference=False, input_shapes=None)

    threads (default 1; or sess_options.intra_op_num_threads) and isa
    override sess_options. providers are accepted and ignored (kvant is its
    own CPU provider). input_shapes fixes symbolic input dims at load, e.g.
    {"input": [1, 3, 224, 224]}. reference=True runs the reference executor
    (slow, for checking).

    run() may be called from several Python threads: it releases the GIL
    while the model runs, and calls on one session take turns (a kvant
    Session is not reentrant); give each thread its own session to run them
    at once.
    """

    def __init__(self, path_or_bytes, sess_options=None, providers=None, provider_options=None, *,
                 threads=None, isa=None, nhwc=None, reference=False, input_shapes=None):
        del providers, provider_options  # one provider: this CPU
        if threads is None:
            threads = getattr(sess_options, "intra_op_num_threads", 0) or 1
        if isa is None:
            isa = getattr(sess_options, "isa", "") or ""
        if nhwc is None:
            nhwc = getattr(sess_options, "nhwc", True)
        source = _source(path_or_bytes)
        self._model_path = source if isinstance(source, str) else None
        model = _kvant.load(source, True, input_shapes)
        self._session = _kvant.Session(model, int(threads), isa, bool(nhwc), bool(reference))
        self._inputs = _node_args(self._session.inputs)
        self._outputs = _node_args(self._session.outputs)

    def get_inputs(self):
        return list(self._inputs)

    def get_outputs(self):
        return list(self._outputs)

    def get_providers(self):
        return ["CPUExecutionProvider"]

    def run(self, output_names, input_feed, run_options=None):
        """Runs the model: a list of ndarrays, one per name in output_names
        (every output, in model order, when it is None or empty).

        input_feed maps each input name to an array (anything np.asarray
        takes); C-contiguous arrays of the declared dtype are read in place.
        """
        del run_options
        return self._session.run(list(output_names) if output_names else None, input_feed)

    def describe(self):
        """The compiled plan, one line per step (what `kvant inspect --plan` prints)."""
        return self._session.describe()

    def plan(self):
        """The compiled plan as a dict (kvant::SessionPlan): isa, threads,
        planned (False before the first run), steps (each with kernel, kind
        "kernel"/"view"/"fallback", node, fused, fixed and, once planned, its
        outputs: name, dtype, shape, arena_offset (None outside the arena),
        view), the step counts and arena_bytes, tensor_bytes, scratch_bytes,
        weight_bytes. KvantError on a reference-executor session."""
        return self._session.plan()

    def set_profiling(self, on=True):
        """Start (or stop) adding each step's time of every run to the
        profile; either way the totals start again from zero."""
        self._session.set_profiling(bool(on))

    def profile(self):
        """The profile since set_profiling(True): runs, total_ms and steps
        (kernel, node, ms summed over the runs), in plan order."""
        return self._session.profile()

    def describe_profile(self, top=15):
        """The profile as `kvant bench --profile` prints it."""
        return self._session.describe_profile(int(top))


# ---------------------------------------------------------------- quantize


def _name(value):
    """The name of an option value given as a string or an enum member
    (ONNX Runtime's QuantType.QUInt8, CalibrationMethod.MinMax, ...)."""
    name = getattr(value, "name", None)
    return str(name if isinstance(name, str) else value)


_CALIBRATORS = {
    "minmax": "minmax",
    "moving-average": "moving-average",
    "movingaverage": "moving-average",
    "moving_average": "moving-average",
    "percentile": "percentile",
    "entropy": "entropy",
    "mse": "mse",
}

_ACTIVATION_TYPES = {"uint8": "uint8", "quint8": "uint8", "int8": "int8", "qint8": "int8"}


def _calibrator(value):
    key = _name(value).lower()
    if key not in _CALIBRATORS:
        raise InvalidArgumentError("calibrate_method %r: expected minmax, moving-average, percentile, entropy or mse"
                                   % (_name(value),))
    return _CALIBRATORS[key]


def _activation_type(value):
    import numpy as np

    try:
        key = np.dtype(value).name
    except TypeError:
        key = _name(value).lower()
    if key not in _ACTIVATION_TYPES:
        raise InvalidArgumentError("activation_type %r: expected uint8 or int8" % (_name(value),))
    return _ACTIVATION_TYPES[key]


def _options(mode, kwargs):
    """kvant's option dict from keyword arguments: kvant's names, and ONNX
    Runtime's where they mean the same (per_channel, nodes_to_exclude,
    calibrate_method, quant_format=QDQ, weight_type=QInt8)."""
    allowed = {
        "static": {"calibrator", "calibrate_method", "percentile", "max_samples", "activation_type",
                   "symmetric_activations", "per_tensor", "per_channel", "reduce_range", "affine_weights",
                   "exclude", "nodes_to_exclude", "allow_nonfinite", "quant_format", "weight_type", "weight_bits",
                   "equalize", "bias_correction", "rounding", "smooth_quant", "report_samples"},
        "dynamic": {"per_tensor", "per_channel", "reduce_range", "exclude", "nodes_to_exclude", "allow_nonfinite",
                    "weight_type", "equalize", "smooth_quant", "report_samples"},
        "weight_only": {"bits", "group_size", "affine_weights", "format", "accuracy_level", "exclude",
                        "nodes_to_exclude",
                        "allow_nonfinite", "max_samples", "rounding", "awq", "report_samples"},
    }[mode]
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise TypeError("quantize_%s() got unexpected keyword argument(s) %s; it takes %s"
                        % (mode, ", ".join(unknown), ", ".join(sorted(allowed))))
    options = {}
    exclude = []
    for key, value in kwargs.items():
        if value is None:
            continue
        if key in ("calibrator", "calibrate_method"):
            options["calibrator"] = _calibrator(value)
        elif key == "activation_type":
            options["activation_type"] = _activation_type(value)
        elif key == "per_channel":
            options["per_tensor"] = not bool(value)
        elif key in ("exclude", "nodes_to_exclude"):
            exclude += [value] if isinstance(value, str) else list(value)
        elif key == "quant_format":
            if _name(value).upper() != "QDQ":
                raise InvalidArgumentError("quant_format %r: kvant writes QDQ models only" % (_name(value),))
        elif key == "weight_type":
            if _activation_type(value) != "int8":
                raise InvalidArgumentError("weight_type %r: kvant's weights are int8 (affine_weights=True for a "
                                           "zero point)" % (_name(value),))
        elif key == "format":
            fmt = str(value).lower()
            options["format"] = {"matmulnbits": "ort"}.get(fmt, fmt)
        elif key in ("percentile",):
            options[key] = float(value)
        elif key in ("max_samples", "bits", "group_size", "weight_bits", "report_samples", "accuracy_level"):
            options[key] = int(value)
        elif key == "rounding":
            options[key] = str(value).lower()
        elif key == "smooth_quant":
            # True: alpha 0.5 (the command's bare --smooth-quant); a number: alpha; "search"; False: off.
            if value is True:
                options[key] = 0.5
            elif value is not False:
                options[key] = value if isinstance(value, str) else float(value)
        else:
            options[key] = bool(value)
    if exclude:
        options["exclude"] = [str(e) for e in exclude]
    return options


_TARGET_KEYS = ("eval_data_reader", "metric", "labels", "output", "limit", "reference", "threads",
                "higher_is_better", "search")


def _target_options(options):
    """Takes the accuracy-target keywords out of `options`: None without
    accuracy_target (then the others are an error), else a dict."""
    drop = options.pop("accuracy_target", None)
    given = {k: options.pop(k) for k in _TARGET_KEYS if k in options}
    if drop is None:
        if given:
            raise TypeError("%s apply only with accuracy_target=DROP" % ", ".join(sorted(given)))
        return None
    if given.get("eval_data_reader") is None:
        raise InvalidArgumentError("accuracy_target needs evaluation data: eval_data_reader")
    given["drop"] = float(drop)
    return given


def _quantize_with_target(mode, model, calibration_data_reader, options, target, progress):
    samples, labels = _drain(target.pop("eval_data_reader"), "eval_data_reader")
    eval_reader = _ListReader(samples)
    metric = target.pop("metric", None)
    if target.get("labels") is not None:
        labels = [int(x) for x in target["labels"]]
    target.pop("labels", None)
    if labels:
        target["labels"] = labels
    callback = None
    if callable(metric):
        callback = _metric_callable(metric)
    elif metric is not None:
        target["metric"] = str(metric).lower()
    for key in ("limit", "threads"):
        if key in target:
            target[key] = int(target[key])
    for key in ("reference", "higher_is_better"):
        if key in target:
            target[key] = bool(target[key])
    if "output" in target:
        target["output"] = str(target["output"])
    return _kvant.quantize_with_target(mode, model, calibration_data_reader, eval_reader, _options(mode, options),
                                       target, callback, _progress(progress))


def _progress(progress):
    if progress is not None and not callable(progress):
        raise TypeError("progress must be a callable or None, not %s" % type(progress).__name__)
    return progress


def _load(model_input):
    source = _source(model_input)
    return _kvant.load(source, True, None)


def _save(model, model_output):
    if model_output is not None:
        model.save(_os.fspath(model_output))


def quantize_static(model_input, model_output, calibration_data_reader, *, progress=None, **options):
    """Static INT8 quantization with calibration, as `kvant quantize --mode static`.

    calibration_data_reader: ONNX Runtime's CalibrationDataReader protocol,
    an object whose get_next() returns one sample (a dict of input name ->
    array) or None at the end. kvant reads it once and keeps what it read.
    options (keyword): calibrate_method / calibrator ("minmax",
    "moving-average", "percentile", "entropy", "mse" or ONNX Runtime's
    CalibrationMethod), percentile, max_samples, activation_type ("uint8" or
    "int8", or QuantType), symmetric_activations, per_tensor / per_channel,
    reduce_range, affine_weights, exclude / nodes_to_exclude (node names,
    operator types, "first", "last"), allow_nonfinite; weight_bits (8, or 4
    for W4A8), equalize, bias_correction, rounding ("nearest" or
    "adaround"), smooth_quant (True or an alpha in [0, 1], or "search").

    Writes model_output (the bytes `kvant quantize` writes for the same data
    and options; None: nothing written) and returns the report as a dict:
    quantized_nodes, calibration_samples, kept_fp32, fp32_reasons (node ->
    why), notes, warnings, layer_outputs ((node, tensor) of the quantized
    layers in graph order) and, with report_samples=N (the command's
    --report-samples), layers: each layer's output against FP32 on the first
    N calibration samples, worst first (node, tensor, order, sqnr_db and
    cosine accumulated, own_sqnr_db and own_cosine of the layer alone or
    None, near_constant, fp32_std, output_step), over layer_samples samples.

    accuracy_target=DROP (`--accuracy-target`): keep the most sensitive
    layers FP32 until the metric on eval_data_reader (required; get_next()
    may return (feeds, label) pairs) is within DROP of FP32's; metric (a name
    or a callable, as kvant.sensitivity takes), labels, output, limit,
    reference, threads, higher_is_better as there; search="bisect" bisects
    over the number of layers kept high (`--search bisect`). The report then has
    "accuracy_target": met, threshold, fp32_value, value, chosen_step,
    steps, ranking, kept_fp32, int8, fp32_scores and frontier (every step
    walked: kept_fp32, int8, moved, bytes, value, scores, ms_per_sample,
    meets). A target no mix meets writes the
    closest model, met False and a warning.

    progress: a callable called with a dict after each unit of work, from
    the calling thread: stage ("calibration", "awq", "smooth_quant", "gptq",
    "sensitivity", "accuracy_target"), done, total (None when not known: a
    reader without __len__); layer for "sensitivity" (the layer measured)
    and "accuracy_target" (what the step changed); kept_fp32, int8, value
    and meets for "accuracy_target" (the step just measured). done never
    goes down within a stage and ends at total. Returning False cancels:
    CancelledError is raised and model_output is not written. What it raises
    is raised here.
    """
    target = _target_options(options)
    model = _load(model_input)
    if target is None:
        quantized, report = _kvant.quantize_static(model, calibration_data_reader, _options("static", options),
                                                   _progress(progress))
    else:
        quantized, report = _quantize_with_target("static", model, calibration_data_reader, options, target,
                                                  progress)
    _save(quantized, model_output)
    return report


def quantize_dynamic(model_input, model_output, calibration_data_reader=None, *, progress=None, **options):
    """Dynamic quantization (INT8 weights of MatMul/Gemm/Conv/LSTM/GRU,
    activations quantized at run time), as `kvant quantize --mode dynamic`.
    options: per_tensor / per_channel, reduce_range, exclude /
    nodes_to_exclude, allow_nonfinite, equalize, smooth_quant (True, an
    alpha in [0, 1] or "search"; needs calibration_data_reader); progress as
    for quantize_static. Returns the report dict."""
    model = _load(model_input)
    quantized, report = _kvant.quantize_dynamic(model, calibration_data_reader, _options("dynamic", options),
                                                _progress(progress))
    _save(quantized, model_output)
    return report


def quantize_weight_only(model_input, model_output, bits=4, group_size=128, calibration_data_reader=None,
                         *, progress=None, **options):
    """INT4/INT8 MatMul/Gemm weights with one scale per group_size values
    along K, as `kvant quantize --mode weight-only`. options: affine_weights,
    format ("qdq" or "ort" / "matmulnbits" for com.microsoft.MatMulNBits),
    accuracy_level (with format "ort": 4 = int8 activations, W4A8),
    exclude / nodes_to_exclude, allow_nonfinite; with
    calibration_data_reader: awq, rounding ("nearest" or "gptq"),
    max_samples; accuracy_target=DROP with eval_data_reader etc. as for
    quantize_static (INT4 layers move up to INT8 first); progress as for
    quantize_static. Returns the report dict."""
    options = dict(options, bits=bits, group_size=group_size)
    target = _target_options(options)
    model = _load(model_input)
    if target is None:
        quantized, report = _kvant.quantize_weight_only(model, calibration_data_reader,
                                                        _options("weight_only", options), _progress(progress))
    else:
        quantized, report = _quantize_with_target("weight_only", model, calibration_data_reader, options, target,
                                                  progress)
    _save(quantized, model_output)
    return report


# ---------------------------------------------------------------- sensitivity


class _ListReader:
    """Samples read from a reader, given again (kvant replays them itself)."""

    def __init__(self, samples):
        self._it = iter(samples)
        self._len = len(samples)

    def __len__(self):
        return self._len

    def get_next(self):
        return next(self._it, None)


def _drain(reader, what):
    """Every sample of a CalibrationDataReader, and its labels: get_next()
    may return a feed dict or a (feed dict, label) pair."""
    samples, labels = [], []
    while True:
        item = reader.get_next()
        if item is None:
            break
        if isinstance(item, tuple):
            if len(item) != 2:
                raise InvalidArgumentError("%s.get_next() returned a tuple of %d items; expected a feed dict or "
                                           "(feed dict, label)" % (what, len(item)))
            item, label = item
            labels.append(int(label))
        samples.append(item)
    if labels and len(labels) != len(samples):
        raise InvalidArgumentError("%s gave a label with %d of its %d samples; give one with every sample or none"
                                   % (what, len(labels), len(samples)))
    return samples, labels


def _metric_callable(metric):
    """metric(outputs) or metric(outputs, labels), by how many positional
    arguments it takes; labels is None when the data has none."""
    import inspect as _inspect

    try:
        params = [p for p in _inspect.signature(metric).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
        two = len(params) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):  # a builtin without a signature
        two = False

    def call(outputs, labels, variant):
        del variant
        return float(metric(outputs, labels if labels else None) if two else metric(outputs))

    return call


def sensitivity(model, calibration_data_reader=None, eval_data_reader=None, metric=None, *, labels=None, bits=8,
                calibrate_method=None, calibrator=None, max_samples=None, limit=None, group_size=None, exclude=None,
                nodes_to_exclude=None, output=None, leave_one_out=False, reference=False, threads=1,
                higher_is_better=True, progress=None):
    """Which layers cost accuracy when quantized, as `kvant sensitivity`.

    Quantizes model (a path or bytes; static INT8 calibrated on
    calibration_data_reader, or bits=4: weight-only INT4 without one), then
    measures the metric on eval_data_reader (default: the calibration
    samples) with only one Conv/Gemm/MatMul quantized, for each of them.
    Readers follow ONNX Runtime's CalibrationDataReader protocol; the eval
    reader's get_next() may also return (feed dict, class label) pairs
    (or give labels=[...], one per sample).

    metric: "top1", "top5" (need labels), "agreement", "sqnr", "mse"
    (default: top1 with labels, else agreement), or a callable that ranks the
    layers instead: metric(outputs) or metric(outputs, labels), outputs a list
    of float32 arrays (the scored output of every evaluation sample of one
    variant of the model), labels a list or None; it returns a float, higher
    better unless higher_is_better=False. What it raises is raised here.

    Other options as the command's: calibrate_method / calibrator,
    max_samples (calibration), limit (evaluation samples), group_size (bits
    4), exclude / nodes_to_exclude, output (the output scored), leave_one_out,
    reference, threads. progress: as for quantize_static (stages
    "calibration" with bits 8, then "sensitivity").

    Returns a dict: metric, output, samples, fp32, quantized,
    quantized_sqnr_db (custom_fp32, custom_quantized with a callable),
    fp32_scores, quantized_scores (value, output_sqnr_db, mse, and agreement,
    top1, top5 where the data allow), chunks, and layers, most sensitive
    first: node, op, tensor, measured, and rank, value, output_sqnr_db,
    all_but (NaN without leave_one_out), custom (with a callable), scores,
    all_but_scores (with leave_one_out), partial_nodes when measured, else
    note.
    """
    m = _kvant.load(_source(model), True, None)
    if calibration_data_reader is None and eval_data_reader is None:
        raise InvalidArgumentError("sensitivity needs data: calibration_data_reader (bits 8) or eval_data_reader")
    if eval_data_reader is None:  # the calibration samples are the evaluation set too
        samples, given = _drain(calibration_data_reader, "calibration_data_reader")
        eval_reader = calib_reader = _ListReader(samples)
    else:
        samples, given = _drain(eval_data_reader, "eval_data_reader")
        eval_reader = _ListReader(samples)
        calib_reader = calibration_data_reader
    options = {"bits": int(bits), "leave_one_out": bool(leave_one_out), "reference": bool(reference),
               "threads": int(threads), "higher_is_better": bool(higher_is_better)}
    if labels is not None:
        given = [int(x) for x in labels]
    if given:
        options["labels"] = given
    method = calibrator if calibrator is not None else calibrate_method
    if method is not None:
        options["calibrator"] = _calibrator(method)
    for key, value in (("max_samples", max_samples), ("limit", limit), ("group_size", group_size)):
        if value is not None:
            options[key] = int(value)
    excluded = []
    for value in (exclude, nodes_to_exclude):
        if value is not None:
            excluded += [value] if isinstance(value, str) else list(value)
    if excluded:
        options["exclude"] = [str(e) for e in excluded]
    if output is not None:
        options["output"] = str(output)
    callback = None
    if callable(metric):
        callback = _metric_callable(metric)
    elif metric is not None:
        options["metric"] = str(metric).lower()
    return _kvant.sensitivity(m, calib_reader, eval_reader, options, callback, _progress(progress))


# ---------------------------------------------------------------- inspect


def inspect(path_or_bytes, plan=False, threads=1):
    """What a model declares and costs, as a dict (what `kvant inspect`
    prints): opset, quantized (has Q/DQ or integer operators), inputs and
    outputs (name, type, shape as NodeArg gives them), warnings from
    loading; and kvant::ModelStats: producer_name, producer_version,
    ir_version, opsets, graph_inputs/graph_outputs (every declared input,
    initializer-backed ones too: name, dtype, shape), nodes, operators (op
    -> nodes, most used first), unsupported_operators, quantization
    (formats found: "QDQ", "QOperator", "MatMulNBits"), parameters,
    parameter_bytes, initializer_bytes, initializers (per dtype), macs,
    macs_unknown and layers (node, op_type, macs or None, reason, output).
    With plan=True also the compiled plan's lines (it compiles the model)."""
    model = _kvant.load(_source(path_or_bytes), True, None)

    def args(infos):
        return [{"name": a.name, "type": a.type, "shape": a.shape} for a in _node_args(infos)]

    info = {
        "opset": model.opset,
        "quantized": model.is_quantized,
        "inputs": args(model.inputs),
        "outputs": args(model.outputs),
        "warnings": list(model.warnings),
    }
    info.update(_kvant.model_stats(model))
    if plan:
        info["plan"] = _kvant.Session(model, int(threads), "", True, False).describe().splitlines()
    return info


def Decoder(model, max_total, batch=1, threads=1):
    """A decoder-only model with its key/value cache (kvant::Decoder):
    forward(ids [batch, n] or [n]) appends ids and returns float32 logits
    [batch, n, vocab]; reset(), length, vocab, info. `model` is a path or bytes."""
    return _kvant.Decoder(_kvant.load(_source(model), True, None), max_total, batch, threads)


def decoder_info(model):
    """The decoder export convention read from `model` (a path or bytes), as a dict."""
    return _kvant.decoder_info(_kvant.load(_source(model), True, None))

