// AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for
// Post-Training Quantization", arXiv:2004.10568), per layer.
//
// Round-to-nearest minimises each weight's own error, not the layer's
// output error. With x = w / s, fl = floor(x), a code is fl + h + zp with
// h in {0, 1}; per output channel (row) o the output error over input
// patches p is
//   E[((Wq - W)_o . p)^2] = s_o^2 d_o^T G d_o,   d_o = fl + h - x,   G = E[p p^T]
// (rows are independent given G, one G per Conv group). h is relaxed to
//   h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1),  zeta 1.1, gamma -0.1
// and V minimises
//   sum_o d_o^T G' d_o + lambda sum (1 - |2 h - 1|^beta)
// (G' = G / mean diag G, so lambda is relative to one step's error) with
// Adam, full batch (G holds all sampled patches), V started where h = x - fl;
// the regularizer is off for the first 20% of the steps, then beta falls
// linearly from 20 to 2, pushing every h to 0 or 1. Finally h is rounded to
// {0, 1}, and any row whose output error is not below round-to-nearest's
// keeps nearest, so the result is never worse than nearest on the sampled
// patches. Codes that nearest or a flip would take outside the integer
// range (7-bit with reduce_range) are fixed at nearest.
//
// G accumulates p p^T over `positions` random patches per calibration
// sample (Conv: output positions, the patch being in_channels/group x
// kernel input values with zero padding, as the Conv reads them; Gemm /
// MatMul: input rows) of the first `samples` samples, from the FP32
// model's values (not the quantized model's: the paper's "asymmetric"
// variant is not done). Cost: patches x groups x K^2 to collect, and
// iterations x out_channels x K^2 to optimise, K the patch length; layers
// with K above max_patch keep nearest.
#include "quant/algorithms/adaround.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "passes/pass.h"
#include "quant/algorithms/weight_channels.h"

