// The vector float math table (kernels/vmath.h, vmath_kernels.h): every entry
// this CPU and KVANT_ISA allow (tests/unit/kernel_walk.h), against the C
// library in double, over grids of every range that matters and over odd
// lengths (1, 3, 15, 17, 63, 65, 255: the tails of 8- and 16-lane vectors),
// with the bounds vmath.h states:
//   exp      relative 3e-7 (Taylor 2e-7 plus rounding);
//   erf      absolute 5e-7 (A&S 7.1.26's 1.5e-7 plus rounding);
//   sigmoid  relative 5e-7; tanh relative 5e-7 (absolute 1e-30 at 0);
//   silu / gelu_erf  the same bounds carried through one multiply;
//   exp_shifted_sum's sum relative 1e-5 (float summation of 1000 terms);
// and quantize_f32 bit-exact with the reference QuantizeLinear op.
#include "kernels/vmath.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernel_walk.h"
#include "kernels/vmath_kernels.h"
#include "ops/op_registry.h"

namespace kvant {
namespace {

std::vector<float> grid(float lo, float hi, int n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    v[static_cast<size_t>(i)] = lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(n - 1);
  return v;
}

std::vector<const VMathKernel*> runnable() {
  Isa allowed = Isa::kRef;
  std::string why;
  if (!test::allowed_isa(allowed, why)) return {};
  return test::runnable_entries(vmath_kernels(), allowed);
}

using Fn = void (*)(const float*, float*, int64_t);

// Runs f over x in pieces of the odd lengths (so every tail is hit) and
// checks each y against want(x) within abs + rel * |want|; also that nothing
// past each piece was written.
template <typename Want>
void check(const char* entry, const char* what, Fn f, const std::vector<float>& x, Want want, double rel, double abs) {
  const int lengths[] = {1, 3, 15, 17, 63, 65, 255, 1000};
  size_t at = 0;
  for (size_t piece = 0; at < x.size(); ++piece) {
    const size_t len = std::min(x.size() - at, static_cast<size_t>(lengths[piece % 8]));
    std::vector<float> y(len + 1, 12345.0f);
    f(x.data() + at, y.data(), static_cast<int64_t>(len));
    ASSERT_EQ(y[len], 12345.0f) << entry << " " << what << " wrote past " << len;
    for (size_t i = 0; i < len; ++i) {
      const double w = want(static_cast<double>(x[at + i]));
      ASSERT_LE(std::abs(y[i] - w), abs + rel * std::abs(w)) << entry << " " << what << "(" << x[at + i] << ")";
    }
    at += len;
  }
}

TEST(VMath, TableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const auto entries = test::runnable_entries(vmath_kernels(), allowed);
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back()->isa, Isa::kRef);
  EXPECT_EQ(&vmath_pick(allowed), entries.front());
  test::check_coverage(vmath_kernels(), allowed, "vmath table");
}

TEST(VMath, EveryEntryIsAccurate) {
  const std::vector<float> wide = grid(-80.0f, 80.0f, 100003);
  const std::vector<float> mid = grid(-6.0f, 6.0f, 20011);
  const std::vector<float> sig = grid(-30.0f, 30.0f, 10001);
  std::vector<float> small = grid(-0.5f, 0.5f, 10001);
  small.push_back(0.0f);
  small.push_back(-1e-20f);
  small.push_back(0.3999999f);
  small.push_back(0.4f);
  for (const VMathKernel* k : runnable()) {
    const char* e = k->name;
    check(
        e, "exp", k->exp, wide, [](double v) { return std::exp(v); }, 3e-7, 0.0);
    check(
        e, "erf", k->erf, mid, [](double v) { return std::erf(v); }, 0.0, 5e-7);
    check(
        e, "sigmoid", k->sigmoid, sig, [](double v) { return 1.0 / (1.0 + std::exp(-v)); }, 5e-7, 1e-30);
    check(
        e, "tanh", k->tanh, sig, [](double v) { return std::tanh(v); }, 5e-7, 1e-30);
    check(
        e, "tanh", k->tanh, small, [](double v) { return std::tanh(v); }, 5e-7, 1e-30);
    check(
        e, "silu", k->silu, sig, [](double v) { return v / (1.0 + std::exp(-v)); }, 6e-7, 1e-30);
    const float divisor = 1.41421354f, half = 0.5f;
    auto gelu = [&](const float* x, float* y, int64_t n) { k->gelu_erf(x, y, n, divisor, half); };
    // gelu_erf through a capturing lambda: check() takes a function pointer,
    // so compare element-wise here.
    std::vector<float> y(mid.size());
    gelu(mid.data(), y.data(), static_cast<int64_t>(mid.size()));
    for (size_t i = 0; i < mid.size(); ++i) {
      const double v = mid[i];
      const double want = v * (std::erf(v / divisor) + 1.0) * half;
      ASSERT_LE(std::abs(y[i] - want), 6e-7 * std::abs(v) + 1e-30) << e << " gelu_erf(" << v << ")";
    }
    for (int n : {1, 3, 17, 65, 1000}) {
      const std::vector<float> row = grid(-3.0f, 5.0f, n < 2 ? 2 : n);
      std::vector<float> s(row.size() + 1, 7.0f);
      const float sum = k->exp_shifted_sum(row.data(), 5.0f, s.data(), static_cast<int64_t>(row.size()));
      double want = 0;
      for (size_t i = 0; i < row.size(); ++i) {
        const double w = std::exp(double{row[i] - 5.0f});  // the float difference is the input
        ASSERT_LE(std::abs(s[i] - w), 3e-7 * w) << e << " exp_shifted at " << i;
        want += w;
      }
      EXPECT_EQ(s[row.size()], 7.0f) << e << " exp_shifted wrote past the end";
      EXPECT_NEAR(sum, want, 1e-5 * want) << e << " n=" << n;
    }
  }
}

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
    const auto* want = static_cast<const uint8_t*>(ctx.outputs[0].raw());
    for (const VMathKernel* k : runnable()) {
      for (size_t n : {x.size(), size_t{1}, size_t{7}, size_t{17}}) {
        std::vector<uint8_t> got(n + 1, 0xAB);
        k->quantize(x.data(), got.data(), static_cast<int64_t>(n), scale, zp, is_signed);
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(got[i], want[i]) << k->name << " x=" << x[i] << " signed=" << is_signed;
        }
        ASSERT_EQ(got[n], 0xAB) << k->name << " wrote past " << n;
      }
    }
  }
}

// The free functions run the default entry.
TEST(VMath, FreeFunctionsUseTheDefaultEntry) {
  const std::vector<float> x = grid(-5.0f, 5.0f, 37);
  std::vector<float> a(x.size()), b(x.size());
  exp_f32(x.data(), a.data(), 37);
  vmath_default().exp(x.data(), b.data(), 37);
  EXPECT_EQ(a, b);
  tanh_f32(x.data(), a.data(), 37);
  vmath_default().tanh(x.data(), b.data(), 37);
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace kvant
