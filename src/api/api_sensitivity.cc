// sensitivity (kvant.h): the steps of `kvant sensitivity`
// (src/cli/cmd_sensitivity.cc) on the caller's readers, with the caller's
// metric callback in place of --metric-cmd.
#include <algorithm>
#include <limits>

#include "api/api_internal.h"
#include "quant/quantize.h"
#include "quant/sensitivity.h"

namespace kvant {

Metric public_metric(TaskMetric metric) {
  switch (metric) {
    case TaskMetric::kTop1: return Metric::kTop1;
    case TaskMetric::kTop5: return Metric::kTop5;
    case TaskMetric::kAgreement: return Metric::kAgreement;
    case TaskMetric::kSqnr: return Metric::kSqnr;
    case TaskMetric::kMse: return Metric::kMse;
    case TaskMetric::kMiou: return Metric::kMiou;
    case TaskMetric::kPerplexity: return Metric::kPerplexity;
  }
  throw Error(ErrorCode::kInvalidArgument,
              std::string("metric ") + task_metric_name(metric) + " has no counterpart in the API");
}

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

ObserverOptions observer_options(Calibrator calibrator) {
  ObserverOptions o;
  switch (calibrator) {
    case Calibrator::kMinMax: o.method = CalibrationMethod::kMinMax; break;
    case Calibrator::kMovingAverage: o.method = CalibrationMethod::kMovingAverage; break;
    case Calibrator::kPercentile: o.method = CalibrationMethod::kPercentile; break;
    case Calibrator::kEntropy: o.method = CalibrationMethod::kEntropy; break;
    case Calibrator::kMse: o.method = CalibrationMethod::kMse; break;
    default: fail("SensitivityAnalysisOptions::calibrator: unknown value");
  }
  return o;
}

}  // namespace

std::function<double(const std::vector<std::vector<float>>&, const std::string&)> wrap_metric(
    const MetricCallback& callback, const std::vector<int64_t>& labels, const OnnxModel::Impl& model,
    const std::string& output) {
  // The scored output's declared shape, where it is fixed.
  std::vector<int64_t> shape;
  const std::string scored = output.empty() && !model.outputs.empty() ? model.outputs[0].name : output;
  for (const TensorInfo& info : model.outputs) {
    if (info.name != scored || !info.has_shape) continue;
    if (std::all_of(info.shape.begin(), info.shape.end(), [](int64_t d) { return d >= 0; })) shape = info.shape;
  }
  int64_t declared = shape.empty() ? -1 : 1;
  for (int64_t d : shape) declared *= d;
  return [&callback, &labels, shape, declared](const std::vector<std::vector<float>>& outputs,
                                               const std::string& variant) {
    std::vector<TensorView> views;
    views.reserve(outputs.size());
    for (const std::vector<float>& y : outputs) {
      const auto n = static_cast<int64_t>(y.size());
      views.push_back(TensorView{y.data(), DataType::kFloat32, n == declared ? shape : std::vector<int64_t>{n}});
    }
    const size_t labelled = std::min(labels.size(), outputs.size());
    const std::vector<int64_t> given(labels.begin(), labels.begin() + static_cast<ptrdiff_t>(labelled));
    return callback(views, given, variant);
  };
}

MetricScores public_scores(const OutputScores& s, TaskMetric metric) {
  MetricScores out;
  out.value = s.value(metric);
  out.output_sqnr_db = s.sqnr_db();
  out.mse = s.mse();
  if (s.classifier_rows > 0) out.agreement = s.agreement();
  if (s.labelled_rows > 0) {
    out.top1 = s.top1();
    out.top5 = s.top5();
  }
  return out;
}

TaskMetric task_metric_of(Metric metric, const char* what) {
  switch (metric) {
    case Metric::kTop1: return TaskMetric::kTop1;
    case Metric::kTop5: return TaskMetric::kTop5;
    case Metric::kAgreement: return TaskMetric::kAgreement;
    case Metric::kSqnr: return TaskMetric::kSqnr;
    case Metric::kMse: return TaskMetric::kMse;
    case Metric::kMiou: return TaskMetric::kMiou;
    case Metric::kPerplexity: return TaskMetric::kPerplexity;
  }
  throw Error(ErrorCode::kInvalidArgument, std::string(what) + ": unknown value");
}

const char* metric_name(Metric metric) {
  switch (metric) {
    case Metric::kTop1:
    case Metric::kTop5:
    case Metric::kAgreement:
    case Metric::kSqnr:
    case Metric::kMse:
    case Metric::kMiou:
    case Metric::kPerplexity: return task_metric_name(task_metric_of(metric, "metric"));
  }
  return "unknown";
}

Result<SensitivityReport> sensitivity(const OnnxModel& model, CalibrationDataReader* calibration,
                                      CalibrationDataReader& eval, const SensitivityAnalysisOptions& o) {
  return guarded([&]() -> Result<SensitivityReport> {
    const OnnxModel::Impl& in = ApiAccess::impl(model, "sensitivity");
    if (o.bits != 8 && o.bits != 4) {
      fail("SensitivityAnalysisOptions::bits must be 8 (static INT8) or 4 (weight-only INT4), got " +
           std::to_string(o.bits));
    }
    if (o.bits == 8 && calibration == nullptr) fail("bits 8 (static INT8) needs a calibration reader");
    if (o.calibration_samples < 1) {
      fail("SensitivityAnalysisOptions::calibration_samples must be at least 1, got " +
           std::to_string(o.calibration_samples));
    }
    if (o.threads < 1 || o.threads > 256) {
      fail("SensitivityAnalysisOptions::threads must be 1 .. 256, got " + std::to_string(o.threads));
    }
    if (is_quantized_model(in.model)) fail(in.display_name + " is already quantized; give its FP32 original");
    const Model fp32 = prepare_for_quantization(in.model);

    // One source per reader; the same reader for both is read once.
    std::unique_ptr<SampleSource> eval_source = reader_source(eval, fp32.graph);
    std::unique_ptr<SampleSource> calib_source;
    SampleSource* calib = eval_source.get();
    if (calibration != nullptr && calibration != &eval) {
      calib_source = reader_source(*calibration, fp32.graph);
      calib = calib_source.get();
    }

    SensitivityOptions so;
    so.metric = o.metric           ? task_metric_of(*o.metric, "SensitivityAnalysisOptions::metric")
                : o.labels.empty() ? TaskMetric::kAgreement
                                   : TaskMetric::kTop1;
    if (needs_labels(so.metric) && o.labels.empty()) {
      fail(std::string("metric ") + task_metric_name(so.metric) + " needs labels: SensitivityAnalysisOptions::labels");
    }
    so.output = o.output;
    so.leave_one_out = o.leave_one_out;
    so.reference = o.reference;
    so.threads = o.threads;
    so.max_samples = o.max_samples;
    so.progress = sensitivity_progress(o.progress);
    if (o.custom_metric) {
      so.custom_metric = wrap_metric(o.custom_metric, o.labels, in, o.output);
      so.custom_higher_is_better = o.higher_is_better;
    }

    QuantizeOptions qo;
    qo.exclude = o.exclude;
    qo.max_samples = o.calibration_samples;
    qo.calibration = observer_options(o.calibrator);
    qo.group_size = o.group_size;
    qo.progress = sample_progress(o.progress, ProgressStage::kCalibration);
    QuantizeSummary summary;
    Model quantized;
    if (o.bits == 8) {
      quantized = quantize_static(fp32, *calib, qo, &summary);
    } else {
      qo.mode = QuantMode::kWeightOnly;
      quantized = quantize_weight_only(fp32, 4, qo, &summary);
    }
    const std::vector<QuantizedLayer> layers = quantized_layers(fp32, quantized);
    if (layers.empty()) fail("nothing to measure: the quantizer rewrote no Conv, Gemm or MatMul of " + in.display_name);
    const SensitivityResult r = analyze_sensitivity(fp32, quantized, layers, *eval_source, o.labels, so);

    constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    SensitivityReport out;
    out.metric = public_metric(r.metric);
    out.output = r.output;
    out.samples = r.samples;
    out.fp32 = r.fp32.value(r.metric);
    out.quantized = r.quantized.value(r.metric);
    out.quantized_sqnr_db = r.quantized.sqnr_db();
    out.custom_fp32 = r.custom_fp32;
    out.custom_quantized = r.custom_quantized;
    out.fp32_scores = public_scores(r.fp32, r.metric);
    out.quantized_scores = public_scores(r.quantized, r.metric);
    out.chunks = r.chunks;
    for (const LayerSensitivity& ls : r.layers) {
      LayerScore s;
      s.node = ls.layer.node;
      s.op_type = ls.layer.op_type;
      s.tensor = ls.layer.tensor;
      s.measured = ls.measured;
      s.note = ls.note;
      s.value = ls.measured ? ls.only.value(r.metric) : kNaN;
      s.output_sqnr_db = ls.measured ? ls.only.sqnr_db() : kNaN;
      s.all_but = ls.measured && ls.all_but.samples > 0 ? ls.all_but.value(r.metric) : kNaN;
      s.custom = ls.custom_only;
      s.partial_nodes = ls.partial_nodes;
      if (ls.measured) {
        s.scores = public_scores(ls.only, r.metric);
        if (ls.all_but.samples > 0) s.all_but_scores = public_scores(ls.all_but, r.metric);
      }
      out.layers.push_back(std::move(s));
    }
    return out;
  });
}

}  // namespace kvant
