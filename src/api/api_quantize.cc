// quantize_static / quantize_dynamic / quantize_weight_only (kvant.h): the
// steps of `kvant quantize` (src/cli/cmd_quantize.cc) without the files and
// the report printing, so the API's model and the command's file are the
// same bytes for the same data and options.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <ostream>
#include <set>
#include <streambuf>

#include "api/api_internal.h"
#include "io/sample_source.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "ops/op_registry.h"
#include "quant/accuracy_target.h"
#include "quant/algorithms/scaling_notes.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {

CalibrationDataReader::~CalibrationDataReader() = default;

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// The caller's reader as the quantizer's SampleSource. A reader that cannot
// rewind is replayed from the samples it gave (kept, not copied), then read
// on from where it stopped.
class ReaderSource : public SampleSource {
 public:
  ReaderSource(CalibrationDataReader& reader, const Graph& graph) : reader_(reader) {
    for (const ValueInfo& in : graph.inputs) {
      if (!graph.initializers.count(in.name)) inputs_.push_back(in.name);
    }
  }

  std::optional<std::map<std::string, Tensor>> next() override {
    if (pos_ < kept_.size()) return kept_[pos_++];
    if (ended_) return std::nullopt;
    std::optional<Tensors> sample = reader_.get_next();
    if (!sample) {
      ended_ = true;
      return std::nullopt;
    }
    std::map<std::string, Tensor> feed;
    for (const auto& [name, tensor] : *sample) {
      if (std::find(inputs_.begin(), inputs_.end(), name) == inputs_.end()) {
        std::string names;
        for (const std::string& in : inputs_) names += (names.empty() ? "" : ", ") + in;
        fail("calibration sample " + std::to_string(read_) + ": the model has no input named \"" + name +
             "\" (inputs: " + names + ")");
      }
      if (tensor.dtype() == DataType::kUndefined) {
        fail("calibration sample " + std::to_string(read_) + ": input \"" + name + "\" is an empty OwnedTensor");
      }
      feed[name] = ApiAccess::share(tensor);
    }
    ++read_;
    if (!streaming_) {
      kept_.push_back(feed);
      ++pos_;
    }
    return feed;
  }

  // The reader's own count, else (once it ended and is replayed) the
  // samples it gave; -1 before that.
  int64_t size() const override {
    const int64_t n = reader_.size();
    if (n >= 0) return n;
    return ended_ && !streaming_ ? static_cast<int64_t>(kept_.size()) : -1;
  }

  void reset() override {
    if (reader_.rewind()) {
      streaming_ = true;
      kept_.clear();
      ended_ = false;
      read_ = 0;
    }
    pos_ = 0;
  }

 private:
  CalibrationDataReader& reader_;
  std::vector<std::string> inputs_;
  std::vector<std::map<std::string, Tensor>> kept_;
  size_t pos_ = 0;
  int64_t read_ = 0;
  bool ended_ = false;
  bool streaming_ = false;
};

// An option that does nothing in the chosen mode is an error (as
// cmd_quantize.cc's check_mode_options): here, one set away from its default.
void check_mode_options(const QuantizationOptions& o, QuantMode mode, bool has_data) {
  const QuantizationOptions d;
  using M = QuantMode;
  struct Rule {
    const char* option;
    bool set;
    std::set<QuantMode> modes;
    const char* modes_text;
  };
  const Rule rules[] = {
      {"calibrator", o.calibrator != d.calibrator, {M::kStatic}, "static"},
      {"max_samples", o.max_samples != d.max_samples, {M::kStatic, M::kWeightOnly}, "static and weight-only"},
      {"activation_type", o.activation_type != d.activation_type, {M::kStatic}, "static"},
      {"symmetric_activations", o.symmetric_activations != d.symmetric_activations, {M::kStatic}, "static"},
      {"per_tensor", o.per_tensor != d.per_tensor, {M::kStatic, M::kDynamic}, "static and dynamic"},
      {"reduce_range", o.reduce_range != d.reduce_range, {M::kStatic, M::kDynamic}, "static and dynamic"},
      {"affine_weights", o.affine_weights != d.affine_weights, {M::kStatic, M::kWeightOnly}, "static and weight-only"},
      {"bits", o.bits != d.bits, {M::kWeightOnly}, "weight-only"},
      {"group_size", o.group_size != d.group_size, {M::kWeightOnly}, "weight-only"},
      {"format", o.format != d.format, {M::kWeightOnly}, "weight-only"},
      {"accuracy_level", o.accuracy_level != d.accuracy_level, {M::kWeightOnly}, "weight-only"},
      {"weight_bits", o.weight_bits != d.weight_bits, {M::kStatic}, "static"},
      {"equalize", o.equalize != d.equalize, {M::kStatic, M::kDynamic}, "static and dynamic"},
      {"bias_correction", o.bias_correction != d.bias_correction, {M::kStatic}, "static"},
      {"rounding", o.rounding != d.rounding, {M::kStatic, M::kWeightOnly}, "static and weight-only"},
      {"awq", o.awq != d.awq, {M::kWeightOnly}, "weight-only"},
      {"smooth_quant", o.smooth_quant != d.smooth_quant, {M::kStatic, M::kDynamic}, "static and dynamic"},
  };
  const char* mode_text = mode == M::kStatic ? "static" : mode == M::kDynamic ? "dynamic" : "weight-only";
  for (const Rule& r : rules) {
    if (r.set && !r.modes.count(mode)) {
      fail(std::string("QuantizationOptions::") + r.option + " applies to " + r.modes_text +
           " quantization only, not " + mode_text);
    }
  }
  if (o.percentile != d.percentile && o.calibrator != Calibrator::kPercentile) {
    fail("QuantizationOptions::percentile applies to Calibrator::kPercentile only");
  }
  if (o.smooth_quant_alpha != d.smooth_quant_alpha && !o.smooth_quant) {
    fail("QuantizationOptions::smooth_quant_alpha applies with smooth_quant = true only");
  }
  // As the command's "applies only with --calib DATA".
  const char* needs_data = nullptr;
  if (o.max_samples != d.max_samples) needs_data = "max_samples";
  if (o.awq) needs_data = "awq";
  if (o.smooth_quant) needs_data = "smooth_quant";
  if (o.rounding == RoundingMethod::kGptq) needs_data = "rounding = RoundingMethod::kGptq";
  if (o.report_samples < 0) {
    fail("QuantizationOptions::report_samples must be at least 0, got " + std::to_string(o.report_samples));
  }
  if (o.report_samples > 0) needs_data = "report_samples";
  if (needs_data && !has_data) {
    fail(std::string("QuantizationOptions::") + needs_data + " needs calibration data: call the " + mode_text +
         " overload that takes a CalibrationDataReader");
  }
}

QuantizeOptions to_options(const QuantizationOptions& o, QuantMode mode, bool has_data) {
  check_mode_options(o, mode, has_data);
  QuantizeOptions out;
  out.mode = mode;
  switch (o.calibrator) {
    case Calibrator::kMinMax: out.calibration.method = CalibrationMethod::kMinMax; break;
    case Calibrator::kMovingAverage: out.calibration.method = CalibrationMethod::kMovingAverage; break;
    case Calibrator::kPercentile: out.calibration.method = CalibrationMethod::kPercentile; break;
    case Calibrator::kEntropy: out.calibration.method = CalibrationMethod::kEntropy; break;
    case Calibrator::kMse: out.calibration.method = CalibrationMethod::kMse; break;
    default: fail("QuantizationOptions::calibrator: unknown value");
  }
  out.calibration.percentile = o.percentile;
  if (o.max_samples < 1)
    fail("QuantizationOptions::max_samples must be at least 1, got " + std::to_string(o.max_samples));
  out.max_samples = o.max_samples;
  if (o.activation_type == DataType::kUInt8) {
    out.activation_type = DType::kUInt8;
  } else if (o.activation_type == DataType::kInt8) {
    out.activation_type = DType::kInt8;
  } else {
    fail(std::string("QuantizationOptions::activation_type must be kUInt8 or kInt8, got ") +
         data_type_name(o.activation_type));
  }
  out.activation_symmetry = o.symmetric_activations ? Symmetry::kSymmetric : Symmetry::kAffine;
  out.weight_symmetry = o.affine_weights ? Symmetry::kAffine : Symmetry::kSymmetric;
  out.per_channel = !o.per_tensor;
  out.reduce_range = o.reduce_range;
  out.group_size = o.group_size;
  if (o.accuracy_level < 0 || o.accuracy_level > 4) {
    fail("QuantizationOptions::accuracy_level must be 0-4 (4: int8 activations), got " +
         std::to_string(o.accuracy_level));
  }
  if (o.accuracy_level != 0 && o.format != WeightOnlyFormat::kMatMulNBits) {
    fail("QuantizationOptions::accuracy_level applies to WeightOnlyFormat::kMatMulNBits (--format ort) only");
  }
  out.accuracy_level = o.accuracy_level;
  out.exclude = o.exclude;
  out.allow_nonfinite = o.allow_nonfinite;
  if (o.format != WeightOnlyFormat::kQdq && o.format != WeightOnlyFormat::kMatMulNBits) {
    fail("QuantizationOptions::format: unknown value");
  }
  if (o.weight_bits != 8 && o.weight_bits != 4) {
    fail("QuantizationOptions::weight_bits must be 8 or 4, got " + std::to_string(o.weight_bits));
  }
  if (o.weight_bits == 4) {  // W4A8
    if (o.reduce_range) fail("QuantizationOptions::reduce_range applies to 8-bit weights, not weight_bits 4");
    out.weight_type = DType::kInt4;
  }
  out.bias_correction = o.bias_correction;
  switch (o.rounding) {
    case RoundingMethod::kNearest: out.rounding = WeightRounding::kNearest; break;
    case RoundingMethod::kAdaRound:
      if (mode != QuantMode::kStatic)
        fail("RoundingMethod::kAdaRound applies to static quantization only (kGptq: weight-only)");
      out.rounding = WeightRounding::kAdaRound;
      break;
    case RoundingMethod::kGptq:
      if (mode != QuantMode::kWeightOnly) {
        fail("RoundingMethod::kGptq applies to weight-only quantization only (kAdaRound: static)");
      }
      if (o.format == WeightOnlyFormat::kMatMulNBits) {
        fail("RoundingMethod::kGptq writes WeightOnlyFormat::kQdq only (kMatMulNBits is round to nearest)");
      }
      out.rounding = WeightRounding::kGptq;
      break;
    default: fail("QuantizationOptions::rounding: unknown value");
  }
  if (o.smooth_quant && o.smooth_quant_alpha && !(*o.smooth_quant_alpha >= 0 && *o.smooth_quant_alpha <= 1)) {
    fail("QuantizationOptions::smooth_quant_alpha must be in [0, 1] (or nullopt: searched), got " +
         std::to_string(*o.smooth_quant_alpha));
  }
  return out;
}

// An ostream whose every line goes to a callback (AccuracyTarget::log).
class LineBuffer : public std::streambuf {
 public:
  explicit LineBuffer(const std::function<void(const std::string&)>& sink) : sink_(sink) {}

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    if (traits_type::to_char_type(c) == '\n') {
      std::string line;
      line.swap(line_);
      sink_(line);
    } else {
      line_.push_back(traits_type::to_char_type(c));
    }
    return c;
  }

 private:
  const std::function<void(const std::string&)>& sink_;
  std::string line_;
};

