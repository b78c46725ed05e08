// The 4-bit-weight GEMM tables (kernels/gemm_w4.h) against their references,
// for every entry this CPU and KVANT_ISA allow (tests/unit/kernel_walk.h):
// rows of W 1..37 (the 8- and 4-row tiles and their tails), K 16..300 (K not
// a multiple of the block, the padded last chunk), blocks 16/32/64/128, rows
// of x 1..6 and 17 (the 4-row prefill tiles and their tails; 17: the 6 x 16
// tiles of long prompts and a 5-row tail), column ranges that do
// not start at 0, bias or none, guard elements around every output row.
//   W4A32: each entry within 1e-5 of sum_k |x w| (+ |bias|) of a double
//   product of x and the dequantized weights (float(code - zero) * scale, as
//   DequantizeLinear computes it); the entries sum in 8- or 16-lane partial
//   sums, so float rounding errs by about k * 2^-24 of that sum.
//   W4A8: every entry bit-identical to gemm_w4a8_generic (same integer dot
//   products, same float steps in the same order), and the generic one
//   within 1e-5 of a double evaluation of the same formula; on AVX2 CPUs
//   also the VNNI entries' body with AVX2 dot products standing in for
//   vpdpbusd (gemm_w4a8_avx2_vnni_body).
#include "kernels/gemm_w4.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "kernel_walk.h"
#include "kernels/gemm_w4_kernels.h"
#include "kvant/status.h"

