// AWQ (Lin, Tang, Tang, Yang, Dang, Gan, Han, 2023, "AWQ: Activation-aware
// Weight Quantization for LLM Compression and Acceleration", arXiv:2306.00978).
//
// A few input channels of a layer carry much larger activations than the
// rest; rounding errors in those channels' weights cost the most output
// error. Scaling row k of W by s_k > 1 before quantization gives it relatively
// more of its block's grid (its rounding error shrinks by about s_k once the
// inverse is applied to x), at the price of the other rows of the block,
// whose step grows. With the output error of layer W on the calibration rows
//   E(s) = sum_x |x diag(1/s) Q(diag(s) W) - x W|^2 = sum_n d_n^T H d_n,
//   D = W - diag(1/s) Q(diag(s) W),   H = sum_x x^T x   (K x K)
// AWQ searches s on one line through the activation magnitudes:
//   s_k = mean|x_k|^alpha,  alpha in {0, 1/20, ..., 1},
// normalized to max(s) min(s) = 1 (Q's blocks make a common factor cancel),
// and keeps the alpha of least E summed over every layer that reads the
// same x (they share the scale because x / s is shared). Q is the quantizer
// that runs afterwards (weight_only_grid: group size, symmetry), with plain
// min/max blocks during the walk; the winner is then scored under the real
// one, MSE clipping included, against alpha = 0 (s = 1, round to nearest)
// and kept only if it is lower, so the chosen E is never above round to
// nearest's on the calibration data. The weights become
// diag(s) W and x / s is folded into the op before (channel_scaling.h); a
// later GPTQ (--rounding gptq) then rounds diag(s) W against the moment of
// x / s. Costs: one calibration pass (K^2 doubles per distinct layer input
// for H), then per alpha and layer K^2 N multiply-adds for E (sgemm).
//
// Not done (the paper's): clipping search of its own (kvant's RTN clips
// per block by least squared weight error already), and the search on the
// quantized prefix (statistics come from the FP32 model, one pass).
#include "quant/algorithms/awq.h"

#include <algorithm>
#include <cmath>

#include "kernels/sgemm.h"
#include "kvant/status.h"
#include "quant/qdq.h"

namespace kvant {

WeightGrid weight_only_grid(int bits, const QuantizeOptions& options) {
  WeightGrid g;
  g.symmetry = options.weight_symmetry == Symmetry::kSymmetric ? Symmetry::kSymmetric : Symmetry::kAffine;
  const bool symmetric = g.symmetry == Symmetry::kSymmetric;
  g.storage = bits == 4 ? (symmetric ? DType::kInt4 : DType::kUInt4) : (symmetric ? DType::kInt8 : DType::kUInt8);
  g.group_size = options.group_size;
  g.mse_clip = options.weight_clip_search && bits == 4;
  return g;
}

std::vector<float> fake_quantize_kn(const std::vector<float>& w, int64_t k, int64_t n, const WeightGrid& grid) {
  const Tensor t = Tensor::from_vector(w, {k, n});
  const QuantParams p = blocked_weight_params(t, 0, grid.group_size, grid.storage, grid.symmetry, grid.mse_clip);
  const QuantRange range = quant_range(grid.storage);
  std::vector<float> out(w.size());
  for (int64_t r = 0; r < k; ++r) {
    const int64_t b = r / grid.group_size;
    for (int64_t c = 0; c < n; ++c) {
      const auto at = static_cast<size_t>(b * n + c);  // scale [blocks, N]
      const int32_t q = quantize_value(w[static_cast<size_t>(r * n + c)], p.scale[at], p.zero_point[at], range);
      out[static_cast<size_t>(r * n + c)] = static_cast<float>(q - p.zero_point[at]) * p.scale[at];
    }
  }
  return out;
}

namespace {

// scaled_quantization_error with H as float (k x k): H D by the blocked
// sgemm (float accumulation; relative error ~1e-6, far below the differences
// between the grid's alphas), then sum D (H D) in double.
double scaled_error(const std::vector<float>& w, int64_t k, int64_t n, const std::vector<double>& s,
                    const std::vector<float>& h, const WeightGrid& grid) {
  std::vector<float> ws(w.size());
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      const auto at = static_cast<size_t>(r * n + c);
      ws[at] = static_cast<float>(static_cast<double>(w[at]) * s[static_cast<size_t>(r)]);
    }
  }
  const std::vector<float> q = fake_quantize_kn(ws, k, n, grid);
  std::vector<float> d(w.size());  // D = W - diag(1/s) Q
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      const auto at = static_cast<size_t>(r * n + c);
      d[at] = static_cast<float>(static_cast<double>(w[at]) - static_cast<double>(q[at]) / s[static_cast<size_t>(r)]);
    }
  }
  std::vector<float> hd(w.size());
  const int ki = static_cast<int>(k), ni = static_cast<int>(n);
  sgemm(false, false, ki, ni, ki, 1.0f, h.data(), ki, d.data(), ni, 0.0f, hd.data(), ni);
  double e = 0;
  for (size_t i = 0; i < d.size(); ++i) e += static_cast<double>(d[i]) * hd[i];
  return e;
}

std::vector<float> moment_as_float(const InputMoment& moment) {
  return std::vector<float>(moment.h.begin(), moment.h.end());
}

}  // namespace

double scaled_quantization_error(const std::vector<float>& w, int64_t k, int64_t n, const std::vector<double>& s,
                                 const InputMoment& moment, const WeightGrid& grid) {
  if (moment.k != k || static_cast<int64_t>(s.size()) != k || static_cast<int64_t>(w.size()) != k * n) {
    throw Error(ErrorCode::kInternal, "scaled_quantization_error: sizes do not fit");
  }
  return scaled_error(w, k, n, s, moment_as_float(moment), grid);
}

AwqSearch awq_search(const std::vector<std::vector<float>>& weights_kn, const std::vector<int64_t>& out_features,
                     const ChannelStats& stats, const WeightGrid& grid, int grid_points) {
  const int64_t k = stats.k;
  if (stats.moment.k != k || weights_kn.size() != out_features.size() || grid_points < 1) {
    throw Error(ErrorCode::kInternal, "awq_search: statistics without a moment, or weights without sizes");
  }
  // mean |x_k|, with channels that never saw a value raised to a small
  // fraction of the largest (their weights only ever meet zeros).
  std::vector<double> mean(static_cast<size_t>(k));
  double largest = 0;
  for (int64_t c = 0; c < k; ++c) {
    mean[static_cast<size_t>(c)] =
        stats.abs_sum[static_cast<size_t>(c)] / static_cast<double>(std::max<int64_t>(1, stats.rows));
    largest = std::max(largest, mean[static_cast<size_t>(c)]);
  }
  const double floor = largest > 0 ? largest * 1e-6 : 1.0;
  for (double& m : mean) m = std::max(m, floor);
  const std::vector<float> h = moment_as_float(stats.moment);
  auto total_error = [&](const std::vector<double>& s, const WeightGrid& q) {
    double e = 0;
    for (size_t l = 0; l < weights_kn.size(); ++l) e += scaled_error(weights_kn[l], k, out_features[l], s, h, q);
    return e;
  };
  // The grid is walked with plain min/max blocks (MSE clipping costs 26
  // trial roundings per block, most of the search's time); the winner is
  // then checked against round to nearest under the real quantizer.
  WeightGrid walk = grid;
  walk.mse_clip = false;
  const std::vector<double> ones(static_cast<size_t>(k), 1.0);
  double best_walk = total_error(ones, walk);
  double best_alpha = 0;
  std::vector<double> best_scale = ones;
  for (int i = 1; i <= grid_points; ++i) {
    const double alpha = static_cast<double>(i) / grid_points;
    std::vector<double> s(static_cast<size_t>(k));
    double lo = INFINITY, hi = 0;
    for (int64_t c = 0; c < k; ++c) {
      s[static_cast<size_t>(c)] = std::pow(mean[static_cast<size_t>(c)], alpha);
      lo = std::min(lo, s[static_cast<size_t>(c)]);
      hi = std::max(hi, s[static_cast<size_t>(c)]);
    }
    const double norm = std::sqrt(lo * hi);
    for (double& v : s) v /= norm;
    const double e = total_error(s, walk);
    if (e < best_walk) {
      best_walk = e;
      best_alpha = alpha;
      best_scale = std::move(s);
    }
  }
  AwqSearch best;
  best.scale = ones;
  best.rtn_error = grid.mse_clip ? total_error(ones, grid) : total_error(ones, walk);
  best.error = best.rtn_error;
  if (best_alpha > 0) {
    const double e = grid.mse_clip ? total_error(best_scale, grid) : best_walk;
    if (e < best.rtn_error) {
      best.error = e;
      best.alpha = best_alpha;
      best.scale = std::move(best_scale);
    }
  }
  return best;
}

AwqResult apply_awq(Model& model, SampleSource& calibration, int bits, const QuantizeOptions& options) {
  if (bits != 4 && bits != 8)
    throw Error(ErrorCode::kInvalidArgument, "--bits must be 4 or 8, got " + std::to_string(bits));
  if (options.group_size < 16 || (options.group_size & (options.group_size - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "--group-size must be a power of two >= 16 (32, 64, 128), got " + std::to_string(options.group_size));
  }
  Graph& g = model.graph;
  const std::set<std::string> excluded =
      resolve_excluded_nodes(g, options.exclude, {"MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN"});
  const std::vector<ScaleGroup> groups = find_scale_groups(g, excluded);
  AwqResult result;
  if (groups.empty()) return result;
  std::set<std::string> inputs;
  for (const ScaleGroup& sg : groups) inputs.insert(sg.input);
  const std::map<std::string, ChannelStats> stats = collect_channel_stats(model, calibration, inputs, true, options);
  const WeightGrid grid = weight_only_grid(bits, options);
  std::vector<ScaleGroup> chosen;
  std::vector<std::vector<double>> scales;
  for (const ScaleGroup& sg : groups) {
    const ChannelStats& st = stats.at(sg.input);
    std::vector<std::vector<float>> weights;
    std::vector<int64_t> out_features;
    bool fits = true;
    for (size_t i : sg.layers) {
      fits = fits && layer_in_features(g, g.nodes[i]) == st.k;
      int64_t n = 0;
      weights.push_back(layer_weight_kn(g, g.nodes[i], &n));
      out_features.push_back(n);
    }
    if (!fits) continue;  // a MatMul broadcasting x in another way: left alone
    AwqGroupResult r;
    r.input = sg.input;
    r.layers = static_cast<int64_t>(sg.layers.size());
    r.search = awq_search(weights, out_features, st, grid);
    if (r.search.alpha > 0) {
      chosen.push_back(sg);
      scales.push_back(r.search.scale);
    }
    result.groups.push_back(std::move(r));
  }
  const std::vector<ScaleApplied> applied = apply_input_scales(g, chosen, scales, "awq");
  size_t next = 0;
  for (AwqGroupResult& r : result.groups) {
    if (r.search.alpha > 0) r.applied = applied[next++];
  }
  return result;
}

}  // namespace kvant