// The accuracy target's search (quant/accuracy_target.h) on `eval`, from
// `quantized` (every layer quantized): the model chosen, its summary in
// `summary`.
Model steer(const Model& fp32, Model quantized, QuantizeSummary& summary, SampleSource* calibration, SampleSource& eval,
            const QuantizeOptions& opts, const QuantizationOptions& options, const AccuracyTarget& target,
            const OnnxModel::Impl& in, AccuracyTargetReport* target_report) {
  TargetOptions t;
  t.metric = target.metric           ? task_metric_of(*target.metric, "AccuracyTarget::metric")
             : target.labels.empty() ? TaskMetric::kAgreement
                                     : TaskMetric::kTop1;
  if (needs_labels(t.metric) && target.labels.empty()) {
    fail(std::string("AccuracyTarget: metric ") + task_metric_name(t.metric) + " needs labels: AccuracyTarget::labels");
  }
  if (target.threads < 1 || target.threads > 256) {
    fail("AccuracyTarget::threads must be 1 .. 256, got " + std::to_string(target.threads));
  }
  t.drop = target.drop;
  t.output = target.output;
  t.reference = target.reference;
  t.threads = target.threads;
  t.limit = target.max_samples;
  if (target.custom_metric) {
    t.custom = wrap_metric(target.custom_metric, target.labels, in, target.output);
    t.custom_higher_is_better = target.higher_is_better;
  }
  t.int8_ladder = (opts.mode == QuantMode::kWeightOnly && options.bits == 4) ||
                  (opts.mode == QuantMode::kStatic && options.weight_bits == 4);
  t.bisect = target.bisect;
  t.progress = sensitivity_progress(options.progress);
  if (options.progress) {
    t.on_step = [&options](const FrontierStep& step, size_t index) {
      Progress p;
      p.stage = ProgressStage::kAccuracyTarget;
      p.done = static_cast<int64_t>(index) + 1;
      p.layer = step.moved;
      p.kept_fp32 = static_cast<int64_t>(step.kept.size());
      p.int8 = static_cast<int64_t>(step.int8.size());
      p.value = step.value;
      p.meets = step.meets;
      report_progress(options.progress, p);
    };
  }
  const QuantizeWith quantize_with = [&](const std::vector<std::string>& keep, const std::vector<std::string>& int8,
                                         QuantizeSummary* sum) {
    return quantize_mix(fp32, calibration, opts, options.bits, keep, int8, sum);
  };
  std::unique_ptr<LineBuffer> log_buffer;
  std::unique_ptr<std::ostream> log;
  if (target.log) {
    log_buffer = std::make_unique<LineBuffer>(target.log);
    log = std::make_unique<std::ostream>(log_buffer.get());
    log->exceptions(std::ios::badbit);  // the callback's exception ends the search
  }
  TargetSearch search =
      search_accuracy_target(fp32, std::move(quantized), summary, quantize_with, eval, target.labels, t, log.get());
  summary = search.summary;
  const FrontierStep& chosen = search.steps.at(search.chosen);
  if (!search.met) {
    summary.warnings.push_back("accuracy target not met: no mix of FP32 and quantized layers reached " +
                               std::string(t.custom ? "the custom metric" : task_metric_name(t.metric)) + " " +
                               format_target_value(t, search.threshold) + "; the closest (step " +
                               std::to_string(search.chosen) + ": " + format_target_value(t, chosen.value) +
                               ") is returned");
  }
  if (target_report) {
    *target_report = AccuracyTargetReport{};
    target_report->met = search.met;
    target_report->threshold = search.threshold;
    target_report->fp32_value = search.fp32_value;
    target_report->value = chosen.value;
    target_report->chosen_step = static_cast<int64_t>(search.chosen);
    target_report->steps = static_cast<int64_t>(search.steps.size());
    target_report->ranking = search.ranking;
    target_report->kept_fp32 = chosen.kept;
    target_report->int8 = chosen.int8;
    target_report->fp32_scores = public_scores(search.fp32, t.metric);
    for (const FrontierStep& step : search.steps) {
      AccuracyTargetStep out;
      out.kept_fp32 = step.kept;
      out.int8 = step.int8;
      out.moved = step.moved;
      out.bytes = step.bytes;
      out.value = step.value;
      out.scores = public_scores(step.scores, t.metric);
      out.ms_per_sample = step.ms_per_sample;
      out.meets = step.meets;
      target_report->frontier.push_back(std::move(out));
    }
  }
  return std::move(search.model);
}

