// GPTQ (quant/gptq.h): on correlated layer inputs its rounding gives a
// smaller output error than round to nearest with the same scales' rule; the
// weights it writes back are exactly on its integer grid; the [N, K] layout
// gives the same result as [K, N]; and bad use is a named error.
#include "quant/gptq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "quant/qdq.h"

namespace kvant {
namespace {

constexpr int64_t kK = 64, kN = 24, kRows = 600;

// Inputs with strongly correlated features (x = z A), as a layer's inputs are.
std::vector<float> correlated_inputs(std::mt19937& rng) {
  std::normal_distribution<float> normal;
  std::vector<float> a(kK * kK), z(kK), x(kRows * kK);
  for (float& v : a) v = normal(rng) * 0.3f;
  for (int64_t i = 0; i < kK; ++i) a[i * kK + i] += 1.0f;
  for (int64_t r = 0; r < kRows; ++r) {
    for (float& v : z) v = normal(rng);
    for (int64_t j = 0; j < kK; ++j) {
      float s = 0;
      for (int64_t i = 0; i < kK; ++i) s += z[i] * a[i * kK + j];
      x[r * kK + j] = s;
    }
  }
  return x;
}

InputMoment moment_of(const std::vector<float>& x) {
  InputMoment m;
  m.k = kK;
  m.rows = kRows;
  m.h.assign(kK * kK, 0.0);
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t i = 0; i < kK; ++i) {
      for (int64_t j = 0; j < kK; ++j) m.h[i * kK + j] += double(x[r * kK + i]) * x[r * kK + j];
    }
  }
  return m;
}

// sum over rows of |x (W - V)|^2 for W, V [K, N].
double output_error(const std::vector<float>& x, const float* w, const float* v) {
  double e = 0;
  for (int64_t r = 0; r < kRows; ++r) {
    for (int64_t c = 0; c < kN; ++c) {
      double d = 0;
      for (int64_t i = 0; i < kK; ++i) d += double(x[r * kK + i]) * (double(w[i * kN + c]) - v[i * kN + c]);
      e += d * d;
    }
  }
  return e;
}

// Dequantized values of `t` under `p` (blocked along p.axis).
std::vector<float> round_trip(const Tensor& t, const QuantParams& p) {
  const Tensor q = quantize_tensor(t, p);
  std::vector<float> out(static_cast<size_t>(t.numel()));
  const int64_t rows = t.dim(0), cols = t.dim(1);
  const int64_t blocks = ((p.axis == 0 ? rows : cols) + p.block_size - 1) / p.block_size;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t at = p.axis == 0 ? (r / p.block_size) * cols + c : r * blocks + c / p.block_size;
      out[r * cols + c] = static_cast<float>(q.get_as_int64(r * cols + c) - p.zero_point[at]) * p.scale[at];
    }
  }
  return out;
}

Tensor random_weight(std::mt19937& rng) {
  std::normal_distribution<float> normal;
  Tensor w(DType::kFloat32, {kK, kN});
  for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = normal(rng) * 0.05f;
  return w;
}

TEST(Gptq, BeatsRoundToNearestOnCorrelatedInputsAndStaysOnItsGrid) {
  std::mt19937 rng(7);
  const std::vector<float> x = correlated_inputs(rng);
  const InputMoment m = moment_of(x);
  for (DType storage : {DType::kInt4, DType::kUInt4}) {
    const Symmetry sym = storage == DType::kInt4 ? Symmetry::kSymmetric : Symmetry::kAffine;
    const Tensor w = random_weight(rng);
    const QuantParams rtn = blocked_weight_params(w, 0, 32, storage, sym, false);
    const std::vector<float> rtn_values = round_trip(w, rtn);
    Tensor g = w.clone();
    const QuantParams gp = gptq_quantize(g, 0, m, 32, storage, sym, false, 0.01);
    // The written-back weights are exactly what their integers dequantize to.
    EXPECT_EQ(round_trip(g, gp), g.to_float_vector());
    const double e_rtn = output_error(x, w.data<float>(), rtn_values.data());
    const double e_gptq = output_error(x, w.data<float>(), g.data<float>());
    EXPECT_LT(e_gptq, 0.8 * e_rtn) << dtype_name(storage) << ": GPTQ " << e_gptq << " vs RTN " << e_rtn;
  }
}

TEST(Gptq, TransposedLayoutGivesTheSameWeights) {
  std::mt19937 rng(11);
  const InputMoment m = moment_of(correlated_inputs(rng));
  Tensor w = random_weight(rng);
  Tensor wt(DType::kFloat32, {kN, kK});
  for (int64_t r = 0; r < kK; ++r) {
    for (int64_t c = 0; c < kN; ++c) wt.data<float>()[c * kK + r] = w.data<float>()[r * kN + c];
  }
  const QuantParams p = gptq_quantize(w, 0, m, 32, DType::kInt4, Symmetry::kSymmetric, true, 0.01);
  const QuantParams pt = gptq_quantize(wt, 1, m, 32, DType::kInt4, Symmetry::kSymmetric, true, 0.01);
  for (int64_t r = 0; r < kK; ++r) {
    for (int64_t c = 0; c < kN; ++c) ASSERT_EQ(wt.data<float>()[c * kK + r], w.data<float>()[r * kN + c]);
  }
  EXPECT_EQ(round_trip(wt, pt), wt.to_float_vector());
  EXPECT_EQ(p.scale.size(), pt.scale.size());
}

TEST(Gptq, DeadInputsAndMismatchedMoments) {
  std::mt19937 rng(3);
  InputMoment m = moment_of(correlated_inputs(rng));
  for (int64_t j = 0; j < kK; ++j) m.h[5 * kK + j] = m.h[j * kK + 5] = 0;  // feature 5 is always 0
  Tensor w = random_weight(rng);
  EXPECT_NO_THROW(gptq_quantize(w, 0, m, 32, DType::kInt4, Symmetry::kSymmetric, false, 0.01));
  for (float v : w.to_float_vector()) EXPECT_TRUE(std::isfinite(v));
  Tensor narrow(DType::kFloat32, {kK / 2, kN});
  try {
    gptq_quantize(narrow, 0, m, 32, DType::kInt4, Symmetry::kSymmetric, false, 0.01);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("features"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvant
