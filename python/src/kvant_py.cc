// kvant._kvant: the Python extension module behind the kvant package
// (python/kvant/). It binds include/kvant/kvant.h, nothing else: the
// package's Python code (InferenceSession, quantize_*, inspect) is built on
// the few calls here.
//
// Copies. A feed that is a C-contiguous, aligned, native-endian ndarray is
// handed to the API as a TensorView on its own buffer (Session::run copies it
// into the arena once, as for a C++ caller); any other array is made so first
// (np.ascontiguousarray), which is a copy only where the layout needs one.
// Outputs are the API's OwnedTensors, wrapped as ndarrays without a copy (the
// array's base is a capsule that owns the tensor).
//
// The GIL is released while a session compiles or runs and while a model is
// quantized; a Python CalibrationDataReader is called with it re-acquired. A
// Session is not reentrant (kvant.h), so each one has a mutex: Python threads
// sharing one session take turns, those with their own sessions run at once.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "kvant/kvant.h"

namespace py = pybind11;

namespace {

// A failed Status on its way to Python; translated into the kvant error class
// for its code (python/kvant/_errors.py).
struct StatusError {
  kvant::ErrorCode code;
  std::string message;
};

void check(const kvant::Status& status) {
  if (!status.ok()) throw StatusError{status.code(), status.message()};
}

template <typename T>
T take(kvant::Result<T>&& result) {
  if (!result.ok()) throw StatusError{result.status().code(), result.status().message()};
  return std::move(result).value();
}

// ---------------------------------------------------------------- dtypes

std::optional<kvant::DataType> data_type_of(const py::dtype& dtype) {
  const char kind = dtype.kind();
  const auto size = dtype.itemsize();
  if (kind == 'b' && size == 1) return kvant::DataType::kBool;
  if (kind == 'f') {
    if (size == 2) return kvant::DataType::kFloat16;
    if (size == 4) return kvant::DataType::kFloat32;
    if (size == 8) return kvant::DataType::kFloat64;
  }
  if (kind == 'i') {
    if (size == 1) return kvant::DataType::kInt8;
    if (size == 2) return kvant::DataType::kInt16;
    if (size == 4) return kvant::DataType::kInt32;
    if (size == 8) return kvant::DataType::kInt64;
  }
  if (kind == 'u') {
    if (size == 1) return kvant::DataType::kUInt8;
    if (size == 2) return kvant::DataType::kUInt16;
    if (size == 4) return kvant::DataType::kUInt32;
    if (size == 8) return kvant::DataType::kUInt64;
  }
  return std::nullopt;
}

// The NumPy type string for a kvant type ("" where NumPy has none: bfloat16
// and the packed 4-bit types).
const char* numpy_type_of(kvant::DataType type) {
  switch (type) {
    case kvant::DataType::kBool: return "?";
    case kvant::DataType::kFloat16: return "<f2";
    case kvant::DataType::kFloat32: return "<f4";
    case kvant::DataType::kFloat64: return "<f8";
    case kvant::DataType::kInt8: return "i1";
    case kvant::DataType::kInt16: return "<i2";
    case kvant::DataType::kInt32: return "<i4";
    case kvant::DataType::kInt64: return "<i8";
    case kvant::DataType::kUInt8: return "u1";
    case kvant::DataType::kUInt16: return "<u2";
    case kvant::DataType::kUInt32: return "<u4";
    case kvant::DataType::kUInt64: return "<u8";
    default: return "";
  }
}

// `value` as an ndarray kvant can read in place: the same object when it
// already is one (C order, aligned, native byte order), else a converted
// copy. `what` names it in errors ("input \"x\"").
py::array readable_array(const py::handle& value, const std::string& what) {
  py::module_ np = py::module_::import("numpy");
  py::object array = py::reinterpret_borrow<py::object>(value);
  if (!py::isinstance<py::array>(array)) array = np.attr("asarray")(array);
  py::array a = py::reinterpret_borrow<py::array>(array);
  if (!a.dtype().attr("isnative").cast<bool>()) {
    a = py::reinterpret_steal<py::array>(a.attr("astype")(a.dtype().attr("newbyteorder")("=")).release());
  }
  const py::object flags = a.attr("flags");
  if (!flags.attr("c_contiguous").cast<bool>() || !flags.attr("aligned").cast<bool>()) {
    a = np.attr("ascontiguousarray")(a);
  }
  if (!data_type_of(a.dtype())) {
    throw StatusError{kvant::ErrorCode::kInvalidArgument,
                      what + ": NumPy dtype " + py::str(a.dtype()).cast<std::string>() + " has no kvant type"};
  }
  return a;
}

kvant::TensorView view_of(const py::array& a) {
  kvant::TensorView view;
  view.data = a.data();
  view.dtype = *data_type_of(a.dtype());
  view.shape.assign(a.shape(), a.shape() + a.ndim());
  return view;
}

// The tensor as an ndarray that owns it (no copy).
py::array to_array(kvant::OwnedTensor tensor, const std::string& name) {
  const char* type = numpy_type_of(tensor.dtype());
  if (*type == '\0') {
    throw StatusError{
        kvant::ErrorCode::kUnsupported,
        "output \"" + name + "\" is " + kvant::data_type_name(tensor.dtype()) + ", which NumPy has no dtype for"};
  }
  std::vector<py::ssize_t> shape(tensor.shape().begin(), tensor.shape().end());
  auto* owned = new kvant::OwnedTensor(std::move(tensor));
  py::capsule base(owned, [](void* p) { delete static_cast<kvant::OwnedTensor*>(p); });
  return py::array(py::dtype(type), shape, owned->data(), base);
}

py::tuple info_tuple(const kvant::TensorInfo& info) {
  py::object shape = py::none();
  if (info.has_shape) {
    py::list dims;
    for (size_t i = 0; i < info.shape.size(); ++i) {
      if (info.shape[i] >= 0) {
        dims.append(info.shape[i]);
      } else if (i < info.dim_names.size() && !info.dim_names[i].empty()) {
        dims.append(info.dim_names[i]);
      } else {
        dims.append(py::none());
      }
    }
    shape = dims;
  }
  return py::make_tuple(info.name, kvant::data_type_name(info.dtype), shape);
}

py::list info_list(const std::vector<kvant::TensorInfo>& infos) {
  py::list list;
  for (const auto& info : infos) list.append(info_tuple(info));
  return list;
}

// ---------------------------------------------------------------- statistics, plan, profile

py::dict info_dict(const kvant::TensorInfo& info) {
  py::tuple t = info_tuple(info);
  py::dict d;
  d["name"] = t[0];
  d["dtype"] = t[1];
  d["shape"] = t[2];
  return d;
}

py::list info_dicts(const std::vector<kvant::TensorInfo>& infos) {
  py::list list;
  for (const auto& info : infos) list.append(info_dict(info));
  return list;
}

// kvant.inspect's statistics (kvant::ModelStats) as a dict.
py::dict stats_dict(const kvant::ModelStats& s) {
  py::dict d;
  d["producer_name"] = s.producer_name;
  d["producer_version"] = s.producer_version;
  d["ir_version"] = s.ir_version;
  py::dict opsets;
  for (const auto& [domain, version] : s.opsets) opsets[py::str(domain.empty() ? "ai.onnx" : domain)] = version;
  d["opsets"] = opsets;
  d["graph_inputs"] = info_dicts(s.inputs);
  d["graph_outputs"] = info_dicts(s.outputs);
  d["nodes"] = s.nodes;
  py::dict ops;  // most used first (dicts keep their order)
  for (const auto& op : s.operators) ops[py::str(op.op)] = op.nodes;
  d["operators"] = ops;
  d["unsupported_operators"] = s.unsupported;
  d["quantization"] = s.quantization;
  d["parameters"] = s.parameters;
  d["parameter_bytes"] = s.parameter_bytes;
  d["initializer_bytes"] = s.initializer_bytes;
  py::list groups;
  for (const auto& g : s.initializers) {
    py::dict group;
    group["dtype"] = kvant::data_type_name(g.dtype);
    group["tensors"] = g.tensors;
    group["elements"] = g.elements;
    group["bytes"] = g.bytes;
    group["parameters"] = g.parameters;
    groups.append(group);
  }
  d["initializers"] = groups;
  d["macs"] = s.macs;
  d["macs_unknown"] = s.macs_unknown;
  py::list layers;
  for (const auto& l : s.layers) {
    py::dict layer;
    layer["node"] = l.node;
    layer["op_type"] = l.op_type;
    layer["macs"] = l.macs ? py::object(py::int_(*l.macs)) : py::object(py::none());
    layer["reason"] = l.reason;
    layer["output"] = l.has_output_type ? py::object(info_dict(l.output)) : py::object(py::none());
    layers.append(layer);
  }
  d["layers"] = layers;
  return d;
}

py::dict plan_dict(const kvant::SessionPlan& p) {
  py::dict d;
  d["isa"] = p.isa;
  d["threads"] = p.threads;
  d["planned"] = p.planned;
  py::list steps;
  for (const auto& step : p.steps) {
    py::dict st;
    st["kernel"] = step.kernel;
    st["kind"] = kvant::step_kind_name(step.kind);
    st["node"] = step.node;
    st["fused"] = step.fused;
    st["fixed"] = step.fixed;
    py::list outs;
    for (const auto& v : step.outputs) {
      py::dict o;
      o["name"] = v.name;
      o["dtype"] = kvant::data_type_name(v.dtype);
      o["shape"] = v.shape;
      o["arena_offset"] = v.arena_offset >= 0 ? py::object(py::int_(v.arena_offset)) : py::object(py::none());
      o["view"] = v.view;
      outs.append(o);
    }
    st["outputs"] = outs;
    steps.append(st);
  }
  d["steps"] = steps;
  d["kernel_steps"] = p.kernel_steps;
  d["view_steps"] = p.view_steps;
  d["fallback_steps"] = p.fallback_steps;
  d["fixed_steps"] = p.fixed_steps;
  d["arena_bytes"] = p.arena_bytes;
  d["tensor_bytes"] = p.tensor_bytes;
  d["scratch_bytes"] = p.scratch_bytes;
  d["weight_bytes"] = p.weight_bytes;
  return d;
}

py::dict profile_dict(const kvant::SessionProfile& p) {
  py::dict d;
  d["runs"] = p.runs;
  d["total_ms"] = p.total_ms;
  py::list steps;
  for (const auto& step : p.steps) {
    py::dict st;
    st["kernel"] = step.kernel;
    st["node"] = step.node;
    st["ms"] = step.ms;
    steps.append(st);
  }
  d["steps"] = steps;
  return d;
}

// ---------------------------------------------------------------- model

kvant::ModelLoadOptions load_options(bool infer_shapes, const py::object& input_shapes) {
  kvant::ModelLoadOptions options;
  options.infer_shapes = infer_shapes;
  if (!input_shapes.is_none()) {
    options.input_shapes = input_shapes.cast<std::map<std::string, std::vector<int64_t>>>();
  }
  return options;
}

kvant::OnnxModel load_model(const py::object& source, bool infer_shapes, const py::object& input_shapes,
                            const std::string& name) {
  const kvant::ModelLoadOptions options = load_options(infer_shapes, input_shapes);
  if (py::isinstance<py::bytes>(source) || py::isinstance<py::bytearray>(source) ||
      py::isinstance<py::memoryview>(source)) {
    py::buffer_info buffer = py::reinterpret_borrow<py::buffer>(source).request();
    const auto size = static_cast<size_t>(buffer.size * buffer.itemsize);
    py::gil_scoped_release release;
    return take(kvant::OnnxModel::load_from_bytes(buffer.ptr, size, options, name));
  }
  const std::string path = py::module_::import("os").attr("fsdecode")(source).cast<std::string>();
  py::gil_scoped_release release;
  return take(kvant::OnnxModel::load(path, options));
}

// ---------------------------------------------------------------- quantize

// A Python object with get_next() (ONNX Runtime's CalibrationDataReader
// protocol) as a kvant::CalibrationDataReader. rewind() stays false: kvant
// replays the samples it read. An exception raised by the Python reader is
// kept and raised again once quantize returns.
class PyCalibrationReader : public kvant::CalibrationDataReader {
 public:
  explicit PyCalibrationReader(py::object reader) : reader_(std::move(reader)) {}
  ~PyCalibrationReader() override {
    py::gil_scoped_acquire acquire;
    reader_ = py::object();
    error_.reset();
  }

  std::optional<kvant::Tensors> get_next() override {
    py::gil_scoped_acquire acquire;
    try {
      py::object sample = reader_.attr("get_next")();
      if (sample.is_none()) return std::nullopt;
      if (!py::isinstance<py::dict>(sample)) {
        throw StatusError{kvant::ErrorCode::kInvalidArgument,
                          "calibration_data_reader.get_next() returned " +
                              py::str(py::type::of(sample).attr("__name__")).cast<std::string>() +
                              ", not a dict of input name -> array (or None at the end)"};
      }
      kvant::Tensors tensors;
      for (auto item : py::reinterpret_borrow<py::dict>(sample)) {
        const std::string name = py::str(item.first).cast<std::string>();
        py::array a = readable_array(item.second, "calibration input \"" + name + "\"");
        tensors[name] = take(kvant::OwnedTensor::copy_of(view_of(a)));
      }
      return tensors;
    } catch (py::error_already_set& e) {
      const std::string message = e.what();
      error_ = std::move(e);
      throw std::runtime_error("calibration_data_reader.get_next() raised: " + message);
    } catch (const StatusError& e) {
      throw std::runtime_error(e.message);
    }
  }

  // len(reader) where the reader has __len__ (a progress total), else -1.
  int64_t size() override {
    py::gil_scoped_acquire acquire;
    if (!py::hasattr(reader_, "__len__")) return -1;
    try {
      return static_cast<int64_t>(py::len(reader_));
    } catch (py::error_already_set& e) {
      const std::string message = e.what();
      error_ = std::move(e);
      throw std::runtime_error("len(calibration_data_reader) raised: " + message);
    }
  }

