// Bias correction (bias_correction.cc has the math): the mean output shift
// that rounding a layer's weights causes, estimated from calibration data
// and subtracted from the layer's bias. quantize_static runs it when
// QuantizeOptions::bias_correction is set.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "quant/quant_params.h"

namespace kvant {

// Per-channel means of chosen tensors, streamed over calibration samples.
class ChannelMeans {
 public:
  // Track `tensor` with its channel on axis 1 (a Conv input [N, C, ...]) or
  // on the last axis (a Gemm/MatMul input [..., K]).
  enum class Axis { kOne, kLast };
  void track(const std::string& tensor, Axis axis) { tracked_[tensor] = axis; }
  // Adds one sample's values of `tensor` (ignored when not tracked or not float32).
  void observe(const std::string& tensor, const Tensor& value);
  // The mean per channel, or nullptr when the tensor was never observed.
  const std::vector<double>* mean(const std::string& tensor);

 private:
  struct Sums {
    std::vector<double> sum;
    double count = 0;
    std::vector<double> mean;
  };
  std::map<std::string, Axis> tracked_;
  std::map<std::string, Sums> sums_;
};

// The float value each element of `weight` takes after quantizing with
// `params` (per tensor or per axis): (q - zero_point) * scale.
Tensor dequantized_weight(const Tensor& weight, const QuantParams& params);

// E[(Wq - W) x] per output channel of Conv/Gemm `node` (weight W, its
// dequantized form Wq, the mean of its data input per input channel),
// times Gemm's alpha. Empty when the shapes do not fit.
std::vector<double> expected_output_shift(const Node& node, const Tensor& weight, const Tensor& dequantized,
                                          const std::vector<double>& input_mean);

// Subtracts `shift` (per output channel) from the bias of Conv/Gemm `node`
// in `graph`, as a new tensor (Gemm: divided by beta); a node without one
// gets a bias (Conv; Gemm with beta 1). `shared`: the bias is read by
// another node too, so the corrected one gets a new name. Returns false,
// changing nothing, when the bias is not a float32 [channels] constant.
bool subtract_from_bias(Graph& graph, Node& node, const std::vector<double>& shift, bool shared);

// quantize_static's step: for each Conv/Gemm in `nodes` (indices in `fp32`,
// whose params `params_of` gives, nullopt for a layer left in FP32), the
// shift of its weight rounding (the `rounded` dequantized weight where
// AdaRound chose one, else nearest) on its input means is subtracted from its
// bias in `q`; `bias_of[idx]` becomes the bias name. Returns how many.
int64_t apply_bias_correction(const Graph& fp32, Graph& q, const std::vector<size_t>& nodes, ChannelMeans& means,
                              const std::map<size_t, Tensor>& rounded,
                              const std::function<std::optional<QuantParams>(size_t)>& params_of,
                              std::vector<std::string>& bias_of);

}  // namespace kvant
