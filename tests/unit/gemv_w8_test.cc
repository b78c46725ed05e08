// gemv_w8 against a double-precision dot product of x and the dequantized
// rows, for every table entry this CPU and KVANT_ISA allow
// (tests/unit/kernel_walk.h): rows 1..129 (the 4-row groups and their tails),
// k 1..512 (the 8- and 16-lane tails), 1 and 3 rows of x, accumulate or not,
// and a guard element past y's row. Tolerance: the entries sum k in 8 or 16
// lane-parallel partial sums, so float summation errs by at most about
// k * 2^-24 * sum |x w scale|; 1e-5 of that sum (plus 1e-5 for the
// accumulated 1.0) is stated.
#include "kernels/gemv_w8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "kernel_walk.h"
#include "kernels/gemv_w8_kernels.h"

namespace kvant {
namespace {

TEST(GemvW8, TableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const auto entries = test::runnable_entries(gemv_w8_kernels(), allowed);
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back()->isa, Isa::kRef);
  EXPECT_EQ(&gemv_w8_pick(allowed), entries.front());
  test::check_coverage(gemv_w8_kernels(), allowed, "gemv_w8 table");
}

TEST(GemvW8, MatchesDequantizedFloatProduct) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> code(-128, 127);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const GemvW8Kernel* kernel : test::runnable_entries(gemv_w8_kernels(), allowed)) {
    for (int n : {1, 3, 4, 7, 64, 129}) {
      for (int k : {1, 5, 8, 15, 16, 17, 63, 512}) {
        for (int m : {1, 3}) {
          W8Matrix w;
          w.n = n;
          w.k = k;
          for (int i = 0; i < n * k; ++i) w.w.push_back(static_cast<int8_t>(code(rng)));
          for (int i = 0; i < n; ++i) w.scale.push_back(0.001f + 0.01f * std::abs(normal(rng)));
          std::vector<float> x(static_cast<size_t>(m * k));
          for (float& v : x) v = normal(rng);
          const int ldy = n + 1;
          std::vector<float> y(static_cast<size_t>(m * ldy), 1.0f);
          for (bool acc : {false, true}) {
            std::vector<float> got = y;
            gemv_w8(*kernel, w, x.data(), k, m, got.data(), ldy, acc);
            for (int r = 0; r < m; ++r) {
              ASSERT_EQ(got[static_cast<size_t>(r * ldy + n)], 1.0f) << kernel->name << " wrote past row " << r;
              for (int j = 0; j < n; ++j) {
                double want = 0, mag = 0;
                for (int i = 0; i < k; ++i) {
                  const double t = double{x[static_cast<size_t>(r * k + i)]} * w.w[static_cast<size_t>(j * k + i)] *
                                   w.scale[static_cast<size_t>(j)];
                  want += t;
                  mag += std::abs(t);
                }
                if (acc) want += 1.0;
                ASSERT_NEAR(got[static_cast<size_t>(r * ldy + j)], want, 1e-5 * (mag + 1.0))
                    << kernel->name << " " << n << "x" << k << " m=" << m;
              }
            }
          }
        }
      }
    }
  }
}

// Blocked scales (one per row and block of 16/32/128 along k, the last block
// short when k is not a multiple), for every entry with a blocked function;
// the same tolerance.
TEST(GemvW8, BlockedScalesMatchDequantizedFloatProduct) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  std::mt19937 rng(12);
  std::uniform_int_distribution<int> code(-128, 127);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int ran = 0;
  for (const GemvW8Kernel* kernel : test::runnable_entries(gemv_w8_kernels(), allowed)) {
    if (kernel->row_blocked == nullptr) continue;
    ++ran;
    for (int block : {16, 32, 128}) {
      for (int n : {1, 5, 9}) {
        for (int k : {16, 37, 100, 300}) {
          W8Matrix w;
          w.n = n;
          w.k = k;
          w.block = block;
          const int blocks = (k + block - 1) / block;
          for (int i = 0; i < n * k; ++i) w.w.push_back(static_cast<int8_t>(code(rng)));
          for (int i = 0; i < n * blocks; ++i) w.scale.push_back(0.001f + 0.01f * std::abs(normal(rng)));
          const int m = 2, ldy = n + 1;
          std::vector<float> x(static_cast<size_t>(m * k));
          for (float& v : x) v = normal(rng);
          std::vector<float> y(static_cast<size_t>(m * ldy), 1.0f);
          gemv_w8(*kernel, w, x.data(), k, m, y.data(), ldy, false);
          for (int r = 0; r < m; ++r) {
            ASSERT_EQ(y[static_cast<size_t>(r * ldy + n)], 1.0f) << kernel->name << " wrote past row " << r;
            for (int j = 0; j < n; ++j) {
              double want = 0, mag = 0;
              for (int i = 0; i < k; ++i) {
                const double t = double{x[static_cast<size_t>(r * k + i)]} * w.w[static_cast<size_t>(j * k + i)] *
                                 w.scale[static_cast<size_t>(j * blocks + i / block)];
                want += t;
                mag += std::abs(t);
              }
              ASSERT_NEAR(y[static_cast<size_t>(r * ldy + j)], want, 1e-5 * mag)
                  << kernel->name << " block " << block << " " << n << "x" << k;
            }
          }
        }
      }
    }
  }
  EXPECT_GE(ran, 1);
  EXPECT_NE(gemv_w8_blocked_pick(allowed).row_blocked, nullptr);
}

}  // namespace
}  // namespace kvant
