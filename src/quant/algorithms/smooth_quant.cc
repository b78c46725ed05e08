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
#include "quant/algorithms/smooth_quant.h"

#include <algorithm>
#include <cmath>

#include "kvant/status.h"

namespace kvant {

namespace {

double outlier_ratio(std::vector<double> m) {
  if (m.empty()) return 0;
  const double top = *std::max_element(m.begin(), m.end());
  std::nth_element(m.begin(), m.begin() + static_cast<std::ptrdiff_t>(m.size() / 2), m.end());
  const double median = m[m.size() / 2];
  return median > 0 ? top / median : 0;
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

SmoothQuantResult apply_smooth_quant(Model& model, SampleSource& calibration, double alpha,
                                     const QuantizeOptions& options, const std::set<std::string>& compute_ops) {
  if (!(alpha >= 0 && alpha <= 1)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the SmoothQuant migration strength must be in [0, 1], got " + std::to_string(alpha));
  }
  Graph& g = model.graph;
  const std::vector<ScaleGroup> groups = find_scale_groups(g, resolve_excluded_nodes(g, options.exclude, compute_ops));
  SmoothQuantResult result;
  if (groups.empty()) return result;
  std::set<std::string> inputs;
  for (const ScaleGroup& sg : groups) inputs.insert(sg.input);
  const std::map<std::string, ChannelStats> stats = collect_channel_stats(model, calibration, inputs, false, options);
  std::vector<ScaleGroup> chosen;
  std::vector<std::vector<double>> scales;
  for (const ScaleGroup& sg : groups) {
    const ChannelStats& st = stats.at(sg.input);
    std::vector<double> weight_max(static_cast<size_t>(st.k), 0.0);
    bool fits = true;
    for (size_t i : sg.layers) {
      if (layer_in_features(g, g.nodes[i]) != st.k) {
        fits = false;
        break;
      }
      int64_t n = 0;
      const std::vector<float> w = layer_weight_kn(g, g.nodes[i], &n);
      for (int64_t r = 0; r < st.k; ++r) {
        for (int64_t c = 0; c < n; ++c) {
          double& m = weight_max[static_cast<size_t>(r)];
          m = std::max(m, std::fabs(static_cast<double>(w[static_cast<size_t>(r * n + c)])));
        }
      }
    }
    if (!fits) continue;
    std::vector<double> s = smooth_quant_scales(st.abs_max, weight_max, alpha);
    SmoothQuantGroup r;
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
