// SmoothQuant (Xiao, Lin, Seznec, Wu, Demouth, Han, 2022, "SmoothQuant:
// Accurate and Efficient Post-Training Quantization for Large Language
// Models", arXiv:2211.10438).
//
// W8A8 quantizes x per tensor: one scale for all K channels, set by the
// largest |x|. Transformer activations have a few channels far larger than
// the rest (outliers), so the others get a handful of the 255 steps. Weights
// are quantized per output channel, and their rows are similar in range, so
// they can absorb a per-input-channel factor:
//   y = x W = (x diag(1/s)) (diag(s) W)
//   s_k = max|x_k|^alpha / max|W_k|^(1 - alpha)
// with max|x_k| over the calibration rows and max|W_k| over row k of every
// layer reading x. alpha = 0.5 (the paper's default) gives both sides the
// same range per channel, sqrt(max|x_k| max|W_k|); larger alpha moves more
// of the difficulty into the weights. Where either maximum is 0 the channel
// keeps s_k = 1. x / s is folded into the LayerNorm/RMSNorm/Mul/Add or the
// linear layer that produces x where that is exact, else applied by an
// explicit Mul (channel_scaling.h); the quantizer then calibrates the
// rewritten model as usual.
//
// The search (no ALPHA given) tries alpha = 0, 0.1, ..., 1 per layer input
// and keeps the one whose simulated W8A8 output error
//   sum over sampled rows x and layers i of |Qa(x / s) Qw(diag(s) W_i) - x W_i|^2
// is least (Qa: per-tensor activation quantization over the sample's range;
// Qw: the weight quantization static mode applies), as the paper's
// per-model alpha sweep, but per layer input.
#include "quant/algorithms/smooth_quant.h"

#include <algorithm>
#include <cmath>

#include "kernels/sgemm.h"
#include "kvant/status.h"
#include "quant/qdq.h"

namespace kvant {

namespace {

double outlier_ratio(std::vector<double> m) {
  if (m.empty()) return 0;
  const double top = *std::max_element(m.begin(), m.end());
  std::nth_element(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(m.size() / 2), m.end());
  const double median = m[m.size() / 2];
  return median > 0 ? top / median : 0;
}

// The group's simulated W8A8 output error on rows x [rows, K] with scale s
// (see the top of the file); y_ref[i] = x W_i.
double w8a8_error(const std::vector<float>& x, int64_t k, const std::vector<std::vector<float>>& w,
                  const std::vector<int64_t>& n, const std::vector<std::vector<float>>& y_ref,
                  const std::vector<double>& s, const QuantizeOptions& o) {
  const int64_t rows = static_cast<int64_t>(x.size()) / k;
  std::vector<float> xq(x.size());
  float lo = 0, hi = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    xq[i] = static_cast<float>(static_cast<double>(x[i]) / s[i % static_cast<size_t>(k)]);
    lo = std::min(lo, xq[i]);
    hi = std::max(hi, xq[i]);
  }
  float scale = 1;
  int32_t zp = 0;
  choose_qparams(lo, hi, o.activation_type, o.activation_symmetry, false, &scale, &zp);
  const QuantRange arange = quant_range(o.activation_type);
  for (float& v : xq) v = static_cast<float>(quantize_value(v, scale, zp, arange) - zp) * scale;
  double e = 0;
  for (size_t l = 0; l < w.size(); ++l) {
    Tensor ws(DType::kFloat32, {k, n[l]});
    float* p = ws.data<float>();
    for (int64_t i = 0; i < k * n[l]; ++i) {
      p[i] = static_cast<float>(static_cast<double>(w[l][static_cast<size_t>(i)]) * s[static_cast<size_t>(i / n[l])]);
    }
    const QuantParams wp = weight_params(ws, o.per_channel ? 1 : -1, o.weight_type, o.weight_symmetry, o.reduce_range);
    const QuantRange wrange = quant_range(o.weight_type, o.reduce_range);
    for (int64_t i = 0; i < k * n[l]; ++i) {
      const size_t c = o.per_channel ? static_cast<size_t>(i % n[l]) : 0;
      p[i] = static_cast<float>(quantize_value(p[i], wp.scale[c], wp.zero_point[c], wrange) - wp.zero_point[c]) *
             wp.scale[c];
    }
    std::vector<float> y(static_cast<size_t>(rows * n[l]));
    sgemm(false, false, static_cast<int>(rows), static_cast<int>(n[l]), static_cast<int>(k), 1.0f, xq.data(),
          static_cast<int>(k), p, static_cast<int>(n[l]), 0.0f, y.data(), static_cast<int>(n[l]));
    for (size_t i = 0; i < y.size(); ++i) {
      const double d = static_cast<double>(y[i]) - y_ref[l][i];
      e += d * d;
    }
  }
  return e;
}

}  // namespace

