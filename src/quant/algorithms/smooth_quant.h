// SmoothQuant (Xiao et al., 2022, arXiv:2211.10438) for W8A8 (static or
// dynamic INT8) transformers (smooth_quant.cc has the math). An FP32 rewrite
// run before quantization: it moves activation range into the weights and
// folds the inverse into the ops before them (channel_scaling.h), never
// changing the function the model computes.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"
#include "quant/algorithms/channel_scaling.h"
#include "quant/quantize.h"

namespace kvant {

// s_k = max|x_k|^alpha / max|W_k|^(1 - alpha), max|W_k| over row k of all the
// group's weights; 1 where either maximum is 0.
std::vector<double> smooth_quant_scales(const std::vector<double>& act_max, const std::vector<double>& weight_max,
                                        double alpha);

struct SmoothQuantGroup {
  std::string input;
  int64_t layers = 0;
  // max over channels / median over channels of max|x_k|, before and after
  // (how far the largest channel sticks out of a per-tensor range).
  double outlier_ratio_before = 0;
  double outlier_ratio_after = 0;
  double alpha = 0.5;  // the migration strength used
  // With the search: the group's W8A8 output error on the sampled rows at
  // `alpha` and at 0.5.
  double error = 0;
  double error_at_half = 0;
  ScaleApplied applied;
};
struct SmoothQuantResult {
  std::vector<SmoothQuantGroup> groups;
};

// SmoothQuant with migration strength `alpha` (in [0, 1]) on every
// MatMul/Gemm group of `model` (find_scale_groups, layers excluded by
// options.exclude left out; `compute_ops`: the operator types "first"/"last"
// of --exclude count, as the quantization mode does), from one calibration
// pass. Without `alpha`, each layer input gets the alpha of 0, 0.1, ..., 1
// whose simulated W8A8 output error of its layers is least on a sample of
// kSmoothQuantSampleRows calibration rows (activations per tensor by
// options' type and symmetry over the sample's range, weights per
// options.per_channel, options' symmetry and reduce_range). Throws Error on
// an alpha outside [0, 1] and on calibration data that does not fit the
// model.
inline constexpr int64_t kSmoothQuantSampleRows = 1024;
SmoothQuantResult apply_smooth_quant(Model& model, SampleSource& calibration, std::optional<double> alpha,
                                     const QuantizeOptions& options, const std::set<std::string>& compute_ops);

}  // namespace kvant
