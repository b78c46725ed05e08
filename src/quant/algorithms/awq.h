// AWQ, activation-aware weight quantization (Lin et al., 2023,
// arXiv:2306.00978), for weight-only INT4/INT8 (awq.cc has the math).
// An FP32 rewrite run before quantize_weight_only: it changes the weights
// and folds the inverse into the ops before them (channel_scaling.h), never
// the function the model computes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"
#include "quant/algorithms/channel_scaling.h"
#include "quant/quant_params.h"
#include "quant/quantize.h"

namespace kvant {

// How weight-only quantization will round a [K, N] weight: blocks of
// group_size along K, round to nearest, each block's range clipped to its
// least-squared-error ratio when mse_clip (quant/mse_clip.h).
struct WeightGrid {
  DType storage = DType::kInt4;
  Symmetry symmetry = Symmetry::kSymmetric;
  int group_size = 128;
  bool mse_clip = true;
};

// The grid quantize_weight_only uses for `bits` and `options`.
WeightGrid weight_only_grid(int bits, const QuantizeOptions& options);

// The dequantized values weight-only round to nearest gives w [K, N].
std::vector<float> fake_quantize_kn(const std::vector<float>& w, int64_t k, int64_t n, const WeightGrid& grid);

// sum over the calibration rows x of |x diag(1/s) Q(diag(s) W) - x W|^2,
// from the rows' second moment (K x K): the output error of layer W [K, N]
// quantized with per-input-channel scale s (all ones: round to nearest).
double scaled_quantization_error(const std::vector<float>& w, int64_t k, int64_t n, const std::vector<double>& s,
                                 const InputMoment& moment, const WeightGrid& grid);

// One group's search: s = mean|x|^alpha (normalized so that max(s) min(s) = 1)
// for alpha = 0, 1/grid_points, ..., 1, the one with the smallest summed
// output error of the group's weights under `grid` without MSE clipping;
// kept if its error under `grid` itself is below alpha 0's (s = 1), else
// alpha 0.
struct AwqSearch {
  double alpha = 0;
  std::vector<double> scale;
  double rtn_error = 0;  // alpha 0: round to nearest
  double error = 0;      // at the chosen alpha (<= rtn_error)
};
AwqSearch awq_search(const std::vector<std::vector<float>>& weights_kn, const std::vector<int64_t>& out_features,
                     const ChannelStats& stats, const WeightGrid& grid, int grid_points = 20);

struct AwqGroupResult {
  std::string input;
  int64_t layers = 0;
  AwqSearch search;
  ScaleApplied applied;
};
struct AwqResult {
  std::vector<AwqGroupResult> groups;
  int64_t samples = 0;
};

// AWQ on every MatMul/Gemm group (find_scale_groups; --exclude'd layers left
// out) of `model`, from one calibration pass of it: searches each group's
// scale for quantize_weight_only(bits, options) and applies it
// (apply_input_scales, tag "awq"). Groups whose best alpha is 0 are left
// alone. Throws Error on bad bits / group size and on calibration data
// that does not fit the model.
AwqResult apply_awq(Model& model, SampleSource& calibration, int bits, const QuantizeOptions& options);

}  // namespace kvant
