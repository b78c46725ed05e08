// The vectorised exp/erf against the C library, on both paths.
#include "kernels/vmath.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace kvant {
namespace {

std::vector<float> grid(float lo, float hi, int n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(n - 1);
  return v;
}

// The path the CPU selects (AVX2 here, scalar elsewhere).
void check() {
  const std::vector<float> x = grid(-80.0f, 80.0f, 100003);
  std::vector<float> y(x.size());
  exp_f32(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i]));
    ASSERT_LE(std::abs(y[i] - want), 3e-7 * want) << "exp(" << x[i] << ")";
  }
  const std::vector<float> e = grid(-6.0f, 6.0f, 100003);
  std::vector<float> z(e.size());
  erf_f32(e.data(), z.data(), static_cast<int64_t>(e.size()));
  for (size_t i = 0; i < e.size(); ++i)
    ASSERT_LE(std::abs(z[i] - std::erf(double{e[i]})), 5e-7) << "erf(" << e[i] << ")";
  std::vector<float> s(1000);
  const std::vector<float> row = grid(-3.0f, 5.0f, 1000);
  const float sum = exp_shifted_sum_f32(row.data(), 5.0f, s.data(), 1000);
  double want = 0;
  for (float v : row) want += std::exp(double{v} - 5.0);
  EXPECT_NEAR(sum, want, 1e-5 * want);
}

TEST(VMath, ExpAndErfAreAccurate) { check(); }

}  // namespace
}  // namespace kvant
