// AdaRound: learned up/down rounding of a layer's weights (adaround.cc has
// the math). quantize_static runs it when QuantizeOptions::rounding is
// kAdaRound: LayerGram collects each layer's input statistics during
// calibration, adaround_weight chooses the rounding.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "quant/quant_params.h"

namespace kvant {

struct AdaRoundOptions {
  int iterations = 300;          // Adam steps per layer (all rows at once)
  int64_t samples = 64;          // calibration samples whose patches enter the Gram matrix
  int64_t positions = 32;        // input patches (Conv output positions, Gemm rows) drawn per sample
  int64_t max_patch = 2048;      // layers whose patch (in_channels/group x kernel) is longer stay nearest
  double regularization = 0.01;  // lambda of the rounding regularizer
  double learning_rate = 0.05;
};

// Sum of x x^T over sampled input patches x of one Conv (2-D, NOTSET
// padding), Gemm (transA 0) or MatMul layer, one K x K matrix per group.
class LayerGram {
 public:
  // nullopt, with why, for a layer AdaRound does not handle.
  static std::optional<LayerGram> make(const Node& node, const Tensor& weight, const AdaRoundOptions& options,
                                       std::string* why);
  // One calibration sample of the layer's data input (ignored after
  // options.samples samples or when its shape does not fit).
  void observe(const Tensor& input);
  int64_t patches() const { return patches_; }
  int64_t groups() const { return groups_; }
  int64_t patch_size() const { return k_; }
  // G of group g, row-major K x K (symmetric).
  const double* gram(int64_t g) const { return gram_.data() + g * k_ * k_; }

 private:
  bool conv_ = false;
  int64_t groups_ = 1, k_ = 0, in_per_group_ = 0, kernel_h_ = 1, kernel_w_ = 1;
  int64_t stride_h_ = 1, stride_w_ = 1, pad_t_ = 0, pad_l_ = 0, pad_b_ = 0, pad_r_ = 0, dil_h_ = 1, dil_w_ = 1;
  int64_t samples_left_ = 0, positions_ = 0, patches_ = 0;
  std::vector<double> gram_;
  std::mt19937 rng_{12345};
  void add(const std::vector<double>& patch, int64_t group);
};

struct AdaRoundResult {
  Tensor dequantized;         // (code - zero point) * scale, the weight's layout
  double nearest_error = 0;   // sum over rows of d^T G d / mean diag(G), round-to-nearest
  double adaround_error = 0;  // the same for the chosen rounding (<= nearest_error)
  int64_t changed = 0;        // weights rounded the other way than nearest
};

// The rounding of `weight` (with `params`, per tensor or per output channel)
// that minimises E[((Wq - W) x)^2] over the patches in `gram`.
// `reduce_range`: codes stay within the 7-bit range.
AdaRoundResult adaround_weight(const Node& node, const Tensor& weight, const QuantParams& params, const LayerGram& gram,
                               bool reduce_range, const AdaRoundOptions& options);

// quantize_static's step: for each layer in `grams` (node index in `fp32`,
// whose params `params_of` gives, nullopt for a layer left in FP32), the
// AdaRound weight is written into `q` as its dequantized values (the weight
// DQ then quantizes them to exactly the chosen codes). Returns them by node
// index; appends a summary line (first) and each layer left at nearest to
// `notes`.
std::map<size_t, Tensor> apply_adaround(const Graph& fp32, Graph& q, const std::map<size_t, LayerGram>& grams,
                                        const std::function<std::optional<QuantParams>(size_t)>& params_of,
                                        bool reduce_range, const AdaRoundOptions& options,
                                        std::vector<std::string>* notes);

}  // namespace kvant