namespace kvant {

namespace {

constexpr double kZeta = 1.1, kGamma = -0.1;

double rectified_sigmoid(double v) {
  return std::clamp(1.0 / (1.0 + std::exp(-v)) * (kZeta - kGamma) + kGamma, 0.0, 1.0);
}

}  // namespace

std::optional<LayerGram> LayerGram::make(const Node& node, const Tensor& weight, const AdaRoundOptions& options,
                                         std::string* why) {
  LayerGram g;
  auto fail = [&](const std::string& reason) -> std::optional<LayerGram> {
    if (why) *why = reason;
    return std::nullopt;
  };
  const WeightChannels m = weight_channels(node, weight);
  if (!m.valid || weight.dtype() != DType::kFloat32) return fail("its weight is not a float Conv/Gemm/MatMul weight");
  if (node.op_type == "Conv") {
    if (weight.rank() != 4) return fail("AdaRound handles 2-D Convs only");
    const std::string pad = node.attr_string("auto_pad", "NOTSET");
    if (pad != "NOTSET") return fail("auto_pad " + pad + " is not handled by AdaRound");
    g.conv_ = true;
    g.groups_ = node.attr_int("group", 1);
    g.in_per_group_ = weight.dim(1);
    g.kernel_h_ = weight.dim(2);
    g.kernel_w_ = weight.dim(3);
    g.k_ = m.per_filter;
    const auto strides = node.attr_ints("strides", {1, 1});
    const auto dilations = node.attr_ints("dilations", {1, 1});
    const auto pads = node.attr_ints("pads", {0, 0, 0, 0});
    if (strides.size() != 2 || dilations.size() != 2 || pads.size() != 4) return fail("unexpected Conv attributes");
    g.stride_h_ = strides[0];
    g.stride_w_ = strides[1];
    g.dil_h_ = dilations[0];
    g.dil_w_ = dilations[1];
    g.pad_t_ = pads[0];
    g.pad_l_ = pads[1];
    g.pad_b_ = pads[2];
    g.pad_r_ = pads[3];
  } else {
    if (node.op_type == "Gemm" && node.attr_int("transA", 0) != 0) return fail("Gemm with transA");
    g.k_ = m.in_channels;
  }
  if (g.k_ > options.max_patch) {
    return fail("its input patch has " + std::to_string(g.k_) + " values (AdaRound's limit is " +
                std::to_string(options.max_patch) + ")");
  }
  g.samples_left_ = options.samples;
  g.positions_ = options.positions;
  g.gram_.assign(static_cast<size_t>(g.groups_ * g.k_ * g.k_), 0.0);
  return g;
}

void LayerGram::add(const std::vector<double>& patch, int64_t group) {
  double* gm = gram_.data() + group * k_ * k_;
  for (int64_t i = 0; i < k_; ++i) {
    const double pi = patch[static_cast<size_t>(i)];
    if (pi == 0.0) continue;
    for (int64_t j = i; j < k_; ++j) gm[i * k_ + j] += pi * patch[static_cast<size_t>(j)];
  }
}

void LayerGram::observe(const Tensor& input) {
  if (samples_left_ <= 0 || input.dtype() != DType::kFloat32 || input.numel() == 0) return;
  const float* x = input.data<float>();
  std::vector<double> patch(static_cast<size_t>(k_));
  if (conv_) {
    if (input.rank() != 4 || input.dim(1) != groups_ * in_per_group_) return;
    const int64_t n = input.dim(0), c = input.dim(1), h = input.dim(2), w = input.dim(3);
    const int64_t out_h = (h + pad_t_ + pad_b_ - (dil_h_ * (kernel_h_ - 1) + 1)) / stride_h_ + 1;
    const int64_t out_w = (w + pad_l_ + pad_r_ - (dil_w_ * (kernel_w_ - 1) + 1)) / stride_w_ + 1;
    if (out_h <= 0 || out_w <= 0) return;
    std::uniform_int_distribution<int64_t> pick(0, n * out_h * out_w - 1);
    for (int64_t t = 0; t < positions_; ++t) {
      const int64_t at = pick(rng_);
      const int64_t b = at / (out_h * out_w), oy = (at / out_w) % out_h, ox = at % out_w;
      for (int64_t grp = 0; grp < groups_; ++grp) {
        size_t k = 0;
        for (int64_t i = 0; i < in_per_group_; ++i) {
          const float* plane = x + ((b * c) + grp * in_per_group_ + i) * h * w;
          for (int64_t ky = 0; ky < kernel_h_; ++ky) {
            const int64_t iy = oy * stride_h_ - pad_t_ + ky * dil_h_;
            for (int64_t kx = 0; kx < kernel_w_; ++kx) {
              const int64_t ix = ox * stride_w_ - pad_l_ + kx * dil_w_;
              patch[k++] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? plane[iy * w + ix] : 0.0;
            }
          }
        }
        add(patch, grp);
      }
      ++patches_;
    }
  } else {
    if (input.rank() < 1 || input.dim(input.rank() - 1) != k_) return;
    const int64_t rows = input.numel() / k_;
    std::uniform_int_distribution<int64_t> pick(0, rows - 1);
    for (int64_t t = 0; t < std::min(positions_, rows); ++t) {
      const float* row = x + pick(rng_) * k_;
      for (int64_t k = 0; k < k_; ++k) patch[static_cast<size_t>(k)] = row[k];
      add(patch, 0);
      ++patches_;
    }
  }
  --samples_left_;
}

AdaRoundResult adaround_weight(const Node& node, const Tensor& weight, const QuantParams& params, const LayerGram& gram,
                               bool reduce_range, const AdaRoundOptions& options) {
  const WeightChannels m = weight_channels(node, weight);
  const int64_t rows = m.out_channels, k = gram.patch_size();
  const QuantRange full = quant_range(params.storage), range = quant_range(params.storage, reduce_range);
  AdaRoundResult result;
  result.dequantized = Tensor(DType::kFloat32, weight.shape());
  // Per row o and patch index j: the element, x = w / s, and the codes.
  std::vector<int64_t> element(static_cast<size_t>(rows * k));
  for (int64_t e = 0; e < weight.numel(); ++e) {
    int64_t o, c;
    m.channels(e, o, c);
    const int64_t j = m.conv ? e % m.per_filter : c;
    element[static_cast<size_t>(o * k + j)] = e;
  }
  // G' per group (full symmetric matrix, scaled to mean diagonal 1).
  std::vector<std::vector<double>> g(static_cast<size_t>(gram.groups()));
  for (int64_t grp = 0; grp < gram.groups(); ++grp) {
    auto& gg = g[static_cast<size_t>(grp)];
    gg.assign(static_cast<size_t>(k * k), 0.0);
    const double* src = gram.gram(grp);
    double trace = 0;
    for (int64_t i = 0; i < k; ++i) trace += src[i * k + i];
    const double norm = trace > 0 ? k / trace : 0.0;
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = i; j < k; ++j) {
        gg[static_cast<size_t>(i * k + j)] = gg[static_cast<size_t>(j * k + i)] = src[i * k + j] * norm;
      }
    }
  }
  const float* w = weight.data<float>();
  float* out = result.dequantized.data<float>();
  const int64_t out_per_group = rows / gram.groups();
  std::vector<double> x(static_cast<size_t>(k)), base(static_cast<size_t>(k)), d(static_cast<size_t>(k)),
      gd(static_cast<size_t>(k)), v(static_cast<size_t>(k)), m1(static_cast<size_t>(k)), m2(static_cast<size_t>(k));
  std::vector<int32_t> nearest(static_cast<size_t>(k)), floor_code(static_cast<size_t>(k));
  std::vector<char> free(static_cast<size_t>(k));
  auto row_error = [&](const std::vector<double>& gg, const std::vector<double>& dd) {
    double e = 0;
    for (int64_t i = 0; i < k; ++i) {
      double acc = 0;
      for (int64_t j = 0; j < k; ++j) acc += gg[static_cast<size_t>(i * k + j)] * dd[static_cast<size_t>(j)];
      e += dd[static_cast<size_t>(i)] * acc;
    }
    return e;
  };
  for (int64_t o = 0; o < rows; ++o) {
    const size_t si = params.scale.size() == 1 ? 0 : static_cast<size_t>(o);
    const float scale = params.scale[si];
    const int32_t zp = params.zero_point[si];
    const auto& gg = g[static_cast<size_t>(o / out_per_group)];
    for (int64_t j = 0; j < k; ++j) {
      const auto jj = static_cast<size_t>(j);
      const float wv = w[element[static_cast<size_t>(o * k + j)]];
      x[jj] = static_cast<double>(wv) / scale;
      nearest[jj] = quantize_value(wv, scale, zp, full);
      const double fl = std::floor(x[jj]);
      floor_code[jj] = static_cast<int32_t>(fl) + zp;
      free[jj] = std::isfinite(x[jj]) && floor_code[jj] >= range.qmin && floor_code[jj] + 1 <= range.qmax &&
                 (nearest[jj] == floor_code[jj] || nearest[jj] == floor_code[jj] + 1);
      base[jj] = x[jj] - fl;  // h starts here
      // V with rectified_sigmoid(V) = base: sigmoid(V) = (base - gamma) / (zeta - gamma)
      const double p = std::clamp((base[jj] - kGamma) / (kZeta - kGamma), 1e-4, 1 - 1e-4);
      v[jj] = std::log(p / (1 - p));
      m1[jj] = m2[jj] = 0;
    }
    // Nearest's error for this row.
    for (int64_t j = 0; j < k; ++j)
      d[static_cast<size_t>(j)] = nearest[static_cast<size_t>(j)] - zp - x[static_cast<size_t>(j)];
    const double nearest_error = row_error(gg, d);
    const int warmup = options.iterations / 5;
    for (int it = 0; it < options.iterations; ++it) {
      for (int64_t j = 0; j < k; ++j) {
        const auto jj = static_cast<size_t>(j);
        d[jj] = free[jj] ? floor_code[jj] - zp + rectified_sigmoid(v[jj]) - x[jj] : nearest[jj] - zp - x[jj];
      }
      for (int64_t i = 0; i < k; ++i) {
        double acc = 0;
        for (int64_t j = 0; j < k; ++j) acc += gg[static_cast<size_t>(i * k + j)] * d[static_cast<size_t>(j)];
        gd[static_cast<size_t>(i)] = acc;
      }
      const double beta = it < warmup ? 0 : 20.0 - 18.0 * (it - warmup) / std::max(1, options.iterations - warmup - 1);
      const int t = it + 1;
      for (int64_t j = 0; j < k; ++j) {
        const auto jj = static_cast<size_t>(j);
        if (!free[jj]) continue;
        const double sig = 1.0 / (1.0 + std::exp(-v[jj]));
        const double h_raw = sig * (kZeta - kGamma) + kGamma;
        if (h_raw <= 0 || h_raw >= 1) continue;  // clipped: no gradient
        const double h = h_raw;
        double grad_h = 2 * gd[jj];
        if (beta > 0) {
          const double u = 2 * h - 1;
          grad_h += options.regularization * -beta * std::pow(std::fabs(u), beta - 1) * (u >= 0 ? 2 : -2);
        }
        const double grad = grad_h * sig * (1 - sig) * (kZeta - kGamma);
        m1[jj] = 0.9 * m1[jj] + 0.1 * grad;
        m2[jj] = 0.999 * m2[jj] + 0.001 * grad * grad;
        const double mh = m1[jj] / (1 - std::pow(0.9, t)), vh = m2[jj] / (1 - std::pow(0.999, t));
        v[jj] -= options.learning_rate * mh / (std::sqrt(vh) + 1e-8);
      }
    }
    std::vector<int32_t> code(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) {
      const auto jj = static_cast<size_t>(j);
      code[jj] = free[jj] ? floor_code[jj] + (rectified_sigmoid(v[jj]) >= 0.5 ? 1 : 0) : nearest[jj];
      d[jj] = code[jj] - zp - x[jj];
    }
    double error = row_error(gg, d);
    if (!(error < nearest_error)) {
      code = nearest;
      error = nearest_error;
    }
    result.nearest_error += nearest_error;
    result.adaround_error += error;
    for (int64_t j = 0; j < k; ++j) {
      const auto jj = static_cast<size_t>(j);
      result.changed += code[jj] != nearest[jj];
      out[element[static_cast<size_t>(o * k + j)]] = static_cast<float>(code[jj] - zp) * scale;
    }
  }
  return result;
}

