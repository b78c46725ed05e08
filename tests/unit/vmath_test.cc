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

#include "ops/op_registry.h"

namespace kvant {
namespace {

TEST(VMath, QuantizeIsBitExactWithTheReferenceOp) {
  std::vector<float> x = {0.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, 1e9f, -1e9f, NAN, INFINITY, -INFINITY, 0.049999f};
  for (int i = 0; i < 997; ++i) x.push_back(static_cast<float>(i) * 0.0137f - 6.0f);
  for (bool is_signed : {false, true}) {
    const float scale = 0.05f;
    const int32_t zp = is_signed ? -3 : 131;
    const Tensor xt = Tensor::from_vector(x, {static_cast<int64_t>(x.size())});
    const Tensor st = Tensor::scalar<float>(scale);
    const Tensor zt =
        is_signed ? Tensor::scalar<int8_t>(static_cast<int8_t>(zp)) : Tensor::scalar<uint8_t>(static_cast<uint8_t>(zp));
    Node node = make_node("q", "QuantizeLinear", {"x", "s", "z"}, {"y"});
    KernelContext ctx{node, 19, {&xt, &st, &zt}, {}, nullptr};
    ctx.outputs.resize(1);
    find_op("", "QuantizeLinear")->run(ctx);
    std::vector<uint8_t> got(x.size());
    quantize_f32(x.data(), got.data(), static_cast<int64_t>(x.size()), scale, zp, is_signed);
    const auto* want = static_cast<const uint8_t*>(ctx.outputs[0].raw());
    for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], want[i]) << "x=" << x[i] << " signed=" << is_signed;
  }
}

TEST(VMath, SigmoidIsAccurate) {
  const std::vector<float> x = grid(-30.0f, 30.0f, 10001);
  std::vector<float> y(x.size());
  sigmoid_f32(x.data(), y.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = 1.0 / (1.0 + std::exp(-double{x[i]}));
    ASSERT_LE(std::abs(y[i] - want), 5e-7 * want + 1e-30) << x[i];
  }
}

}  // namespace
}  // namespace kvant