Result<OnnxModel> quantize(const OnnxModel& model, CalibrationDataReader* calibration,
                           const QuantizationOptions& options, QuantMode mode, QuantizationReport* report,
                           const char* what, CalibrationDataReader* eval = nullptr,
                           const AccuracyTarget* target = nullptr, AccuracyTargetReport* target_report = nullptr) {
  return guarded([&]() -> Result<OnnxModel> {
    const OnnxModel::Impl& in = ApiAccess::impl(model, what);
    QuantizeOptions opts = to_options(options, mode, calibration != nullptr);
    if (is_quantized_model(in.model)) {
      fail(in.display_name +
           " is already quantized (it has QuantizeLinear/DequantizeLinear or integer operators); "
           "quantize its FP32 original instead");
    }
    Model fp32 = prepare_for_quantization(in.model);
    // The rewrites before quantizing, in the command's order: equalization,
    // then AWQ or SmoothQuant on the calibration data.
    std::vector<std::string> equalize_lines, scaling_lines;
    if (options.equalize) equalize_lines = equalize_notes(equalize_cross_layer(fp32.graph));
    std::unique_ptr<ReaderSource> source;
    if (calibration) source = std::make_unique<ReaderSource>(*calibration, fp32.graph);
    opts.progress = sample_progress(options.progress, ProgressStage::kAwq);
    if (options.awq) scaling_lines = awq_notes(apply_awq(fp32, *source, options.bits, opts));
    if (options.smooth_quant) {
      opts.progress = sample_progress(options.progress, ProgressStage::kSmoothQuant);
      const std::set<std::string> compute_ops =
          mode == QuantMode::kStatic ? std::set<std::string>{"Conv", "Gemm", "MatMul"}
                                     : std::set<std::string>{"MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN"};
      scaling_lines = smooth_quant_notes(
          apply_smooth_quant(fp32, *source, options.smooth_quant_alpha, opts, compute_ops), options.smooth_quant_alpha);
    }
    // As the command: calibration reports progress; in weight-only mode
    // only GPTQ runs the calibration data then.
    opts.progress = nullptr;
    if (mode == QuantMode::kStatic) opts.progress = sample_progress(options.progress, ProgressStage::kCalibration);
    if (mode == QuantMode::kWeightOnly && opts.rounding == WeightRounding::kGptq) {
      opts.progress = sample_progress(options.progress, ProgressStage::kGptq);
    }
    QuantizeSummary summary;
    Model quantized;
    switch (mode) {
      case QuantMode::kStatic: quantized = quantize_static(fp32, *source, opts, &summary); break;
      case QuantMode::kDynamic: quantized = quantize_dynamic(fp32, opts, &summary); break;
      case QuantMode::kWeightOnly:
        quantized = options.format == WeightOnlyFormat::kMatMulNBits
                        ? quantize_matmul_nbits(fp32, options.bits, opts, &summary)
                        : quantize_weight_only(fp32, options.bits, opts, &summary, source.get());
        break;
    }
    if (target) {
      if (mode == QuantMode::kWeightOnly && options.format == WeightOnlyFormat::kMatMulNBits) {
        fail("an accuracy target applies to WeightOnlyFormat::kQdq, not kMatMulNBits");
      }
      std::unique_ptr<SampleSource> own_eval;
      SampleSource* eval_source = source.get();
      if (eval != calibration) {
        own_eval = reader_source(*eval, fp32.graph);
        eval_source = own_eval.get();
      }
      quantized = steer(fp32, std::move(quantized), summary, source.get(), *eval_source, opts, options, *target, in,
                        target_report);
    }
    summary.notes.insert(summary.notes.begin(), scaling_lines.begin(), scaling_lines.end());
    summary.notes.insert(summary.notes.begin(), equalize_lines.begin(), equalize_lines.end());
    // As the command: the modes that never run the model name the
    // operators kvant has no kernel for (static calibration lists them).
    if (mode != QuantMode::kStatic) {
      for (const Node& n : fp32.graph.nodes) {
        if (find_op(n.domain, n.op_type) != nullptr) continue;
        const std::string op = n.domain.empty() ? n.op_type : n.domain + "." + n.op_type;
        summary.fp32_reasons.emplace_back(
            n.name.empty() ? op : n.name,
            (n.domain.empty() ? "operator " : "custom-domain operator ") + op + " has no kvant kernel: left as it is");
      }
    }
    quantized.graph.value_info.clear();
    // The per-layer comparison (the command's --report-samples), on the
    // model before its new values are renamed: the command's report names.
    std::vector<LayerError> layers;
    int64_t layer_samples = 0;
    if (report && options.report_samples > 0 && source && !summary.layer_outputs.empty() &&
        unsupported_operators(fp32).empty()) {
      layer_samples = std::min<int64_t>(options.report_samples, std::max<int64_t>(source->size(), 0));
      if (source->size() < 0) {  // a reader that does not know its length: count what the comparison can read
        source->reset();
        layer_samples = 0;
        while (layer_samples < options.report_samples && source->next()) ++layer_samples;
      }
      layers = compare_layers(fp32, quantized, summary.layer_outputs, *source, options.report_samples);
    }
    auto before_renaming = std::make_shared<const Model>(quantized);
    compact_new_names(in.model, quantized);
    // A Session compiles the model as a reader of the written file sees it:
    // serialized and read back with shape inference, as `kvant run` reads
    // it. The weights are then shared, not held twice. Models over
    // protobuf's 2 GB limit compile as they are.
    std::shared_ptr<const Model> inferred;
    if (auto bytes = serialize_onnx(quantized); bytes.ok()) {
      auto reread = load_onnx_bytes(bytes->data(), bytes->size(), {}, in.display_name);
      if (!reread.ok()) return reread.status();
      reread->source_path = quantized.source_path;
      for (auto& [name, tensor] : quantized.graph.initializers) {
        auto it = reread->graph.initializers.find(name);
        if (it != reread->graph.initializers.end() && it->second.dtype() == tensor.dtype() &&
            it->second.shape() == tensor.shape()) {
          tensor = it->second;
        }
      }
      inferred = std::make_shared<const Model>(std::move(reread).value());
    }
    if (report) {
      *report = QuantizationReport{};
      report->quantized_nodes = summary.quantized_nodes;
      report->calibration_samples = summary.calibration_samples;
      report->kept_fp32 = summary.kept_fp32;
      report->fp32_reasons = summary.fp32_reasons;
      report->notes = summary.notes;
      report->warnings = summary.warnings;
      report->layer_outputs = summary.layer_outputs;
      report->layer_samples = layer_samples;
      std::map<std::pair<std::string, std::string>, int64_t> order;
      for (const auto& layer : summary.layer_outputs) order.emplace(layer, static_cast<int64_t>(order.size()));
      for (const LayerError& e : layers) {
        LayerComparison c;
        c.node = e.node;
        c.tensor = e.tensor;
        auto o = order.find({e.node, e.tensor});
        c.order = o == order.end() ? static_cast<int64_t>(order.size()) : o->second;
        c.sqnr_db = e.sqnr_db;
        c.cosine = e.cosine;
        c.own_sqnr_db = e.own_sqnr_db;
        c.own_cosine = e.own_cosine;
        c.near_constant = e.near_constant;
        c.fp32_std = e.fp32_std;
        c.output_step = e.output_step;
        report->layers.push_back(std::move(c));
      }
      report->fp32 = ApiAccess::make_model(std::move(fp32), in.display_name);
    }
    return ApiAccess::make_model(std::move(quantized), in.display_name, std::move(inferred),
                                 std::move(before_renaming));
  });
}

}  // namespace

