// Between the public API (include/kvant/kvant.h) and the library inside:
// type conversions, and guarded(), the edge where exceptions become Status.
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"
#include "ir/tensor.h"
#include "kvant/kvant.h"
#include "quant/task_metric.h"

namespace kvant {

// The library's metric as the API's (an error for one the API lacks).
Metric public_metric(TaskMetric metric);

struct OnnxModel::Impl {
  Model model;  // what save() writes
  // What a Session compiles when it differs from `model`: a quantized model
  // read back with shape inference, as `kvant run` reads its file (null:
  // `model` itself).
  std::shared_ptr<const Model> inferred;
  const Model& runnable() const { return inferred ? *inferred : model; }
  // A quantized model before compact_new_names gave the values it added
  // short names (null otherwise): what `kvant quantize`'s report (range
  // histograms, speed check) reads, as it did before the command used the API.
  std::shared_ptr<const Model> before_renaming;
  std::string display_name;  // the path given, or the name of a model in memory
  std::vector<TensorInfo> inputs, outputs;
};

struct ApiAccess {
  // The internal type of a public one; an error naming `what` for a type
  // kvant has no code for.
  static DType to_dtype(DataType type, const std::string& what);
  static DataType to_data_type(DType type) { return static_cast<DataType>(static_cast<int32_t>(type)); }
  // An OwnedTensor sharing `tensor`'s bytes (nothing copied).
  static OwnedTensor wrap(const Tensor& tensor);
  // A Tensor over the caller's bytes (nothing copied; they must outlive it).
  // Checks the type, the shape and that data is set when there are bytes.
  static Tensor view(const TensorView& view, const std::string& what);
  static TensorInfo info(const ValueInfo& value);
  // A Tensor sharing an OwnedTensor's bytes (kept alive by both).
  static Tensor share(const OwnedTensor& tensor);
  // The model inside; an error for a default-constructed OnnxModel.
  static const OnnxModel::Impl& impl(const OnnxModel& model, const char* what);
  // A public model around `model`; `display_name` starts error messages.
  static OnnxModel make_model(Model model, std::string display_name, std::shared_ptr<const Model> inferred = nullptr,
                              std::shared_ptr<const Model> before_renaming = nullptr);
};

// The caller's reader as the quantizer's SampleSource (api_quantize.cc): a
// reader that cannot rewind is replayed from the samples it gave.
std::unique_ptr<SampleSource> reader_source(CalibrationDataReader& reader, const Graph& graph);

// The library's metric for a public one (api_sensitivity.cc); `what` names
// the option in the error for a value outside the enum.
TaskMetric task_metric_of(Metric metric, const char* what);

// A model's scores as the API reports them (api_sensitivity.cc): the value
// by `metric`, and the others the samples allow.
MetricScores public_scores(const OutputScores& scores, TaskMetric metric);

// The caller's metric callback as the library's custom metric for
// `output` (empty: the model's first) of `model` (api_sensitivity.cc). Keeps
// references to `callback` and `labels`.
std::function<double(const std::vector<std::vector<float>>&, const std::string&)> wrap_metric(
    const MetricCallback& callback, const std::vector<int64_t>& labels, const OnnxModel::Impl& model,
    const std::string& output);

// The caller's progress callback as the library's hooks (api_progress.cc).
// report_progress calls it and throws Error(kCancelled) when it returns
// false. The hooks keep a reference to `callback` and are null when it is
// empty.
struct SensitivityProgress;
void report_progress(const ProgressCallback& callback, const Progress& progress);
std::function<void(int64_t, int64_t)> sample_progress(const ProgressCallback& callback, ProgressStage stage);
std::function<void(const SensitivityProgress&)> sensitivity_progress(const ProgressCallback& callback);

// Runs f(), turning any exception into the Status that f's result type
// (Status or Result<T>) holds: kvant::Error keeps its code and message,
// std::bad_alloc is "out of memory", anything else kInternal.
template <typename F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    return e.status();
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kInvalidArgument, "out of memory");
  } catch (const std::exception& e) {
    return Status(ErrorCode::kInternal, e.what());
  } catch (...) {
    return Status(ErrorCode::kInternal, "unknown exception");
  }
}

}  // namespace kvant