std::vector<double> smooth_quant_scales(const std::vector<double>& act_max, const std::vector<double>& weight_max,
                                        double alpha) {
  std::vector<double> s(act_max.size(), 1.0);
  for (size_t c = 0; c < s.size() && c < weight_max.size(); ++c) {
    if (act_max[c] > 0 && weight_max[c] > 0) s[c] = std::pow(act_max[c], alpha) / std::pow(weight_max[c], 1 - alpha);
    if (!std::isfinite(s[c]) || !(s[c] > 0)) s[c] = 1.0;
  }
  return s;
}

SmoothQuantResult apply_smooth_quant(Model& model, SampleSource& calibration, std::optional<double> alpha,
                                     const QuantizeOptions& options, const std::set<std::string>& compute_ops) {
  if (alpha && !(*alpha >= 0 && *alpha <= 1)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the SmoothQuant migration strength must be in [0, 1], got " + std::to_string(*alpha));
  }
  Graph& g = model.graph;
  const std::vector<ScaleGroup> groups = find_scale_groups(g, resolve_excluded_nodes(g, options.exclude, compute_ops));
  SmoothQuantResult result;
  if (groups.empty()) return result;
  std::set<std::string> inputs;
  for (const ScaleGroup& sg : groups) inputs.insert(sg.input);
  const std::map<std::string, ChannelStats> stats =
      collect_channel_stats(model, calibration, inputs, false, options, alpha ? 0 : kSmoothQuantSampleRows);
  std::vector<ScaleGroup> chosen;
  std::vector<std::vector<double>> scales;
  for (const ScaleGroup& sg : groups) {
    const ChannelStats& st = stats.at(sg.input);
    std::vector<double> weight_max(static_cast<size_t>(st.k), 0.0);
    std::vector<std::vector<float>> weights;
    std::vector<int64_t> out_features;
    bool fits = true;
    for (size_t i : sg.layers) {
      if (layer_in_features(g, g.nodes[i]) != st.k) {
        fits = false;
        break;
      }
      int64_t n = 0;
      weights.push_back(layer_weight_kn(g, g.nodes[i], &n));
      out_features.push_back(n);
      const std::vector<float>& w = weights.back();
      for (int64_t r = 0; r < st.k; ++r) {
        for (int64_t c = 0; c < n; ++c) {
          double& m = weight_max[static_cast<size_t>(r)];
          m = std::max(m, std::fabs(static_cast<double>(w[static_cast<size_t>(r * n + c)])));
        }
      }
    }
    if (!fits) continue;
    SmoothQuantGroup r;
    r.alpha = alpha.value_or(0.5);
    if (!alpha && !st.sample.empty()) {
      const int64_t rows = static_cast<int64_t>(st.sample.size()) / st.k;
      std::vector<std::vector<float>> y_ref;
      for (size_t l = 0; l < weights.size(); ++l) {
        const int n = static_cast<int>(out_features[l]);
        y_ref.emplace_back(static_cast<size_t>(rows * out_features[l]));
        sgemm(false, false, static_cast<int>(rows), n, static_cast<int>(st.k), 1.0f, st.sample.data(),
              static_cast<int>(st.k), weights[l].data(), n, 0.0f, y_ref.back().data(), n);
      }
      r.error = INFINITY;
      for (int i = 0; i <= 10; ++i) {
        const double a = i / 10.0;
        const double e = w8a8_error(st.sample, st.k, weights, out_features, y_ref,
                                    smooth_quant_scales(st.abs_max, weight_max, a), options);
        if (i == 5) r.error_at_half = e;
        if (e < r.error) {
          r.error = e;
          r.alpha = a;
        }
      }
    }
    std::vector<double> s = smooth_quant_scales(st.abs_max, weight_max, r.alpha);
    r.input = sg.input;
    r.layers = static_cast<int64_t>(sg.layers.size());
    r.outlier_ratio_before = outlier_ratio(st.abs_max);
    std::vector<double> after(st.abs_max.size());
    for (size_t c = 0; c < after.size(); ++c) after[c] = st.abs_max[c] / s[c];
    r.outlier_ratio_after = outlier_ratio(after);
    chosen.push_back(sg);
    scales.push_back(std::move(s));
    result.groups.push_back(std::move(r));
  }
  const std::vector<ScaleApplied> applied = apply_input_scales(g, chosen, scales, "smooth");
  for (size_t i = 0; i < applied.size(); ++i) result.groups[i].applied = applied[i];
  return result;
}

}  // namespace kvant