std::map<size_t, Tensor> apply_adaround(const Graph& fp32, Graph& q, const std::map<size_t, LayerGram>& grams,
                                        const std::function<std::optional<QuantParams>(size_t)>& params_of,
                                        bool reduce_range, const AdaRoundOptions& options,
                                        std::vector<std::string>* notes) {
  std::map<size_t, Tensor> rounded;
  if (grams.empty()) return rounded;
  const auto start = std::chrono::steady_clock::now();
  const auto reads = count_reads(q);
  double nearest_error = 0, adaround_error = 0;
  int64_t changed = 0, weights = 0;
  std::vector<std::string> left;
  for (const auto& [idx, lg] : grams) {
    const Node& n = fp32.nodes[idx];
    const std::optional<QuantParams> wp = params_of(idx);
    if (!wp || lg.patches() == 0) continue;
    auto r = reads.find(n.inputs[1]);
    if (r != reads.end() && r->second > 1) {
      left.push_back("AdaRound left " + n.describe() + " at nearest: its weight is shared");
      continue;
    }
    const Tensor& w = fp32.initializers.at(n.inputs[1]);
    AdaRoundResult result = adaround_weight(n, w, *wp, lg, reduce_range, options);
    nearest_error += result.nearest_error;
    adaround_error += result.adaround_error;
    changed += result.changed;
    weights += w.numel();
    q.initializers[n.inputs[1]] = result.dequantized;
    rounded[idx] = std::move(result.dequantized);
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char line[256];
  std::snprintf(line, sizeof line,
                "AdaRound: %zu layer(s), %lld of %lld weights rounded the other way than nearest; output error on "
                "the sampled inputs %.1f%% of round-to-nearest's (%.1f s)",
                rounded.size(), static_cast<long long>(changed), static_cast<long long>(weights),
                nearest_error > 0 ? 100 * adaround_error / nearest_error : 100.0, seconds);
  if (notes) {
    notes->insert(notes->begin(), line);
    notes->insert(notes->end(), left.begin(), left.end());
  }
  return rounded;
}

}  // namespace kvant