  // Raises what the Python reader raised, if it raised.
  void rethrow() {
    if (error_) {
      py::error_already_set e = std::move(*error_);
      error_.reset();
      throw e;
    }
  }

 private:
  py::object reader_;
  std::optional<py::error_already_set> error_;
};

kvant::Calibrator calibrator_of(const std::string& name) {
  if (name == "minmax") return kvant::Calibrator::kMinMax;
  if (name == "moving-average") return kvant::Calibrator::kMovingAverage;
  if (name == "percentile") return kvant::Calibrator::kPercentile;
  if (name == "entropy") return kvant::Calibrator::kEntropy;
  if (name == "mse") return kvant::Calibrator::kMse;
  throw StatusError{kvant::ErrorCode::kInvalidArgument,
                    "calibrator \"" + name + "\": expected minmax, moving-average, percentile, entropy or mse"};
}

// The options from the dict python/kvant/_quantize.py builds (kvant's own
// names, values already checked for type there).
kvant::QuantizationOptions options_of(const py::dict& d) {
  kvant::QuantizationOptions o;
  for (auto item : d) {
    const std::string key = item.first.cast<std::string>();
    const py::handle v = item.second;
    if (key == "calibrator") {
      o.calibrator = calibrator_of(v.cast<std::string>());
    } else if (key == "percentile") {
      o.percentile = v.cast<double>();
    } else if (key == "max_samples") {
      o.max_samples = v.cast<int64_t>();
    } else if (key == "report_samples") {
      o.report_samples = v.cast<int64_t>();
    } else if (key == "activation_type") {
      const std::string t = v.cast<std::string>();
      if (t != "uint8" && t != "int8") {
        throw StatusError{kvant::ErrorCode::kInvalidArgument, "activation_type \"" + t + "\": expected uint8 or int8"};
      }
      o.activation_type = t == "int8" ? kvant::DataType::kInt8 : kvant::DataType::kUInt8;
    } else if (key == "symmetric_activations") {
      o.symmetric_activations = v.cast<bool>();
    } else if (key == "per_tensor") {
      o.per_tensor = v.cast<bool>();
    } else if (key == "reduce_range") {
      o.reduce_range = v.cast<bool>();
    } else if (key == "affine_weights") {
      o.affine_weights = v.cast<bool>();
    } else if (key == "bits") {
      o.bits = v.cast<int>();
    } else if (key == "group_size") {
      o.group_size = v.cast<int>();
    } else if (key == "accuracy_level") {
      o.accuracy_level = v.cast<int>();
    } else if (key == "format") {
      const std::string f = v.cast<std::string>();
      if (f != "qdq" && f != "ort") {
        throw StatusError{kvant::ErrorCode::kInvalidArgument, "format \"" + f + "\": expected qdq or ort"};
      }
      o.format = f == "ort" ? kvant::WeightOnlyFormat::kMatMulNBits : kvant::WeightOnlyFormat::kQdq;
    } else if (key == "exclude") {
      o.exclude = v.cast<std::vector<std::string>>();
    } else if (key == "allow_nonfinite") {
      o.allow_nonfinite = v.cast<bool>();
    } else if (key == "weight_bits") {
      o.weight_bits = v.cast<int>();
    } else if (key == "equalize") {
      o.equalize = v.cast<bool>();
    } else if (key == "bias_correction") {
      o.bias_correction = v.cast<bool>();
    } else if (key == "rounding") {
      const std::string r = v.cast<std::string>();
      if (r == "nearest") {
        o.rounding = kvant::RoundingMethod::kNearest;
      } else if (r == "adaround") {
        o.rounding = kvant::RoundingMethod::kAdaRound;
      } else if (r == "gptq") {
        o.rounding = kvant::RoundingMethod::kGptq;
      } else {
        throw StatusError{kvant::ErrorCode::kInvalidArgument,
                          "rounding \"" + r + "\": expected nearest, adaround or gptq"};
      }
    } else if (key == "awq") {
      o.awq = v.cast<bool>();
    } else if (key == "smooth_quant") {  // None: off; a number: alpha; "search"
      if (v.is_none()) continue;
      o.smooth_quant = true;
      if (py::isinstance<py::str>(v)) {
        if (v.cast<std::string>() != "search") {
          throw StatusError{kvant::ErrorCode::kInvalidArgument, "smooth_quant \"" + v.cast<std::string>() +
                                                                    "\": expected a number in [0, 1] or \"search\""};
        }
        o.smooth_quant_alpha = std::nullopt;
      } else {
        o.smooth_quant_alpha = v.cast<double>();
      }
    } else {
      throw StatusError{kvant::ErrorCode::kInvalidArgument, "unknown quantization option \"" + key + "\""};
    }
  }
  return o;
}

py::dict report_dict(const kvant::QuantizationReport& r) {
  py::dict d;
  d["quantized_nodes"] = r.quantized_nodes;
  d["calibration_samples"] = r.calibration_samples;
  d["kept_fp32"] = r.kept_fp32;
  py::dict reasons;
  for (const auto& [node, reason] : r.fp32_reasons) reasons[py::str(node)] = reason;
  d["fp32_reasons"] = reasons;
  d["notes"] = r.notes;
  d["warnings"] = r.warnings;
  py::list outputs;
  for (const auto& [node, tensor] : r.layer_outputs) outputs.append(py::make_tuple(node, tensor));
  d["layer_outputs"] = outputs;
  // None where not measured (NaN in C++).
  auto maybe = [](double v) -> py::object { return std::isnan(v) ? py::object(py::none()) : py::float_(v); };
  py::list layers;
  for (const kvant::LayerComparison& c : r.layers) {
    py::dict l;
    l["node"] = c.node;
    l["tensor"] = c.tensor;
    l["order"] = c.order;
    l["sqnr_db"] = c.sqnr_db;
    l["cosine"] = c.cosine;
    l["own_sqnr_db"] = maybe(c.own_sqnr_db);
    l["own_cosine"] = maybe(c.own_cosine);
    l["near_constant"] = c.near_constant;
    l["fp32_std"] = c.fp32_std;
    l["output_step"] = c.output_step;
    layers.append(l);
  }
  d["layers"] = layers;
  d["layer_samples"] = r.layer_samples;
  return d;
}

// ---------------------------------------------------------------- sensitivity

// The options from the dict python/kvant/__init__.py builds.
// A built-in metric by its name ("top1", ..., as kvant::metric_name gives).
kvant::Metric metric_of(const std::string& name) {
  const kvant::Metric all[] = {kvant::Metric::kTop1,      kvant::Metric::kTop5, kvant::Metric::kAgreement,
                               kvant::Metric::kSqnr,      kvant::Metric::kMse,  kvant::Metric::kMiou,
                               kvant::Metric::kPerplexity};
  for (kvant::Metric candidate : all) {
    if (name == kvant::metric_name(candidate)) return candidate;
  }
  throw StatusError{
      kvant::ErrorCode::kInvalidArgument,
      "metric \"" + name + "\": expected top1, top5, agreement, sqnr, mse, miou, perplexity or a callable"};
}

kvant::SensitivityAnalysisOptions sensitivity_options_of(const py::dict& d) {
  kvant::SensitivityAnalysisOptions o;
  for (auto item : d) {
    const std::string key = item.first.cast<std::string>();
    const py::handle v = item.second;
    if (key == "bits") {
      o.bits = v.cast<int>();
    } else if (key == "calibrator") {
      o.calibrator = calibrator_of(v.cast<std::string>());
    } else if (key == "max_samples") {
      o.calibration_samples = v.cast<int64_t>();
    } else if (key == "group_size") {
      o.group_size = v.cast<int>();
    } else if (key == "exclude") {
      o.exclude = v.cast<std::vector<std::string>>();
    } else if (key == "metric") {
      o.metric = metric_of(v.cast<std::string>());
    } else if (key == "labels") {
      o.labels = v.cast<std::vector<int64_t>>();
    } else if (key == "output") {
      o.output = v.cast<std::string>();
    } else if (key == "limit") {
      o.max_samples = v.cast<int64_t>();
    } else if (key == "leave_one_out") {
      o.leave_one_out = v.cast<bool>();
    } else if (key == "reference") {
      o.reference = v.cast<bool>();
    } else if (key == "threads") {
      o.threads = v.cast<int>();
    } else if (key == "higher_is_better") {
      o.higher_is_better = v.cast<bool>();
    } else {
      throw StatusError{kvant::ErrorCode::kInvalidArgument, "unknown sensitivity option \"" + key + "\""};
    }
  }
  return o;
}

// kvant::MetricScores: value, output_sqnr_db, mse, and agreement / top1 /
// top5 where the samples allow them.
py::dict scores_dict(const kvant::MetricScores& s) {
  py::dict x;
  x["value"] = s.value;
  x["output_sqnr_db"] = s.output_sqnr_db;
  x["mse"] = s.mse;
  if (s.agreement) x["agreement"] = *s.agreement;
  if (s.top1) x["top1"] = *s.top1;
  if (s.top5) x["top5"] = *s.top5;
  return x;
}

py::dict sensitivity_dict(const kvant::SensitivityReport& r, bool custom) {
  py::dict d;
  d["metric"] = kvant::metric_name(r.metric);
  d["output"] = r.output;
  d["samples"] = r.samples;
  d["fp32"] = r.fp32;
  d["quantized"] = r.quantized;
  d["quantized_sqnr_db"] = r.quantized_sqnr_db;
  d["fp32_scores"] = scores_dict(r.fp32_scores);
  d["quantized_scores"] = scores_dict(r.quantized_scores);
  d["chunks"] = r.chunks;
  if (custom) {
    d["custom_fp32"] = r.custom_fp32;
    d["custom_quantized"] = r.custom_quantized;
  }
  py::list layers;
  int64_t rank = 0;
  for (const kvant::LayerScore& s : r.layers) {
    py::dict l;
    l["node"] = s.node;
    l["op"] = s.op_type;
    l["tensor"] = s.tensor;
    l["measured"] = s.measured;
    if (s.measured) {
      l["rank"] = ++rank;
      l["value"] = s.value;
      l["output_sqnr_db"] = s.output_sqnr_db;
      l["all_but"] = s.all_but;
      if (custom) l["custom"] = s.custom;
      l["scores"] = scores_dict(s.scores);
      if (s.all_but_scores) l["all_but_scores"] = scores_dict(*s.all_but_scores);
      l["partial_nodes"] = s.partial_nodes;
    } else {
      l["note"] = s.note;
    }
    layers.append(l);
  }
  d["layers"] = layers;
  return d;
}

// A Python metric callable as a kvant::MetricCallback: called with the GIL
// re-acquired, the outputs copied into float32 ndarrays (the views end with
// the call). What it raises is kept in `error` (raised again once the kvant
// call returns) and ends the kvant call.
using PyErrorSlot = std::shared_ptr<std::optional<py::error_already_set>>;

kvant::MetricCallback metric_callback(const py::object& metric, const PyErrorSlot& error) {
  return [metric, error](const std::vector<kvant::TensorView>& outputs, const std::vector<int64_t>& labels,
                         const std::string& variant) {
    py::gil_scoped_acquire acquire;
    try {
      py::list arrays;
      for (const kvant::TensorView& y : outputs) {
        std::vector<py::ssize_t> shape(y.shape.begin(), y.shape.end());
        arrays.append(py::array(py::dtype("<f4"), shape, y.data));
      }
      py::object value = metric(arrays, py::cast(labels), variant);
      return py::float_(value).cast<double>();
    } catch (py::error_already_set& e) {
      const std::string message = e.what();
      if (!*error) error->emplace(std::move(e));
      throw std::runtime_error("the metric callable raised: " + message);
    }
  };
}

void rethrow(const PyErrorSlot& error) {
  if (*error) {
    py::error_already_set e = std::move(**error);
    error->reset();
    throw e;
  }
}

// A Python progress callable as a kvant::ProgressCallback: called with the
// GIL re-acquired and a dict (stage, done, total: None when not known; layer
// for sensitivity and accuracy_target; kept_fp32, int8, value, meets for
// accuracy_target). It returning False (not None) cancels the call; what it
// raises is kept in `error` (raised again once the kvant call returns) and
// ends the call.
kvant::ProgressCallback progress_callback(const py::object& progress, const PyErrorSlot& error) {
  if (progress.is_none()) return nullptr;
  return [progress, error](const kvant::Progress& p) {
    py::gil_scoped_acquire acquire;
    try {
      py::dict d;
      d["stage"] = kvant::progress_stage_name(p.stage);
      d["done"] = p.done;
      d["total"] = p.total >= 0 ? py::object(py::int_(p.total)) : py::object(py::none());
      if (p.stage == kvant::ProgressStage::kSensitivity || p.stage == kvant::ProgressStage::kAccuracyTarget) {
        d["layer"] = p.layer;
      }
      if (p.stage == kvant::ProgressStage::kAccuracyTarget) {
        d["kept_fp32"] = p.kept_fp32;
        d["int8"] = p.int8;
        d["value"] = p.value;
        d["meets"] = p.meets;
      }
      const py::object answer = progress(d);
      return !(py::isinstance<py::bool_>(answer) && !answer.cast<bool>());
    } catch (py::error_already_set& e) {
      const std::string message = e.what();
      if (!*error) error->emplace(std::move(e));
      throw std::runtime_error("the progress callable raised: " + message);
    }
  };
}

kvant::AccuracyTarget target_of(const py::dict& d) {
  kvant::AccuracyTarget t;
  for (auto item : d) {
    const std::string key = item.first.cast<std::string>();
    const py::handle v = item.second;
    if (key == "drop") {
      t.drop = v.cast<double>();
    } else if (key == "metric") {
      t.metric = metric_of(v.cast<std::string>());
    } else if (key == "labels") {
      t.labels = v.cast<std::vector<int64_t>>();
    } else if (key == "output") {
      t.output = v.cast<std::string>();
    } else if (key == "limit") {
      t.max_samples = v.cast<int64_t>();
    } else if (key == "reference") {
      t.reference = v.cast<bool>();
    } else if (key == "threads") {
      t.threads = v.cast<int>();
    } else if (key == "higher_is_better") {
      t.higher_is_better = v.cast<bool>();
    } else if (key == "search") {
      const std::string how = v.cast<std::string>();
      if (how != "linear" && how != "bisect") {
        throw StatusError{kvant::ErrorCode::kInvalidArgument,
                          "search must be \"linear\" or \"bisect\", got \"" + how + "\""};
      }
      t.bisect = how == "bisect";
    } else {
      throw StatusError{kvant::ErrorCode::kInvalidArgument, "unknown accuracy target option \"" + key + "\""};
    }
  }
  return t;
}

py::dict target_dict(const kvant::AccuracyTargetReport& r) {
  py::dict d;
  d["met"] = r.met;
  d["threshold"] = r.threshold;
  d["fp32_value"] = r.fp32_value;
  d["value"] = r.value;
  d["chosen_step"] = r.chosen_step;
  d["steps"] = r.steps;
  d["ranking"] = r.ranking;
  d["kept_fp32"] = r.kept_fp32;
  d["int8"] = r.int8;
  d["fp32_scores"] = scores_dict(r.fp32_scores);
  py::list frontier;
  for (const kvant::AccuracyTargetStep& st : r.frontier) {
    py::dict x;
    x["kept_fp32"] = st.kept_fp32;
    x["int8"] = st.int8;
    x["moved"] = st.moved;
    x["bytes"] = st.bytes;
    x["value"] = st.value;
    x["scores"] = scores_dict(st.scores);
    x["ms_per_sample"] = st.ms_per_sample;
    x["meets"] = st.meets;
    frontier.append(x);
  }
  d["frontier"] = frontier;
  return d;
}

// ---------------------------------------------------------------- session

// KvantError, InvalidArgumentError, UnsupportedError, NotFoundError, CancelledError.
std::vector<py::object>* error_classes = nullptr;

struct PySession {
  kvant::Session session;
  std::mutex mutex;
  explicit PySession(kvant::Session s) : session(std::move(s)) {}
};

std::unique_ptr<PySession> create_session(const kvant::OnnxModel& model, int threads, const std::string& isa, bool nhwc,
                                          bool reference) {
  kvant::SessionOptions options;
  options.threads = threads;
  options.isa = isa;
  options.nhwc = nhwc;
  options.reference = reference;
  py::gil_scoped_release release;
  return std::make_unique<PySession>(take(kvant::Session::create(model, options)));
}

// run(output_names or None, feeds) -> list of ndarrays, as ONNX Runtime's.
py::list run_session(PySession& s, const py::object& output_names, const py::dict& feeds) {
  std::vector<std::string> names;
  if (output_names.is_none()) {
    for (const auto& info : s.session.outputs()) names.push_back(info.name);
  } else {
    names = output_names.cast<std::vector<std::string>>();
    for (const auto& name : names) take(s.session.output_index(name));
  }
  std::vector<py::array> keep;  // the arrays the views point into, alive across the run
  kvant::Feeds views;
  for (auto item : feeds) {
    const std::string name = py::str(item.first).cast<std::string>();
    take(s.session.input_index(name));  // a misspelt name: the error lists the model's inputs
    keep.push_back(readable_array(item.second, "input \"" + name + "\""));
    views[name] = view_of(keep.back());
  }
  kvant::Tensors results;
  {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(s.mutex);
    results = take(s.session.run(views));
  }
  py::list out;
  for (const auto& name : names) out.append(to_array(std::move(results.at(name)), name));
  return out;
}

}  // namespace

// kvant.Decoder: the public Decoder behind a lock (one forward at a time,
// as the API asks), logits copied out as float32 [batch, n, vocab].
struct PyDecoder {
  kvant::Decoder decoder;
  std::mutex mutex;
};

std::unique_ptr<PyDecoder> create_decoder(const kvant::OnnxModel& model, int64_t max_total, int64_t batch,
                                          int threads) {
  kvant::DecoderOptions options;
  options.max_total = max_total;
  options.batch = batch;
  options.threads = threads;
  py::gil_scoped_release release;
  return std::unique_ptr<PyDecoder>(new PyDecoder{take(kvant::Decoder::create(model, options)), {}});
}

py::array decoder_forward(PyDecoder& d, const py::array& ids_in) {
  auto ids = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(ids_in);
  if (!ids) throw StatusError{kvant::ErrorCode::kInvalidArgument, "Decoder.forward: ids must be integers"};
  const int64_t batch = d.decoder.batch();
  if (!((ids.ndim() == 1 && batch == 1) || (ids.ndim() == 2 && ids.shape(0) == batch))) {
    throw StatusError{kvant::ErrorCode::kInvalidArgument,
                      "Decoder.forward: ids must have shape [batch, n] with batch " + std::to_string(batch) +
                          (batch == 1 ? " (or [n])" : "")};
  }
  const int64_t n = ids.ndim() == 1 ? ids.shape(0) : ids.shape(1);
  std::lock_guard<std::mutex> lock(d.mutex);
  {
    py::gil_scoped_release release;
    take(d.decoder.forward(ids.data(), n));
  }
  const int64_t vocab = d.decoder.vocab();
  py::array_t<float> out({batch, n, vocab});
  for (int64_t b = 0; b < batch; ++b) {
    const float* logits = take(d.decoder.logits(b));
    std::memcpy(out.mutable_data(b), logits, static_cast<size_t>(n * vocab) * sizeof(float));
  }
  return out;
}

py::dict decoder_info_dict(const kvant::DecoderInfo& info) {
  py::dict d;
  d["input_ids"] = info.input_ids;
  d["attention_mask"] = info.attention_mask;
  d["position_ids"] = info.position_ids;
  d["logits"] = info.logits;
  d["layers"] = info.layers;
  d["vocab"] = info.vocab;
  d["max_positions"] = info.max_positions;
  d["max_positions_source"] = info.max_positions_source;
  return d;
}

PYBIND11_MODULE(_kvant, m) {
  m.doc() = "kvant's C++ API (include/kvant/kvant.h) for the kvant package";

  // Errors: StatusError -> the class python/kvant/_errors.py has for the code.
  // The classes are kept for the life of the process (leaked on purpose: no
  // Python object may be released after the interpreter is gone).
  py::module_ errors = py::module_::import("kvant._errors");
  error_classes = new std::vector<py::object>{errors.attr("KvantError"), errors.attr("InvalidArgumentError"),
                                              errors.attr("UnsupportedError"), errors.attr("NotFoundError"),
                                              errors.attr("CancelledError")};
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      size_t i = 0;
      if (e.code == kvant::ErrorCode::kInvalidArgument) i = 1;
      if (e.code == kvant::ErrorCode::kUnsupported) i = 2;
      if (e.code == kvant::ErrorCode::kNotFound) i = 3;
      if (e.code == kvant::ErrorCode::kCancelled) i = 4;
      PyErr_SetString((*error_classes)[i].ptr(), e.message.c_str());
    }
  });

  m.def("version", [] { return std::string(kvant::version()); });

  py::class_<kvant::OnnxModel>(m, "Model")
      .def_property_readonly("inputs", [](const kvant::OnnxModel& model) { return info_list(model.inputs()); })
      .def_property_readonly("outputs", [](const kvant::OnnxModel& model) { return info_list(model.outputs()); })
      .def_property_readonly("is_quantized", &kvant::OnnxModel::is_quantized)
      .def_property_readonly("opset", &kvant::OnnxModel::opset)
      .def_property_readonly("warnings", &kvant::OnnxModel::warnings)
      .def("save",
           [](const kvant::OnnxModel& model, const py::object& path) {
             const std::string p = py::module_::import("os").attr("fsdecode")(path).cast<std::string>();
             py::gil_scoped_release release;
             check(model.save(p));
           })
      .def("to_bytes", [](const kvant::OnnxModel& model) { return py::bytes(take(model.to_bytes())); });

  m.def("load", &load_model, py::arg("source"), py::arg("infer_shapes") = true, py::arg("input_shapes") = py::none(),
        py::arg("name") = "<memory>");

  py::class_<PySession>(m, "Session")
      .def(py::init(&create_session), py::arg("model"), py::arg("threads") = 1, py::arg("isa") = "",
           py::arg("nhwc") = true, py::arg("reference") = false)
      .def_property_readonly("inputs", [](const PySession& s) { return info_list(s.session.inputs()); })
      .def_property_readonly("outputs", [](const PySession& s) { return info_list(s.session.outputs()); })
      .def("run", &run_session, py::arg("output_names"), py::arg("feeds"))
      .def("describe",
           [](PySession& s) {
             std::lock_guard<std::mutex> lock(s.mutex);
             return s.session.describe();
           })
      .def("plan",
           [](PySession& s) {
             std::lock_guard<std::mutex> lock(s.mutex);
             return plan_dict(take(s.session.plan()));
           })
      .def(
          "set_profiling",
          [](PySession& s, bool on) {
            std::lock_guard<std::mutex> lock(s.mutex);
            check(s.session.set_profiling(on));
          },
          py::arg("on"))
      .def("profile",
           [](PySession& s) {
             std::lock_guard<std::mutex> lock(s.mutex);
             return profile_dict(take(s.session.profile()));
           })
      .def(
          "describe_profile",
          [](PySession& s, size_t top) {
            std::lock_guard<std::mutex> lock(s.mutex);
            return s.session.describe_profile(top);
          },
          py::arg("top") = 15);

  py::class_<PyDecoder>(m, "Decoder")
      .def(py::init(&create_decoder), py::arg("model"), py::arg("max_total"), py::arg("batch") = 1,
           py::arg("threads") = 1)
      .def("forward", &decoder_forward, py::arg("ids"))
      .def("reset",
           [](PyDecoder& d) {
             std::lock_guard<std::mutex> lock(d.mutex);
             d.decoder.reset();
           })
      .def_property_readonly("length", [](const PyDecoder& d) { return d.decoder.length(); })
      .def_property_readonly("max_total", [](const PyDecoder& d) { return d.decoder.max_total(); })
      .def_property_readonly("batch", [](const PyDecoder& d) { return d.decoder.batch(); })
      .def_property_readonly("vocab", [](const PyDecoder& d) { return d.decoder.vocab(); })
      .def_property_readonly("recomputes", [](const PyDecoder& d) { return d.decoder.recomputes(); })
      .def_property_readonly("info", [](const PyDecoder& d) { return decoder_info_dict(d.decoder.info()); });
  m.def("decoder_info",
        [](const kvant::OnnxModel& model) { return decoder_info_dict(take(kvant::decoder_info(model))); });

  m.def("model_stats", [](const kvant::OnnxModel& model) { return stats_dict(take(kvant::model_stats(model))); });

  // sensitivity(model, calibration reader or None, eval reader, options,
  // metric callable or None): calibration may be the eval reader itself.
  // The callable gets (list of float32 ndarrays, list of labels, variant)
  // with the GIL held; what it raises is raised again here.
  m.def(
      "sensitivity",
      [](const kvant::OnnxModel& model, const py::object& calibration, const py::object& eval, const py::dict& options,
         const py::object& metric, const py::object& progress) {
        kvant::SensitivityAnalysisOptions o = sensitivity_options_of(options);
        PyCalibrationReader eval_reader(eval);
        std::optional<PyCalibrationReader> calib_reader;
        kvant::CalibrationDataReader* calib = nullptr;
        if (calibration.is(eval)) {
          calib = &eval_reader;
        } else if (!calibration.is_none()) {
          calib = &calib_reader.emplace(calibration);
        }
        auto error = std::make_shared<std::optional<py::error_already_set>>();
        if (!metric.is_none()) o.custom_metric = metric_callback(metric, error);
        o.progress = progress_callback(progress, error);
        std::optional<kvant::Result<kvant::SensitivityReport>> result;
        {
          py::gil_scoped_release release;
          result.emplace(kvant::sensitivity(model, calib, eval_reader, o));
        }
        o.custom_metric = nullptr;  // drops its reference to the callable while the GIL is held
        o.progress = nullptr;
        rethrow(error);
        eval_reader.rethrow();
        if (calib_reader) calib_reader->rethrow();
        return sensitivity_dict(take(std::move(*result)), !metric.is_none());
      },
      py::arg("model"), py::arg("calibration"), py::arg("eval"), py::arg("options"), py::arg("metric"),
      py::arg("progress") = py::none());
  // quantize_with_target(mode, model, calibration reader or None, eval
  // reader, options, target options, metric callable or None): static or
  // weight-only with an accuracy target; calibration may be the eval reader.
  m.def(
      "quantize_with_target",
      [](const std::string& mode, const kvant::OnnxModel& model, const py::object& calibration, const py::object& eval,
         const py::dict& options, const py::dict& target_options, const py::object& metric,
         const py::object& progress) {
        kvant::QuantizationOptions o = options_of(options);
        kvant::AccuracyTarget t = target_of(target_options);
        PyCalibrationReader eval_reader(eval);
        std::optional<PyCalibrationReader> calib_reader;
        kvant::CalibrationDataReader* calib = nullptr;
        if (calibration.is(eval)) {
          calib = &eval_reader;
        } else if (!calibration.is_none()) {
          calib = &calib_reader.emplace(calibration);
        }
        if (mode == "static" && calib == nullptr) {
          throw StatusError{kvant::ErrorCode::kInvalidArgument, "static quantization needs a calibration reader"};
        }
        auto error = std::make_shared<std::optional<py::error_already_set>>();
        if (!metric.is_none()) t.custom_metric = metric_callback(metric, error);
        o.progress = progress_callback(progress, error);
        kvant::QuantizationReport report;
        kvant::AccuracyTargetReport target_report;
        std::optional<kvant::Result<kvant::OnnxModel>> result;
        {
          py::gil_scoped_release release;
          result.emplace(mode == "static"
                             ? kvant::quantize_static(model, *calib, eval_reader, t, o, &report, &target_report)
                             : kvant::quantize_weight_only(model, calib, eval_reader, t, o, &report, &target_report));
        }
        t.custom_metric = nullptr;
        o.progress = nullptr;
        rethrow(error);
        eval_reader.rethrow();
        if (calib_reader) calib_reader->rethrow();
        kvant::OnnxModel quantized = take(std::move(*result));
        py::dict r = report_dict(report);
        r["accuracy_target"] = target_dict(target_report);
        return py::make_tuple(quantized, r);
      },
      py::arg("mode"), py::arg("model"), py::arg("calibration"), py::arg("eval"), py::arg("options"), py::arg("target"),
      py::arg("metric"), py::arg("progress") = py::none());
  m.def(
      "quantize_static",
      [](const kvant::OnnxModel& model, const py::object& reader, const py::dict& options, const py::object& progress) {
        kvant::QuantizationOptions o = options_of(options);
        PyCalibrationReader calibration(reader);
        auto error = std::make_shared<std::optional<py::error_already_set>>();
        o.progress = progress_callback(progress, error);
        kvant::QuantizationReport report;
        std::optional<kvant::Result<kvant::OnnxModel>> result;
        {
          py::gil_scoped_release release;
          result.emplace(kvant::quantize_static(model, calibration, o, &report));
        }
        o.progress = nullptr;
        rethrow(error);
        calibration.rethrow();
        return py::make_tuple(take(std::move(*result)), report_dict(report));
      },
      py::arg("model"), py::arg("reader"), py::arg("options"), py::arg("progress") = py::none());
  // reader None: the overload without calibration data.
  m.def(
      "quantize_dynamic",
      [](const kvant::OnnxModel& model, const py::object& reader, const py::dict& options, const py::object& progress) {
        kvant::QuantizationOptions o = options_of(options);
        std::optional<PyCalibrationReader> calibration;
        if (!reader.is_none()) calibration.emplace(reader);
        auto error = std::make_shared<std::optional<py::error_already_set>>();
        o.progress = progress_callback(progress, error);
        kvant::QuantizationReport report;
        std::optional<kvant::Result<kvant::OnnxModel>> result;
        {
          py::gil_scoped_release release;
          result.emplace(calibration ? kvant::quantize_dynamic(model, *calibration, o, &report)
                                     : kvant::quantize_dynamic(model, o, &report));
        }
        o.progress = nullptr;
        rethrow(error);
        if (calibration) calibration->rethrow();
        return py::make_tuple(take(std::move(*result)), report_dict(report));
      },
      py::arg("model"), py::arg("reader"), py::arg("options"), py::arg("progress") = py::none());
  m.def(
      "quantize_weight_only",
      [](const kvant::OnnxModel& model, const py::object& reader, const py::dict& options, const py::object& progress) {
        kvant::QuantizationOptions o = options_of(options);
        std::optional<PyCalibrationReader> calibration;
        if (!reader.is_none()) calibration.emplace(reader);
        auto error = std::make_shared<std::optional<py::error_already_set>>();
        o.progress = progress_callback(progress, error);
        kvant::QuantizationReport report;
        std::optional<kvant::Result<kvant::OnnxModel>> result;
        {
          py::gil_scoped_release release;
          result.emplace(calibration ? kvant::quantize_weight_only(model, *calibration, o, &report)
                                     : kvant::quantize_weight_only(model, o, &report));
        }
        o.progress = nullptr;
        rethrow(error);
        if (calibration) calibration->rethrow();
        return py::make_tuple(take(std::move(*result)), report_dict(report));
      },
      py::arg("model"), py::arg("reader"), py::arg("options"), py::arg("progress") = py::none());
}
