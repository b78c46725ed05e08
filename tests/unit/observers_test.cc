// Observers and schemes against values computed by hand or analytically.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvant/status.h"
#include "quant/observers/observer.h"
#include "quant/quant_params.h"

namespace kvant {
namespace {

TEST(QuantParams, AffineUint8MakesZeroExact) {
  float scale;
  int32_t zp;
  choose_qparams(-1.0f, 3.0f, DType::kUInt8, Symmetry::kAffine, false, &scale, &zp);
  EXPECT_FLOAT_EQ(scale, 4.0f / 255);
  EXPECT_EQ(zp, 64);  // round(0 - (-1) / (4/255)) = round(63.75)
  EXPECT_EQ(quantize_value(0.0f, scale, zp, quant_range(DType::kUInt8)), zp);
}

TEST(QuantParams, AffineWidensToIncludeZero) {
  float scale;
  int32_t zp;
  choose_qparams(2.0f, 6.0f, DType::kUInt8, Symmetry::kAffine, false, &scale, &zp);
  EXPECT_FLOAT_EQ(scale, 6.0f / 255);
  EXPECT_EQ(zp, 0);
}

TEST(QuantParams, SymmetricInt8UsesQmax127) {
  float scale;
  int32_t zp;
  choose_qparams(-0.5f, 2.54f, DType::kInt8, Symmetry::kSymmetric, false, &scale, &zp);
  EXPECT_FLOAT_EQ(scale, 2.54f / 127);
  EXPECT_EQ(zp, 0);
}

TEST(QuantParams, ReduceRangeDropsOneBit) {
  EXPECT_EQ(quant_range(DType::kInt8, true).qmin, -64);
  EXPECT_EQ(quant_range(DType::kInt8, true).qmax, 63);
  EXPECT_EQ(quant_range(DType::kUInt8, true).qmax, 127);
}

TEST(QuantParams, RoundsHalfToEvenAndSaturates) {
  const QuantRange r = quant_range(DType::kInt8);
  EXPECT_EQ(quantize_value(2.5f, 1.0f, 0, r), 2);
  EXPECT_EQ(quantize_value(3.5f, 1.0f, 0, r), 4);
  EXPECT_EQ(quantize_value(-2.5f, 1.0f, 0, r), -2);
  EXPECT_EQ(quantize_value(1000.0f, 1.0f, 0, r), 127);
  EXPECT_EQ(quantize_value(-1000.0f, 1.0f, 0, r), -128);
}

TEST(QuantParams, RejectsNonFiniteRange) {
  float scale;
  int32_t zp;
  EXPECT_THROW(choose_qparams(0, NAN, DType::kInt8, Symmetry::kAffine, false, &scale, &zp), Error);
  EXPECT_THROW(choose_qparams(2, 1, DType::kInt8, Symmetry::kAffine, false, &scale, &zp), Error);
}

TEST(Observers, MinMaxAndMovingAverage) {
  auto minmax = make_observer({.method = CalibrationMethod::kMinMax});
  const float a[] = {-1, 2, 0.5f};
  const float b[] = {3, -0.5f};
  minmax->observe(a, 3);
  minmax->observe(b, 2);
  EXPECT_EQ(minmax->range().min, -1);
  EXPECT_EQ(minmax->range().max, 3);

  auto ma = make_observer({.method = CalibrationMethod::kMovingAverage, .averaging_constant = 0.5f});
  ma->observe(a, 3);  // [-1, 2]
  ma->observe(b, 2);  // batch [-0.5, 3] -> [-0.75, 2.5]
  EXPECT_FLOAT_EQ(ma->range().min, -0.75f);
  EXPECT_FLOAT_EQ(ma->range().max, 2.5f);
}

TEST(Observers, RejectNaN) {
  const float bad[] = {1, NAN};
  for (auto m : {CalibrationMethod::kMinMax, CalibrationMethod::kEntropy}) {
    auto o = make_observer({.method = m});
    EXPECT_THROW(o->observe(bad, 2), Error);
  }
}

TEST(Histogram, GrowingKeepsEveryCount) {
  Histogram h(64);
  std::vector<float> v;
  for (int i = 1; i <= 100; ++i) v.push_back(static_cast<float>(i) / 100.0f);
  h.add(v.data(), static_cast<int64_t>(v.size()));
  const float big[] = {-37.0f, 0.0f};
  h.add(big, 2);
  EXPECT_DOUBLE_EQ(h.total(), 102.0);
  EXPECT_GE(h.limit(), 37.0f);
  EXPECT_FLOAT_EQ(h.min_seen(), -37.0f);
}

TEST(Histogram, PercentileOfUniform) {
  // 1000 bins per sign over [-1, 1], uniform mass: the 90th percentile of |x| is 0.9.
  std::vector<double> counts(2000, 1.0);
  Histogram h(2000);
  h.assign(counts, 1.0f);
  EXPECT_NEAR(h.abs_percentile(0.9), 0.9, 1e-3);
}

TEST(Histogram, EntropyClipsARareOutlierButKeepsTheBody) {
  // A Laplacian body (scale 0.05 over [-1, 1]) and a single count at 1.0:
  // representing the outlier would coarsen the body's 128 levels 8-fold, so
  // KL chooses a threshold past the body's bulk (|x| > 0.2 holds 1.8% of the
  // mass) and far below the outlier. MinMax would take 1.0.
  const int bins = 4096;
  const float limit = 1.0f;
  std::vector<double> counts(bins, 0.0);
  for (int j = 0; j < bins / 2; ++j) {
    const double x = (j + 0.5) * (2.0 * limit / bins);
    const double c = std::floor(1e6 * std::exp(-x / 0.05));
    counts[bins / 2 + j] = c;
    counts[bins / 2 - 1 - j] = c;
  }
  counts[bins - 1] += 1;
  Histogram h(bins);
  h.assign(counts, limit);
  const float t = h.entropy_threshold(8);
  EXPECT_GE(t, 0.2f);
  EXPECT_LE(t, 0.6f);
}

TEST(Histogram, EntropyOfUniformIsItsEdge) {
  // Uniform over [-1, 1]: no threshold below the edge has lower divergence.
  Histogram h(4096);
  h.assign(std::vector<double>(4096, 10.0), 1.0f);
  EXPECT_NEAR(h.entropy_threshold(8), 1.0f, 0.01f);
}

// Expected squared error of clipping N(0,1) at a and rounding with 2^bits
// levels over [-a, a] (the model the MSE observer minimises), integrated
// numerically; its minimiser is the analytic optimum.
double gaussian_mse(double a, int bits) {
  const double step = 2 * a / (std::ldexp(1.0, bits) - 1);
  const double phi_a = std::exp(-a * a / 2) / std::sqrt(2 * M_PI);
  const double tail = 0.5 * std::erfc(a / std::sqrt(2.0));
  // E[(|x| - a)^2; |x| > a] = 2 * ((a^2 + 1) * tail - a * phi(a))
  const double clip = 2 * ((a * a + 1) * tail - a * phi_a);
  return clip + (1 - 2 * tail) * step * step / 12;
}

TEST(Histogram, MseClippingOfGaussianMatchesAnalyticOptimum) {
  for (int bits : {4, 8}) {
    double best_a = 0, best = 1e300;
    for (double a = 0.5; a < 8; a += 1e-4) {
      const double e = gaussian_mse(a, bits);
      if (e < best) {
        best = e;
        best_a = a;
      }
    }
    std::mt19937 rng(42);
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    std::vector<float> v(2'000'000);
    for (auto& x : v) x = gauss(rng);
    Histogram h(8192);
    h.add(v.data(), static_cast<int64_t>(v.size()));
    const double t = h.mse_threshold(bits);
    EXPECT_NEAR(t / best_a, 1.0, 0.02) << "bits " << bits << ": histogram " << t << ", analytic " << best_a;
  }
}

TEST(Observers, PercentileClipsToSeenRangeForReluOutputs) {
  auto o = make_observer({.method = CalibrationMethod::kPercentile, .percentile = 99.0});
  std::vector<float> v(10000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i) / 10000.0f;  // [0, 1)
  o->observe(v.data(), static_cast<int64_t>(v.size()));
  const Range r = o->range();
  EXPECT_EQ(r.min, 0.0f);
  EXPECT_NEAR(r.max, 0.99f, 0.01f);
}

}  // namespace
}  // namespace kvant

namespace kvant {
namespace {

// A normalized image: 80% background at -0.8, the rest spread over (0, 2].
// Folding |x| let the background spike set one threshold for both sides and
// clip every bright pixel above 0.8 (found on Fashion-MNIST: -6 points of
// top-1); each side now gets its own threshold.
TEST(Observers, EntropyKeepsTheLongSideOfAnAsymmetricRange) {
  std::vector<float> x;
  for (int i = 0; i < 8000; ++i) x.push_back(-0.8f);
  for (int i = 1; i <= 2000; ++i) x.push_back(2.0f * static_cast<float>(i) / 2000.0f);
  ObserverOptions o;
  o.method = CalibrationMethod::kEntropy;
  auto obs = make_observer(o);
  obs->observe(x.data(), static_cast<int64_t>(x.size()));
  const Range r = obs->range();
  EXPECT_LE(r.min, -0.79f);
  EXPECT_GE(r.max, 1.6f) << "the bright tail must not be clipped at the background's magnitude";
}

}  // namespace
}  // namespace kvant
