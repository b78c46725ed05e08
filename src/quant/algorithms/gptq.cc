// GPTQ (Frantar, Ashkboos, Hoefler, Alistarh, 2022) for weight-only INT4/INT8.
//
// A linear layer y = x W (W [K, N]) quantized to Q loses E = |x (W - Q)|^2
// summed over the calibration inputs x = sum_n (w_n - q_n)^T H (w_n - q_n)
// with H = sum x^T x (K x K), the same H for every output column n. GPTQ
// quantizes W one input row k at a time (rows of W = the reduction axis) and
// after each row moves the rounding error it made onto the rows not yet
// quantized, in the direction that keeps E smallest (optimal brain
// quantization):
//
//   U = the upper Cholesky factor of H^-1 (H^-1 = U^T U)
//   for k = 0 .. K-1:
//     q_k = quant(w_k)                        (per column n, its group's scale)
//     e   = (w_k - dequant(q_k)) / U[k][k]
//     w_j -= e * U[k][j]   for every j > k
//
// Group scales (one per group_size rows and column) are chosen from the
// group's rows as updated when the group starts, as in GPTQ with groups. H
// gets damp * mean(diag H) added to its diagonal (numerical safety, and a
// pull towards round-to-nearest); an input that is always zero (diag 0) gets
// 1 there and its weights are quantized as they stand (they meet only
// zeros). If H is still not positive definite the damping grows tenfold, up
// to three times, then the layer is reported. Cost: K^3 for the factors plus
// K^2 N for the updates per weight, in double.
#include "quant/gptq.h"

#include <algorithm>
#include <cmath>

#include "kvant/status.h"
#include "quant/calibration_run.h"
#include "quant/qdq.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

using Matrix = std::vector<double>;  // row-major square, k x k

// Lower Cholesky factor of `a` (k x k) into `l`; false if `a` is not
// positive definite.
bool cholesky(const Matrix& a, int64_t k, Matrix& l) {
  l.assign(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j <= i; ++j) {
      double sum = a[static_cast<size_t>(i * k + j)];
      const double* li = l.data() + i * k;
      const double* lj = l.data() + j * k;
      for (int64_t t = 0; t < j; ++t) sum -= li[t] * lj[t];
      if (i == j) {
        if (!(sum > 0)) return false;
        l[static_cast<size_t>(i * k + i)] = std::sqrt(sum);
      } else {
        l[static_cast<size_t>(i * k + j)] = sum / l[static_cast<size_t>(j * k + j)];
      }
    }
  }
  return true;
}

// Upper factor U of H^-1 = U^T U from the lower Cholesky factor L of H:
// H^-1 = L^-T L^-1, whose own lower Cholesky factor L2 gives U = L2^T.
bool inverse_upper_factor(const Matrix& l, int64_t k, Matrix& u) {
  Matrix linv(static_cast<size_t>(k * k), 0.0);  // L^-1, lower
  for (int64_t j = 0; j < k; ++j) {
    linv[static_cast<size_t>(j * k + j)] = 1.0 / l[static_cast<size_t>(j * k + j)];
    for (int64_t i = j + 1; i < k; ++i) {
      double sum = 0;
      for (int64_t t = j; t < i; ++t) sum -= l[static_cast<size_t>(i * k + t)] * linv[static_cast<size_t>(t * k + j)];
      linv[static_cast<size_t>(i * k + j)] = sum / l[static_cast<size_t>(i * k + i)];
    }
  }
  Matrix hinv(static_cast<size_t>(k * k), 0.0);  // L^-T L^-1
  for (int64_t t = 0; t < k; ++t) {
    const double* row = linv.data() + t * k;  // nonzero for columns <= t
    for (int64_t i = 0; i <= t; ++i) {
      const double r = row[i];
      if (r == 0) continue;
      double* out = hinv.data() + i * k;
      for (int64_t j = 0; j <= t; ++j) out[j] += r * row[j];
    }
  }
  Matrix l2;
  if (!cholesky(hinv, k, l2)) return false;
  u.assign(static_cast<size_t>(k * k), 0.0);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j <= i; ++j) u[static_cast<size_t>(j * k + i)] = l2[static_cast<size_t>(i * k + j)];
  }
  return true;
}

}  // namespace

void accumulate_moment(InputMoment& m, const float* x, int64_t rows) {
  const int64_t k = m.k;
  std::vector<double> row(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) row[static_cast<size_t>(i)] = x[r * k + i];
    for (int64_t i = 0; i < k; ++i) {  // upper triangle; mirror_moment fills the rest
      const double xi = row[static_cast<size_t>(i)];
      if (xi == 0) continue;
      double* out = m.h.data() + i * k;
      for (int64_t j = i; j < k; ++j) out[j] += xi * row[static_cast<size_t>(j)];
    }
  }
  m.rows += rows;
}

void mirror_moment(InputMoment& m) {
  for (int64_t i = 0; i < m.k; ++i) {
    for (int64_t j = 0; j < i; ++j) m.h[static_cast<size_t>(i * m.k + j)] = m.h[static_cast<size_t>(j * m.k + i)];
  }
}

std::map<std::string, InputMoment> collect_input_moments(const Model& model, SampleSource& calibration,
                                                         const std::set<std::string>& inputs,
                                                         const QuantizeOptions& options) {
  std::map<std::string, InputMoment> moments;
  auto observe = [&](const std::string& name, const Tensor& t) {
    if (!inputs.count(name) || t.dtype() != DType::kFloat32 || t.rank() < 1) return;
    const int64_t k = t.shape().back();
    if (k < 1) return;
    InputMoment& m = moments[name];
    if (m.k == 0) {
      m.k = k;
      m.h.assign(static_cast<size_t>(k * k), 0.0);
    } else if (m.k != k) {
      throw Error(ErrorCode::kInvalidArgument, "tensor \"" + name + "\" changed its last dim from " +
                                                   std::to_string(m.k) + " to " + std::to_string(k));
    }
    accumulate_moment(m, t.data<float>(), t.numel() / k);
  };
  ReferenceExecutor exec(model);
  exec.set_observer([&](const Node& node, const std::vector<Tensor>& outputs) {
    for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
      if (outputs[i].defined()) observe(node.outputs[i], outputs[i]);
    }
  });
  run_calibration_samples(exec, calibration, options, observe);
  for (const std::string& name : inputs) {
    if (!moments.count(name)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "GPTQ: layer input \"" + name + "\" was never computed as float32 on the calibration data");
    }
  }
  for (auto& [name, m] : moments) mirror_moment(m);
  return moments;
}

QuantParams gptq_quantize(Tensor& w, int k_axis, const InputMoment& moment, int group_size, DType storage,
                          Symmetry symmetry, bool mse_clip, double damp) {
  if (w.dtype() != DType::kFloat32 || w.rank() != 2 || (k_axis != 0 && k_axis != 1)) {
    throw Error(ErrorCode::kInvalidArgument, "GPTQ needs a 2-D float32 weight, got " + w.describe());
  }
  const int64_t k = w.dim(k_axis), n = w.dim(1 - k_axis);
  if (moment.k != k) {
    throw Error(ErrorCode::kInvalidArgument, "GPTQ: the layer input has " + std::to_string(moment.k) +
                                                 " features but the weight " + w.describe() + " reduces " +
                                                 std::to_string(k));
  }
  // Working copy as [K, N] in double.
  std::vector<double> wk(static_cast<size_t>(k * n));
  const float* src = w.data<float>();
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      wk[static_cast<size_t>(r * n + c)] = k_axis == 0 ? src[r * n + c] : src[c * k + r];
    }
  }
  Matrix h = moment.h;
  double mean_diag = 0;
  for (int64_t i = 0; i < k; ++i) mean_diag += h[static_cast<size_t>(i * k + i)];
  mean_diag = mean_diag > 0 ? mean_diag / static_cast<double>(k) : 1.0;
  for (int64_t i = 0; i < k; ++i) {
    double& d = h[static_cast<size_t>(i * k + i)];
    if (d == 0) d = 1;  // a dead input: its weights only ever meet zeros
  }
  Matrix l, u;
  bool factored = false;
  for (int attempt = 0; attempt < 4 && !factored; ++attempt) {
    Matrix damped = h;
    const double add = damp * std::pow(10.0, attempt) * mean_diag;
    for (int64_t i = 0; i < k; ++i) damped[static_cast<size_t>(i * k + i)] += add;
    factored = cholesky(damped, k, l) && inverse_upper_factor(l, k, u);
  }
  if (!factored) {
    throw Error(ErrorCode::kInvalidArgument,
                "GPTQ: the input moment of weight " + w.describe() + " is not positive definite even with damping");
  }

  const QuantRange range = quant_range(storage);
  const int64_t blocks = (k + group_size - 1) / group_size;
  std::vector<float> scale(static_cast<size_t>(blocks * n));
  std::vector<int32_t> zero(scale.size());
  std::vector<double> err(static_cast<size_t>(n));
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t k0 = b * group_size, k1 = std::min<int64_t>(k, k0 + group_size);
    // The group's scales from its rows as they are now.
    Tensor group(DType::kFloat32, {k1 - k0, n});
    float* gp = group.data<float>();
    for (int64_t i = 0; i < (k1 - k0) * n; ++i) gp[i] = static_cast<float>(wk[static_cast<size_t>(k0 * n + i)]);
    const QuantParams gq = blocked_weight_params(group, 0, group_size, storage, symmetry, mse_clip);
    for (int64_t c = 0; c < n; ++c) {
      scale[static_cast<size_t>(b * n + c)] = gq.scale[static_cast<size_t>(c)];
      zero[static_cast<size_t>(b * n + c)] = gq.zero_point[static_cast<size_t>(c)];
    }
    for (int64_t r = k0; r < k1; ++r) {
      const double d = u[static_cast<size_t>(r * k + r)];
      double* row = wk.data() + r * n;
      for (int64_t c = 0; c < n; ++c) {
        const float s = scale[static_cast<size_t>(b * n + c)];
        const int32_t zp = zero[static_cast<size_t>(b * n + c)];
        const double q = std::clamp(static_cast<double>(std::nearbyint(static_cast<float>(row[c]) / s)) + zp,
                                    static_cast<double>(range.qmin), static_cast<double>(range.qmax));
        const double deq = static_cast<double>(static_cast<float>((q - zp) * s));
        err[static_cast<size_t>(c)] = (row[c] - deq) / d;
        row[c] = deq;
      }
      for (int64_t j = r + 1; j < k; ++j) {
        const double f = u[static_cast<size_t>(r * k + j)];
        if (f == 0) continue;
        double* later = wk.data() + j * n;
        for (int64_t c = 0; c < n; ++c) later[c] -= err[static_cast<size_t>(c)] * f;
      }
    }
  }
  // Back into w's layout, and the params in the opset-21 blocked layout:
  // scale [blocks, N] for K on axis 0, [N, blocks] for K on axis 1.
  float* dst = w.data<float>();
  QuantParams p;
  p.storage = storage;
  p.axis = k_axis;
  p.block_size = group_size;
  p.scale.resize(scale.size());
  p.zero_point.resize(scale.size());
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      const auto v = static_cast<float>(wk[static_cast<size_t>(r * n + c)]);
      if (k_axis == 0) {
        dst[r * n + c] = v;
      } else {
        dst[c * k + r] = v;
      }
    }
  }
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t c = 0; c < n; ++c) {
      const auto at = static_cast<size_t>(k_axis == 0 ? b * n + c : c * blocks + b);
      p.scale[at] = scale[static_cast<size_t>(b * n + c)];
      p.zero_point[at] = zero[static_cast<size_t>(b * n + c)];
    }
  }
  return p;
}

}  // namespace kvant