namespace kvant {
namespace {

struct Problem {
  int n, k, block, m;
  bool bias, symmetric;
};

struct Data {
  std::vector<int> codes;  // [n, k]
  std::vector<float> scale;
  std::vector<int> zero;  // [n, kb]
  std::vector<float> x, bias;
  W4Matrix w;
};

Data make_data(const Problem& p, std::mt19937& rng, bool extremes) {
  Data d;
  std::uniform_int_distribution<int> code(0, 15);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int kb = (p.k + p.block - 1) / p.block;
  for (int i = 0; i < p.n * p.k; ++i) d.codes.push_back(extremes ? 15 : code(rng));
  for (int i = 0; i < p.n * kb; ++i) {
    d.scale.push_back(0.001f + 0.02f * std::abs(normal(rng)));
    d.zero.push_back(p.symmetric ? 8 : (extremes ? 0 : code(rng)));
  }
  for (int i = 0; i < p.m * p.k; ++i) d.x.push_back(extremes ? 100.0f : normal(rng));
  if (p.bias) {
    for (int i = 0; i < p.n; ++i) d.bias.push_back(normal(rng));
  }
  d.w = w4_pack(
      p.n, p.k, p.block, [&](int r, int kk) { return d.codes[static_cast<size_t>(r * p.k + kk)]; },
      [&](int r, int b) { return d.scale[static_cast<size_t>(r * kb + b)]; },
      [&](int r, int b) { return d.zero[static_cast<size_t>(r * kb + b)]; });
  return d;
}

float dequant(const Data& d, const Problem& p, int r, int kk) {
  const int kb = (p.k + p.block - 1) / p.block;
  const size_t i = static_cast<size_t>(r * kb + kk / p.block);
  return static_cast<float>(d.codes[static_cast<size_t>(r * p.k + kk)] - d.zero[i]) * d.scale[i];
}

std::vector<Problem> problems() {
  std::vector<Problem> out;
  for (int block : {16, 32, 64, 128}) {
    for (int n : {1, 3, 8, 13, 17, 37}) {
      for (int k : {16, 32, 100, 300}) {
        for (int m : {1, 2, 4, 6, 17}) out.push_back({n, k, block, m, (n + m) % 2 == 0, (k + n) % 3 != 0});
      }
    }
  }
  return out;
}

constexpr float kGuard = -7.0f;

TEST(GemmW4, TableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const auto a32 = test::runnable_entries(gemm_w4a32_kernels(), allowed);
  ASSERT_FALSE(a32.empty());
  EXPECT_EQ(a32.back()->isa, Isa::kRef);
  EXPECT_EQ(&gemm_w4a32_pick(allowed), a32.front());
  test::check_coverage(gemm_w4a32_kernels(), allowed, "gemm_w4a32 table");
  const auto a8 = test::runnable_entries(gemm_w4a8_kernels(), allowed);
  ASSERT_FALSE(a8.empty());
  EXPECT_EQ(a8.back()->isa, Isa::kRef);
  EXPECT_EQ(&gemm_w4a8_pick(allowed, 32), a8.front());
  EXPECT_EQ(gemm_w4a8_pick(allowed, 16).isa, Isa::kRef);  // the SIMD entries need blocks of 32 or more
  test::check_coverage(gemm_w4a8_kernels(), allowed, "gemm_w4a8 table");
}

TEST(GemmW4, PackKeepsCodesScalesAndZeroPoints) {
  std::mt19937 rng(3);
  const Problem p{13, 100, 32, 1, false, false};
  const Data d = make_data(p, rng, false);
  EXPECT_EQ(d.w.k_blocks, 4);
  EXPECT_EQ(d.w.k_padded, 128);
  EXPECT_EQ(d.w.codes.size(), 13u * 64u);
  for (int r = 0; r < p.n; ++r) {
    const uint8_t* row = d.w.codes.data() + static_cast<size_t>(r) * d.w.row_bytes();
    for (int kk = 0; kk < d.w.k_padded; ++kk) {
      const int c = (row[(kk / 32) * 16 + kk % 16] >> (kk % 32 < 16 ? 0 : 4)) & 15;
      const int want = kk < p.k ? d.codes[static_cast<size_t>(r * p.k + kk)] : d.zero[static_cast<size_t>(r * 4 + 3)];
      ASSERT_EQ(c, want) << "row " << r << " k " << kk;
    }
    for (int b = 0; b < 4; ++b) {
      EXPECT_EQ(d.w.scale[d.w.param_index(r, b)], d.scale[static_cast<size_t>(r * 4 + b)]);
      EXPECT_EQ(d.w.zero[d.w.param_index(r, b)], d.zero[static_cast<size_t>(r * 4 + b)]);
    }
  }
}

TEST(GemmW4, InterleaveKeepsEveryCodeAndPadsRowsWithTheZeroPoint) {
  std::mt19937 rng(4);
  for (const Problem& p : {Problem{13, 100, 32, 1, false, false}, Problem{3, 16, 16, 1, false, false},
                           Problem{17, 300, 128, 1, false, true}}) {
    Data d = make_data(p, rng, false);
    const int kb = d.w.k_blocks;
    const W4Matrix rows = d.w;
    w4_interleave(d.w, false);
    EXPECT_TRUE(d.w.codes.empty());
    ASSERT_EQ(d.w.codes8.size(), static_cast<size_t>((p.n + 7) / 8) * static_cast<size_t>(d.w.k_padded) * 4);
    for (int r = 0; r < (p.n + 7) / 8 * 8; ++r) {
      for (int kk = 0; kk < d.w.k_padded; ++kk) {
        const size_t chunk =
            static_cast<size_t>(r / 8) * static_cast<size_t>(d.w.k_padded / 8) + static_cast<size_t>(kk / 8);
        const int c = (d.w.codes8[chunk * 32 + static_cast<size_t>((r % 8) * 4 + kk % 4)] >> (kk % 8 < 4 ? 0 : 4)) & 15;
        int want = 8;  // rows past N: the padded zero point
        if (r < p.n) {
          want = kk < p.k ? d.codes[static_cast<size_t>(r * p.k + kk)]
                          : d.zero[static_cast<size_t>(r * kb + std::min(kk / p.block, kb - 1))];
        }
        ASSERT_EQ(c, want) << "n " << p.n << " row " << r << " k " << kk;
      }
    }
    // The drivers refuse the layout they do not read.
    std::vector<float> x(static_cast<size_t>(d.w.k_padded)), y(static_cast<size_t>(p.n));
    EXPECT_THROW(
        gemm_w4a32(gemm_w4a32_kernels().back(), d.w, x.data(), d.w.k_padded, 1, y.data(), p.n, nullptr, 0, p.n), Error);
    std::vector<int8_t> xq(static_cast<size_t>(d.w.k_padded));
    std::vector<float> xs(static_cast<size_t>(kb));
    std::vector<int32_t> xsum(static_cast<size_t>(kb));
    EXPECT_THROW(gemm_w4a8(gemm_w4a8_kernels().back(), rows, xq.data(), xs.data(), xsum.data(), 1, y.data(), p.n,
                           nullptr, 0, p.n),
                 Error);
  }
}

TEST(GemmW4, W4A32EntriesMatchTheDequantizedProduct) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  std::mt19937 rng(21);
  for (const GemmW4A32Kernel* kernel : test::runnable_entries(gemm_w4a32_kernels(), allowed)) {
    for (const Problem& p : problems()) {
      for (bool extremes : {false, true}) {
        if (extremes && p.m != 2) continue;
        const Data d = make_data(p, rng, extremes);
        std::vector<float> xpad(static_cast<size_t>(p.m) * static_cast<size_t>(d.w.k_padded));
        int64_t ldx = 0;
        const float* x = w4_pad_x(d.w, d.x.data(), p.k, p.m, xpad.data(), ldx);
        const int ldy = p.n + 2;
        const int n0 = p.n > 8 ? 8 : 0;  // a range that does not start at 0
        std::vector<float> y(static_cast<size_t>(p.m * ldy), kGuard);
        gemm_w4a32(*kernel, d.w, x, ldx, p.m, y.data(), ldy, p.bias ? d.bias.data() : nullptr, n0, p.n);
        for (int i = 0; i < p.m; ++i) {
          for (int j = 0; j < ldy; ++j) {
            const float got = y[static_cast<size_t>(i * ldy + j)];
            if (j < n0 || j >= p.n) {
              ASSERT_EQ(got, kGuard) << kernel->name << " wrote outside [n0, n1) at " << i << "," << j;
              continue;
            }
            double want = p.bias ? d.bias[static_cast<size_t>(j)] : 0.0, mag = std::abs(want);
            for (int kk = 0; kk < p.k; ++kk) {
              const double t = double{d.x[static_cast<size_t>(i * p.k + kk)]} * dequant(d, p, j, kk);
              want += t;
              mag += std::abs(t);
            }
            ASSERT_NEAR(got, want, 1e-5 * mag + 1e-30)
                << kernel->name << " n " << p.n << " k " << p.k << " block " << p.block << " m " << p.m << " at " << i
                << "," << j << (extremes ? " (extremes)" : "");
          }
        }
      }
    }
  }
}

TEST(GemmW4, QuantizedActivationsRoundToTheBlockScale) {
  std::mt19937 rng(5);
  const Problem p{8, 100, 32, 3, false, true};
  Data d = make_data(p, rng, false);
  d.x[5] = 0.0f;
  for (int kk = 32; kk < 64; ++kk) d.x[static_cast<size_t>(kk)] = 0.0f;  // an all-zero block: scale 0, codes 0
  std::vector<int8_t> xq(static_cast<size_t>(p.m * d.w.k_padded), 99);
  std::vector<float> xs(static_cast<size_t>(p.m * d.w.k_blocks));
  std::vector<int32_t> xsum(xs.size());
  w4_quantize_x(d.w, d.x.data(), p.k, p.m, xq.data(), xs.data(), xsum.data());
  EXPECT_EQ(xs[1], 0.0f);
  for (int i = 0; i < p.m; ++i) {
    for (int b = 0; b < d.w.k_blocks; ++b) {
      float amax = 0;
      int32_t sum = 0;
      for (int kk = b * 32; kk < std::min(p.k, (b + 1) * 32); ++kk)
        amax = std::max(amax, std::abs(d.x[static_cast<size_t>(i * p.k + kk)]));
      const float s = xs[static_cast<size_t>(i * d.w.k_blocks + b)];
      EXPECT_EQ(s, amax / 127.0f);
      for (int kk = b * 32; kk < (b + 1) * 32; ++kk) {
        const int q = xq[static_cast<size_t>(i * d.w.k_padded + kk)];
        sum += q;
        ASSERT_LE(std::abs(q), 127);
        if (kk >= p.k) {
          ASSERT_EQ(q, 0) << "padding past K";
          continue;
        }
        ASSERT_LE(std::abs(q * s - d.x[static_cast<size_t>(i * p.k + kk)]), 0.5f * s * 1.0001f + 1e-30f);
      }
      EXPECT_EQ(sum, xsum[static_cast<size_t>(i * d.w.k_blocks + b)]);
    }
  }
}

TEST(GemmW4, W4A8EntriesAreBitExactWithTheReference) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  std::mt19937 rng(33);
  const GemmW4A8Kernel& reference = gemm_w4a8_kernels().back();
  ASSERT_EQ(reference.isa, Isa::kRef);
  for (const Problem& p : problems()) {
    for (bool extremes : {false, true}) {
      if (extremes && p.m != 2) continue;
      Data d = make_data(p, rng, extremes);
      w4_interleave(d.w, false);
      const size_t kp = static_cast<size_t>(d.w.k_padded), kb = static_cast<size_t>(d.w.k_blocks);
      std::vector<int8_t> xq(static_cast<size_t>(p.m) * kp);
      std::vector<float> xs(static_cast<size_t>(p.m) * kb);
      std::vector<int32_t> xsum(xs.size());
      w4_quantize_x(d.w, d.x.data(), p.k, p.m, xq.data(), xs.data(), xsum.data());
      const int ldy = p.n + 2;
      const int n0 = p.n > 8 ? 8 : 0;
      const float* bias = p.bias ? d.bias.data() : nullptr;
      std::vector<float> want(static_cast<size_t>(p.m * ldy), kGuard);
      gemm_w4a8(reference, d.w, xq.data(), xs.data(), xsum.data(), p.m, want.data(), ldy, bias, n0, p.n);
      // The reference against a double evaluation of the same formula.
      for (int i = 0; i < p.m; ++i) {
        for (int j = n0; j < p.n; ++j) {
          double v = p.bias ? d.bias[static_cast<size_t>(j)] : 0.0, mag = std::abs(v);
          for (size_t b = 0; b < kb; ++b) {
            int64_t dot = 0;
            for (int kk = static_cast<int>(b) * p.block; kk < std::min(p.k, static_cast<int>(b + 1) * p.block); ++kk) {
              dot += int64_t{xq[i * kp + static_cast<size_t>(kk)]} *
                     (d.codes[static_cast<size_t>(j * p.k + kk)] - d.zero[static_cast<size_t>(j) * kb + b]);
            }
            const double t = static_cast<double>(dot) * xs[i * kb + b] * d.scale[static_cast<size_t>(j) * kb + b];
            v += t;
            mag += std::abs(t);
          }
          ASSERT_NEAR(want[static_cast<size_t>(i * ldy + j)], v, 1e-5 * mag + 1e-30) << i << "," << j;
        }
      }
      std::vector<const GemmW4A8Kernel*> kernels = test::runnable_entries(gemm_w4a8_kernels(), allowed);
#if defined(__x86_64__)
      // The VNNI entries' body (gemm_w4a8_body.inc's dot32), run with AVX2 dot products.
      static constexpr GemmW4A8Kernel kVnniBody{Isa::kAvx2, "gemm_w4a8_avx2_vnni_body", 32, gemm_w4a8_avx2_vnni_body};
      if (entry_runs(kVnniBody, allowed, cpu_features())) kernels.push_back(&kVnniBody);
#endif
      for (const GemmW4A8Kernel* kernel : kernels) {
        if (p.block < kernel->min_block) continue;
        std::vector<float> got(want.size(), kGuard);
        gemm_w4a8(*kernel, d.w, xq.data(), xs.data(), xsum.data(), p.m, got.data(), ldy, bias, n0, p.n);
        ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
            << kernel->name << " n " << p.n << " k " << p.k << " block " << p.block << " m " << p.m
            << (extremes ? " (extremes)" : "");
      }
    }
  }
}

}  // namespace
}  // namespace kvant
