// gemv_w8 against a double-precision dot product of x and the dequantized rows.
#include "kernels/gemv_w8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace kvant {
namespace {

TEST(GemvW8, MatchesDequantizedFloatProduct) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> code(-128, 127);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int n : {1, 3, 4, 7, 64, 129}) {
    for (int k : {1, 5, 8, 17, 512}) {
      for (int m : {1, 3}) {
        W8Matrix w;
        w.n = n;
        w.k = k;
        for (int i = 0; i < n * k; ++i) w.w.push_back(static_cast<int8_t>(code(rng)));
        for (int i = 0; i < n; ++i) w.scale.push_back(0.001f + 0.01f * std::abs(normal(rng)));
        std::vector<float> x(static_cast<size_t>(m * k));
        for (float& v : x) v = normal(rng);
        std::vector<float> y(static_cast<size_t>(m * n), 1.0f);
        for (bool acc : {false, true}) {
          std::vector<float> got = y;
          gemv_w8(w, x.data(), k, m, got.data(), n, acc);
          for (int r = 0; r < m; ++r) {
            for (int j = 0; j < n; ++j) {
              double want = 0, mag = 0;
              for (int i = 0; i < k; ++i) {
                const double t = double{x[static_cast<size_t>(r * k + i)]} * w.w[static_cast<size_t>(j * k + i)] *
                                 w.scale[static_cast<size_t>(j)];
                want += t;
                mag += std::abs(t);
              }
              if (acc) want += 1.0;
              ASSERT_NEAR(got[static_cast<size_t>(r * n + j)], want, 1e-5 * (mag + 1.0)) << n << "x" << k << " m=" << m;
            }
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvant
