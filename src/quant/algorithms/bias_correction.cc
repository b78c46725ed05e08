// Bias correction (Nagel et al. 2019, arXiv:1906.04721, §4.2, the empirical
// variant): rounding a layer's weights, W -> Wq = W + E, shifts its output
// by E x, whose mean over the data is
//   E[y_q - y] = E[(Wq - W) x] = (Wq - W) E[x]
// per output channel. With per-tensor scales the rounding errors of a
// channel need not average out (a channel whose weights are all a fraction
// of one step round the same way), so the shift is systematic; subtracting
// it from the bias, b' = b - (Wq - W) E[x], removes it on average.
//
// E[x] is the mean of the layer's FP32 input per input channel over the
// calibration samples (ChannelMeans, streamed), not of the quantized
// model's input: the weight error alone is corrected.
//   Gemm   Y = alpha A B + beta C, A [M, K] (transA 0):
//          shift[n] = alpha * sum_k E[k, n] mean[k];  C' = C - shift / beta
//   Conv   shift[o] = sum_{i, taps} E[o, i, taps] mean[c(o, i)]
//          (c: the input channel filter o reads at i, weight_channels.h),
//          i.e. every tap sees the channel mean. Exact for outputs whose
//          receptive field lies inside the input; at the borders, where
//          zero padding replaces some taps, the true shift is the sum over
//          the taps inside only, so the correction there is off by the
//          error of the padded taps times the mean: one row/column of taps
//          for a 3x3 kernel with pad 1, on the outer ring of the output.
// MatMul has no bias to fold the shift into and is left alone, as is a Gemm
// whose C is not one value per channel.
#include "quant/algorithms/bias_correction.h"

#include <cmath>

#include "passes/pass.h"
#include "quant/algorithms/weight_channels.h"
#include "quant/qdq.h"

namespace kvant {

void ChannelMeans::observe(const std::string& tensor, const Tensor& value) {
  auto t = tracked_.find(tensor);
  if (t == tracked_.end() || value.dtype() != DType::kFloat32 || value.numel() == 0) return;
  const int axis = t->second == Axis::kOne ? 1 : value.rank() - 1;
  if (axis < 0 || axis >= value.rank()) return;
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < axis; ++d) outer *= value.dim(d);
  for (int d = axis + 1; d < value.rank(); ++d) inner *= value.dim(d);
  const int64_t channels = value.dim(axis);
  Sums& s = sums_[tensor];
  if (s.sum.empty()) s.sum.assign(static_cast<size_t>(channels), 0.0);
  if (static_cast<int64_t>(s.sum.size()) != channels) return;  // another shape: the first one counts
  const float* p = value.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      double acc = 0;
      const float* row = p + (o * channels + c) * inner;
      for (int64_t i = 0; i < inner; ++i) acc += row[i];
      s.sum[static_cast<size_t>(c)] += acc;
    }
  }
  s.count += static_cast<double>(outer * inner);
  s.mean.clear();
}

const std::vector<double>* ChannelMeans::mean(const std::string& tensor) {
  auto it = sums_.find(tensor);
  if (it == sums_.end() || it->second.count == 0) return nullptr;
  Sums& s = it->second;
  if (s.mean.empty()) {
    s.mean.resize(s.sum.size());
    for (size_t c = 0; c < s.sum.size(); ++c) s.mean[c] = s.sum[c] / s.count;
  }
  return &s.mean;
}

Tensor dequantized_weight(const Tensor& weight, const QuantParams& params) {
  const Tensor q = quantize_tensor(weight, params);
  Tensor out(DType::kFloat32, weight.shape());
  float* d = out.data<float>();
  int64_t inner = 1, channels = 1;
  if (params.axis >= 0) {
    channels = weight.dim(params.axis);
    for (int k = params.axis + 1; k < weight.rank(); ++k) inner *= weight.dim(k);
  }
  for (int64_t e = 0; e < weight.numel(); ++e) {
    const size_t s = params.axis >= 0 ? static_cast<size_t>((e / inner) % channels) : 0;
    const float code = static_cast<float>(q.get_as_int64(e) - params.zero_point[s]);
    d[e] = code * params.scale[s];  // DequantizeLinear's float product
  }
  return out;
}

std::vector<double> expected_output_shift(const Node& node, const Tensor& weight, const Tensor& dequantized,
                                          const std::vector<double>& input_mean) {
  const WeightChannels m = weight_channels(node, weight);
  if (!m.valid || dequantized.numel() != weight.numel() || static_cast<int64_t>(input_mean.size()) != m.in_channels) {
    return {};
  }
  if (node.op_type == "Gemm" && node.attr_int("transA", 0) != 0) return {};
  const float* w = weight.data<float>();
  const float* wq = dequantized.data<float>();
  std::vector<double> shift(static_cast<size_t>(m.out_channels), 0.0);
  for (int64_t e = 0; e < weight.numel(); ++e) {
    int64_t o, c;
    m.channels(e, o, c);
    shift[static_cast<size_t>(o)] +=
        (static_cast<double>(wq[e]) - static_cast<double>(w[e])) * input_mean[static_cast<size_t>(c)];
  }
  if (node.op_type == "Gemm") {
    const double alpha = node.attr_float("alpha", 1.0f);
    for (double& s : shift) s *= alpha;
  }
  return shift;
}

bool subtract_from_bias(Graph& graph, Node& node, const std::vector<double>& shift, bool shared) {
  if (node.op_type != "Conv" && node.op_type != "Gemm") return false;
  const auto channels = static_cast<int64_t>(shift.size());
  const bool has_bias = node.inputs.size() > 2 && !node.inputs[2].empty();
  double divide = 1.0;
  if (node.op_type == "Gemm") {
    divide = node.attr_float("beta", 1.0f);
    if (divide == 0.0 || (!has_bias && divide != 1.0)) return false;
  }
  Tensor corrected(DType::kFloat32, {channels});
  float* d = corrected.data<float>();
  if (has_bias) {
    auto it = graph.initializers.find(node.inputs[2]);
    if (it == graph.initializers.end() || graph.find_input(node.inputs[2]) != nullptr ||
        it->second.dtype() != DType::kFloat32 || it->second.rank() != 1 || it->second.numel() != channels) {
      return false;
    }
    const float* b = it->second.data<float>();
    for (int64_t o = 0; o < channels; ++o) d[o] = b[o];
  } else {
    for (int64_t o = 0; o < channels; ++o) d[o] = 0.0f;
  }
  for (int64_t o = 0; o < channels; ++o) {
    d[o] = static_cast<float>(d[o] - shift[static_cast<size_t>(o)] / divide);
  }
  std::string name = has_bias ? node.inputs[2] : "";
  if (!has_bias || shared) {
    const std::string base = has_bias ? name : (node.name.empty() ? node.outputs[0] : node.name) + "_bias";
    name = unique_value_name(graph, base + "_corrected");
  }
  graph.initializers[name] = std::move(corrected);
  node.inputs.resize(3);
  node.inputs[2] = name;
  return true;
}

int64_t apply_bias_correction(const Graph& fp32, Graph& q, const std::vector<size_t>& nodes, ChannelMeans& means,
                              const std::map<size_t, Tensor>& rounded,
                              const std::function<std::optional<QuantParams>(size_t)>& params_of,
                              std::vector<std::string>& bias_of) {
  const auto reads = count_reads(q);
  int64_t corrected = 0;
  for (size_t idx : nodes) {
    const Node& n = fp32.nodes[idx];
    if (n.op_type == "MatMul") continue;
    const std::vector<double>* mean = means.mean(n.inputs[0]);
    const std::optional<QuantParams> wp = mean ? params_of(idx) : std::nullopt;
    if (!wp) continue;
    const Tensor& w = fp32.initializers.at(n.inputs[1]);
    auto r = rounded.find(idx);
    const std::vector<double> shift =
        expected_output_shift(n, w, r != rounded.end() ? r->second : dequantized_weight(w, *wp), *mean);
    auto b = bias_of[idx].empty() ? reads.end() : reads.find(bias_of[idx]);
    if (!shift.empty() && subtract_from_bias(q, q.nodes[idx], shift, b != reads.end() && b->second > 1)) {
      bias_of[idx] = q.nodes[idx].inputs[2];
      ++corrected;
    }
  }
  return corrected;
}

}  // namespace kvant