std::unique_ptr<SampleSource> reader_source(CalibrationDataReader& reader, const Graph& graph) {
  return std::make_unique<ReaderSource>(reader, graph);
}

Result<OnnxModel> quantize_static(const OnnxModel& model, CalibrationDataReader& calibration,
                                  const QuantizationOptions& options, QuantizationReport* report) {
  return quantize(model, &calibration, options, QuantMode::kStatic, report, "quantize_static");
}

Result<OnnxModel> quantize_dynamic(const OnnxModel& model, const QuantizationOptions& options,
                                   QuantizationReport* report) {
  return quantize(model, nullptr, options, QuantMode::kDynamic, report, "quantize_dynamic");
}

Result<OnnxModel> quantize_weight_only(const OnnxModel& model, const QuantizationOptions& options,
                                       QuantizationReport* report) {
  return quantize(model, nullptr, options, QuantMode::kWeightOnly, report, "quantize_weight_only");
}

Result<OnnxModel> quantize_dynamic(const OnnxModel& model, CalibrationDataReader& calibration,
                                   const QuantizationOptions& options, QuantizationReport* report) {
  return quantize(model, &calibration, options, QuantMode::kDynamic, report, "quantize_dynamic");
}

Result<OnnxModel> quantize_weight_only(const OnnxModel& model, CalibrationDataReader& calibration,
                                       const QuantizationOptions& options, QuantizationReport* report) {
  return quantize(model, &calibration, options, QuantMode::kWeightOnly, report, "quantize_weight_only");
}

Result<OnnxModel> quantize_static(const OnnxModel& model, CalibrationDataReader& calibration,
                                  CalibrationDataReader& eval, const AccuracyTarget& target,
                                  const QuantizationOptions& options, QuantizationReport* report,
                                  AccuracyTargetReport* target_report) {
  return quantize(model, &calibration, options, QuantMode::kStatic, report, "quantize_static", &eval, &target,
                  target_report);
}

Result<OnnxModel> quantize_weight_only(const OnnxModel& model, CalibrationDataReader* calibration,
                                       CalibrationDataReader& eval, const AccuracyTarget& target,
                                       const QuantizationOptions& options, QuantizationReport* report,
                                       AccuracyTargetReport* target_report) {
  return quantize(model, calibration, options, QuantMode::kWeightOnly, report, "quantize_weight_only", &eval, &target,
                  target_report);
}

}  // namespace kvant
