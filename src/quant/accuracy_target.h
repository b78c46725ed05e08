// `kvant quantize --accuracy-target DROP` and the API's accuracy target
// (kvant.h): the fewest layers kept in FP32
// that bring the quantized model within DROP of FP32 on an evaluation set.
//
//   1. Quantize every layer; measure the metric on the evaluation set.
//   2. While the target is missed: rank the layers by sensitivity once
//      (quant/sensitivity.h, on the fully quantized model), then keep the
//      k most sensitive in FP32 (the --exclude mechanism: the model is
//      quantized again, calibration included) for k = 1, 2, ... and measure.
//      With weight-only INT4 or static W4A8 (int8_ladder) a layer first
//      moves up to INT8: the k most sensitive at INT8 for k = 1 .. all, then
//      (the rest at INT8) the k most sensitive in FP32. `bisect`: each rung
//      bisects over k instead.
//   3. Stop at the first k that meets the target. Keeping every layer FP32
//      is not quantizing: if the mix with one layer still quantized misses
//      too, the target is not met, and the best model walked is written.
//
// The target, for each metric (the value must reach it):
//   top1, top5  at least FP32's minus DROP percentage points (0.5: 0.5 points)
//   agreement, miou  at least 100% minus DROP points
//   sqnr        output SQNR against FP32 of at least DROP dB
//   mse         output mean squared error against FP32 of at most DROP
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "quant/quantize.h"
#include "quant/sensitivity.h"

namespace kvant {

struct FrontierStep;

struct TargetOptions {
  TaskMetric metric = TaskMetric::kAgreement;
  double drop = 0;
  std::string output;  // empty: the first
  bool reference = false;
  int threads = 1;
  int64_t limit = -1;
  // --metric-cmd (cli/metric_cmd.h): steers instead of `metric`; the target
  // is then FP32's value minus DROP (custom_higher_is_better) or plus DROP.
  std::function<double(const std::vector<std::vector<float>>&, const std::string&)> custom;
  bool custom_higher_is_better = true;
  bool int8_ladder = false;  // weight-only INT4 and static W4A8: INT4 -> INT8 -> FP32
  // Each rung of the ladder (INT8, then FP32) tried k = 1, 2, ... in turn
  // (the whole frontier), or bisected over k, taking the metric to improve as
  // k grows: about log2(layers) steps instead of up to `layers` on a deep
  // model, at the risk of missing a smaller k where it does not.
  bool bisect = false;
  std::function<void(const SensitivityProgress&)> progress;  // of the sensitivity ranking; may be empty
  // Called once per step measured (index 0: every layer quantized), after
  // its line is logged; may be empty. An exception it throws ends the search.
  std::function<void(const FrontierStep& step, size_t index)> on_step;
};

struct FrontierStep {
  std::vector<std::string> kept;  // layers kept in FP32 at this step
  std::vector<std::string> int8;  // layers moved up to INT8 (int8_ladder)
  std::string moved;              // what this step changed, e.g. "conv1 -> FP32"
  int64_t bytes = 0;              // the serialized model
  OutputScores scores;
  double value = 0;          // the metric steered by (scores.value(metric), or --metric-cmd's number)
  double ms_per_sample = 0;  // compiled (or reference) run time, mean over the evaluation set
  bool meets = false;
};

struct TargetSearch {
  bool met = false;
  size_t chosen = 0;  // the step written
  double threshold = 0;
  OutputScores fp32;
  double fp32_value = 0;
  std::vector<FrontierStep> steps;
  std::vector<std::string> ranking;  // most sensitive first (empty when step 0 met the target)
  Model model;                       // the chosen step's
  QuantizeSummary summary;
};

// A steered value as text: format_metric's, or --metric-cmd's number.
std::string format_target_value(const TargetOptions& options, double value);

// Quantizes with these extra nodes kept FP32 (on top of the user's --exclude)
// and these at INT8 weights (int8_ladder only).
using QuantizeWith = std::function<Model(const std::vector<std::string>& keep_fp32,
                                         const std::vector<std::string>& int8, QuantizeSummary* summary)>;

// The mix a step quantizes: `options`' mode (static calibrated on
// `calibration`, or weight-only at `bits`) with `keep` also excluded; for
// weight-only, the `int8` layers get 8-bit weights (their DequantizeLinear
// from an 8-bit quantization of those layers alone), the rest `bits`.
Model quantize_mix(const Model& fp32, SampleSource* calibration, const QuantizeOptions& options, int bits,
                   const std::vector<std::string>& keep, const std::vector<std::string>& int8,
                   QuantizeSummary* summary);

// `first`: the fully quantized model (step 0), `first_summary` its summary;
// `eval` the evaluation set, `labels` one per sample (empty: none). Prints a
// line per step to `log` as it walks (null: nothing).
TargetSearch search_accuracy_target(const Model& fp32, Model first, const QuantizeSummary& first_summary,
                                    const QuantizeWith& quantize, SampleSource& eval,
                                    const std::vector<int64_t>& labels, const TargetOptions& options,
                                    std::ostream* log);

}  // namespace kvant
