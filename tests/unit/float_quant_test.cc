// The small kernel tables around the integer GEMMs, every entry the CPU runs
// against the reference entry, bit for bit, on odd sizes (tails), extremes
// and NaN (STYLE.md §6): dynamic quantization and the dequantizing epilogue
// (dynamic_quant.h), the byte transpose and the row requantization
// (layout_u8.h). The dynamic quantization also against the DynamicQuantizeLinear
// operator, which defines it.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernel_walk.h"
#include "kernels/dynamic_quant.h"
#include "kernels/gap_u8.h"
#include "kernels/layout_u8.h"
#include "kernels/lookup_u8.h"
#include "ops/op_registry.h"

namespace kvant {
namespace {

const int kSizes[] = {0, 1, 3, 7, 8, 15, 16, 17, 31, 33, 63, 65, 255, 1000};

std::vector<float> random_floats(int64_t n, uint32_t seed, float spread = 3.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(rng);
  return v;
}

TEST(FloatQuant, TableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  test::check_coverage(float_quant_kernels(), allowed, "float_quant table");
  test::check_coverage(transpose_u8_kernels(), allowed, "transpose_u8 table");
  test::check_coverage(requant_rows_kernels(), allowed, "requant_rows table");
}

TEST(FloatQuant, RangeAndQuantizeMatchTheReferenceAndTheOperator) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const FloatQuantKernel& ref = float_quant_kernels().back();
  const OpDef* op = find_op("", "DynamicQuantizeLinear");
  ASSERT_NE(op, nullptr);
  for (const FloatQuantKernel* k : test::runnable_entries(float_quant_kernels(), allowed)) {
    for (int n : kSizes) {
      std::vector<float> x = random_floats(n, static_cast<uint32_t>(n) + 1);
      if (n > 2) x[static_cast<size_t>(n) / 2] = 0.5f * 3.0f;  // a tie after scaling is likely somewhere
      float lo = 1, hi = -1, rlo = 2, rhi = -2;
      ASSERT_TRUE(k->range(x.data(), n, &lo, &hi)) << k->name;
      ASSERT_TRUE(ref.range(x.data(), n, &rlo, &rhi));
      EXPECT_EQ(lo, rlo) << k->name << " n=" << n;
      EXPECT_EQ(hi, rhi) << k->name << " n=" << n;
      const float scale = (hi - lo) / 255.0f;
      if (scale <= 0.0f) continue;
      const int32_t zp = static_cast<int32_t>(std::clamp(std::nearbyint(0.0 - lo / scale), 0.0, 255.0));
      std::vector<uint8_t> q(static_cast<size_t>(n) + 1, 0xA5), want(static_cast<size_t>(n) + 1, 0xA5);
      k->quantize(x.data(), n, scale, zp, q.data());
      ref.quantize(x.data(), n, scale, zp, want.data());
      EXPECT_EQ(q, want) << k->name << " n=" << n;  // the last byte is a sentinel
      // The operator on the same data.
      Node node = make_node("dq", "DynamicQuantizeLinear", {"x"}, {"y", "s", "z"});
      Tensor xt = Tensor::from_vector<float>(x, {n});
      KernelContext ctx{node, 13, {&xt}, {}, nullptr};
      ctx.outputs.resize(3);
      op->run(ctx);
      ASSERT_EQ(std::memcmp(ctx.outputs[0].raw(), q.data(), static_cast<size_t>(n)), 0) << k->name << " n=" << n;
    }
    std::vector<float> with_nan = random_floats(37, 5);
    with_nan[36] = std::numeric_limits<float>::quiet_NaN();
    float lo = 0, hi = 0;
    EXPECT_FALSE(k->range(with_nan.data(), 37, &lo, &hi)) << k->name;
    with_nan[36] = 1.0f;
    with_nan[3] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_FALSE(k->range(with_nan.data(), 37, &lo, &hi)) << k->name;
  }
}

TEST(FloatQuant, DequantRowsMatchTheReference) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const FloatQuantKernel& ref = float_quant_kernels().back();
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> acc_dist(-3000000, 3000000);
  for (const FloatQuantKernel* k : test::runnable_entries(float_quant_kernels(), allowed)) {
    for (int n : {1, 7, 16, 17, 40}) {
      const int rows = 5, stride = n + 3;
      std::vector<int32_t> acc(static_cast<size_t>(rows) * stride), ibias(static_cast<size_t>(n));
      for (auto& v : acc) v = acc_dist(rng);
      for (auto& v : ibias) v = acc_dist(rng) / 100;
      const std::vector<float> mult = random_floats(n, 7, 1e-4f), fbias = random_floats(n, 8);
      for (int variant = 0; variant < 4; ++variant) {
        const bool with_i = (variant & 1) != 0, with_f = (variant & 2) != 0;
        const float lo = variant == 3 ? 0.0f : -std::numeric_limits<float>::infinity();
        const float hi = variant == 3 ? 6.0f : std::numeric_limits<float>::infinity();
        std::vector<float> got(static_cast<size_t>(rows) * stride, -7.0f), want = got;
        auto args = [&](float* out) {
          return DequantRowsArgs{acc.data(),
                                 stride,
                                 rows,
                                 n,
                                 with_i ? ibias.data() : nullptr,
                                 mult.data(),
                                 with_f ? fbias.data() : nullptr,
                                 lo,
                                 hi,
                                 out,
                                 stride};
        };
        k->dequant(args(got.data()));
        ref.dequant(args(want.data()));
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
            << k->name << " n=" << n << " variant " << variant;
      }
    }
  }
}

// dequant_t: the same values as dequant, each row stored as a column (the
// AVX2 entry's 8x8 blocks and both tails); quantize_centered: quantize's
// codes minus the zero point.
TEST(FloatQuant, TransposedDequantAndCenteredCodesMatchTheReference) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const FloatQuantKernel& ref = float_quant_kernels().back();
  std::mt19937 rng(4);
  std::uniform_int_distribution<int32_t> acc_dist(-3000000, 3000000);
  for (const FloatQuantKernel* k : test::runnable_entries(float_quant_kernels(), allowed)) {
    for (int n : {1, 7, 8, 16, 19}) {
      for (int rows : {1, 8, 13, 24}) {
        const int stride = n + 3, out_stride = rows + 5;
        std::vector<int32_t> acc(static_cast<size_t>(rows) * stride), ibias(static_cast<size_t>(n));
        for (auto& v : acc) v = acc_dist(rng);
        for (auto& v : ibias) v = acc_dist(rng) / 100;
        const std::vector<float> mult = random_floats(n, 9, 1e-4f), fbias = random_floats(n, 10);
        for (int variant = 0; variant < 5; ++variant) {
          const bool with_i = (variant & 1) != 0, with_f = (variant & 2) != 0 || variant == 4;
          const float lo = variant == 3 ? 0.0f : -std::numeric_limits<float>::infinity();
          const float hi = variant == 3 ? 6.0f : std::numeric_limits<float>::infinity();
          std::vector<float> fb = fbias;
          if (variant == 4) fb[static_cast<size_t>(n) / 2] = std::numeric_limits<float>::quiet_NaN();  // a NaN passes
          std::vector<float> got(static_cast<size_t>(n) * out_stride, -7.0f), again = got;
          DequantRowsArgs args{acc.data(),
                               stride,
                               rows,
                               n,
                               with_i ? ibias.data() : nullptr,
                               mult.data(),
                               with_f ? fb.data() : nullptr,
                               lo,
                               hi,
                               got.data(),
                               out_stride};
          float range[3] = {0.0f, 0.0f, 0.0f};
          k->dequant_t(args, variant % 2 == 0 ? range : nullptr);
          args.out = again.data();
          k->dequant_t(args, nullptr);  // the same values with or without the range
          ASSERT_EQ(std::memcmp(got.data(), again.data(), got.size() * sizeof(float)), 0) << k->name;
          // The reference's values, as dequant_rows defines them (std::min(std::max(v, lo), hi): NaN passes).
          std::vector<float> rows_out(acc.size(), 0.0f);
          float want_lo = 0.0f, want_hi = 0.0f;
          bool want_nan = false;
          for (int r = 0; r < rows; ++r) {
            for (int j = 0; j < n; ++j) {
              const auto jj = static_cast<size_t>(j);
              const int32_t a = acc[static_cast<size_t>(r) * stride + jj];
              const int32_t c =
                  with_i ? static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(ibias[jj])) : a;
              float v = static_cast<float>(c) * mult[jj];
              if (with_f) v += fb[jj];
              v = std::min(std::max(v, lo), hi);
              rows_out[static_cast<size_t>(r) * stride + jj] = v;
              want_nan = want_nan || std::isnan(v);
              if (!std::isnan(v)) {
                want_lo = std::min(want_lo, v);
                want_hi = std::max(want_hi, v);
              }
            }
          }
          for (int j = 0; j < n; ++j) {
            for (int r = 0; r < out_stride; ++r) {
              const float want = r < rows ? rows_out[static_cast<size_t>(r) * stride + j] : -7.0f;  // untouched
              const float g = got[static_cast<size_t>(j) * out_stride + r];
              if (std::isnan(want)) {
                ASSERT_TRUE(std::isnan(g)) << k->name << " n=" << n << " rows=" << rows << " at " << j << "," << r;
                continue;
              }
              ASSERT_EQ(std::memcmp(&g, &want, sizeof(float)), 0)
                  << k->name << " n=" << n << " rows=" << rows << " variant " << variant << " at " << j << "," << r;
            }
          }
          if (variant % 2 != 0) continue;
          EXPECT_EQ(range[2] != 0.0f, want_nan) << k->name << " n=" << n << " rows=" << rows;
          if (!want_nan) {
            EXPECT_EQ(range[0], want_lo) << k->name << " n=" << n << " rows=" << rows << " variant " << variant;
            EXPECT_EQ(range[1], want_hi) << k->name << " n=" << n << " rows=" << rows << " variant " << variant;
          }
        }
      }
    }
    for (int n : kSizes) {
      std::vector<float> x = random_floats(n, static_cast<uint32_t>(n) + 2);
      float lo = 0, hi = 0;
      ASSERT_TRUE(ref.range(x.data(), n, &lo, &hi));
      const float scale = (hi - lo) / 255.0f;
      if (scale <= 0.0f) continue;
      const int32_t zp = static_cast<int32_t>(std::clamp(std::nearbyint(0.0 - lo / scale), 0.0, 255.0));
      std::vector<uint8_t> q(static_cast<size_t>(n));
      ref.quantize(x.data(), n, scale, zp, q.data());
      std::vector<float> got(static_cast<size_t>(n) + 1, -1000.0f);
      k->quantize_centered(x.data(), n, scale, zp, got.data());
      for (int i = 0; i < n; ++i)
        ASSERT_EQ(got[static_cast<size_t>(i)], static_cast<float>(q[static_cast<size_t>(i)] - zp))
            << k->name << " n=" << n;
      EXPECT_EQ(got.back(), -1000.0f) << k->name << " wrote past n=" << n;
    }
  }
}

TEST(LayoutU8, TransposeAndRequantMatchTheReference) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> byte(0, 255);
  const TransposeU8Kernel& tref = transpose_u8_kernels().back();
  for (const TransposeU8Kernel* k : test::runnable_entries(transpose_u8_kernels(), allowed)) {
    for (int rows : {1, 3, 16, 17, 40}) {
      for (int cols : {1, 5, 16, 31, 64}) {
        std::vector<uint8_t> src(static_cast<size_t>(rows) * (cols + 2));
        for (auto& v : src) v = static_cast<uint8_t>(byte(rng));
        for (uint8_t flip : {uint8_t{0}, uint8_t{0x80}}) {
          std::vector<uint8_t> got(static_cast<size_t>(cols) * (rows + 3), 0xA5), want = got;
          k->run(src.data(), cols + 2, rows, cols, got.data(), rows + 3, flip);
          tref.run(src.data(), cols + 2, rows, cols, want.data(), rows + 3, flip);
          EXPECT_EQ(got, want) << k->name << " " << rows << "x" << cols;
        }
      }
    }
  }
  const RequantRowsKernel& rref = requant_rows_kernels().back();
  std::uniform_int_distribution<int32_t> acc_dist(-2000000, 2000000);
  for (const RequantRowsKernel* k : test::runnable_entries(requant_rows_kernels(), allowed)) {
    for (int n : {1, 8, 15, 16, 33}) {
      const int rows = 4, stride = n + 1;
      std::vector<int32_t> acc(static_cast<size_t>(rows) * stride), bias(static_cast<size_t>(n));
      for (auto& v : acc) v = acc_dist(rng);
      for (auto& v : bias) v = acc_dist(rng) / 10;
      std::vector<float> mult = random_floats(n, 4, 1e-4f);
      for (auto& m : mult) m = std::abs(m);
      for (auto [zp, lo, hi, is_signed] : {std::tuple{128, 0, 255, false}, std::tuple{0, -128, 127, true},
                                           std::tuple{-5, -5, 100, true}, std::tuple{3, 3, 255, false}}) {
        std::vector<uint8_t> got(static_cast<size_t>(rows) * stride, 0xA5), want = got;
        auto args = [&](uint8_t* out) {
          return RequantRowsArgs{acc.data(), stride, rows, n,         bias.data(), mult.data(),
                                 zp,         lo,     hi,   is_signed, out,         stride};
        };
        k->run(args(got.data()));
        rref.run(args(want.data()));
        EXPECT_EQ(got, want) << k->name << " n=" << n << " zp " << zp;
      }
    }
  }
}

}  // namespace
}  // namespace kvant

namespace kvant {
namespace {

// The byte lookup (lookup_u8.h): every entry against the reference on odd
// lengths and every code, with a sentinel past the end.
TEST(LookupU8, EveryEntryMatchesTheReference) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  test::check_coverage(lookup_u8_kernels(), allowed, "lookup_u8 table");
  std::mt19937 rng(12);
  std::uniform_int_distribution<int> byte(0, 255);
  // Random tables, and ones whose neighbouring 16-byte chunks are equal or
  // differ in one bit (the AVX2 entry XORs chunks together).
  std::vector<std::array<uint8_t, 256>> tables(4);
  for (auto& v : tables[0]) v = static_cast<uint8_t>(byte(rng));
  for (auto& v : tables[1]) v = static_cast<uint8_t>(byte(rng));
  for (size_t i = 0; i < 256; ++i) tables[2][i] = static_cast<uint8_t>(i);
  for (size_t i = 0; i < 256; ++i) tables[3][i] = static_cast<uint8_t>((i & 15) ^ ((i >> 4) == 9 ? 0x80 : 0));
  const LookupU8Kernel& ref = lookup_u8_kernels().back();
  for (const LookupU8Kernel* k : test::runnable_entries(lookup_u8_kernels(), allowed)) {
    for (const auto& table : tables) {
      for (int n : {0, 1, 3, 7, 17, 31, 32, 33, 49, 63, 64, 65, 256, 1000}) {
        std::vector<uint8_t> x(static_cast<size_t>(n));
        for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>(i < 256 ? 255 - i : byte(rng));
        std::vector<uint8_t> got(static_cast<size_t>(n) + 1, 0xA5), want = got;
        k->run(table.data(), x.data(), got.data(), n);
        ref.run(table.data(), x.data(), want.data(), n);
        EXPECT_EQ(got, want) << k->name << " n=" << n;
      }
    }
    // Every code in every position of a vector: 256 rotations of 0..255.
    std::vector<uint8_t> x(256 * 257);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<uint8_t>(i % 257);
    std::vector<uint8_t> got(x.size()), want(x.size());
    k->run(tables[0].data(), x.data(), got.data(), static_cast<int64_t>(x.size()));
    ref.run(tables[0].data(), x.data(), want.data(), static_cast<int64_t>(x.size()));
    EXPECT_EQ(got, want) << k->name << " every code at every offset";
  }
}

// Many planes in one call (run_planes), each through its own table, on
// plane sizes either side of the AVX2 entry's switch to scalar code (64).
TEST(LookupU8, EveryEntryMatchesTheReferenceOnPlanes) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  std::mt19937 rng(14);
  std::uniform_int_distribution<int> byte(0, 255);
  const int64_t planes = 37;
  std::vector<uint8_t> tables(static_cast<size_t>(planes) * 256);
  for (auto& v : tables) v = static_cast<uint8_t>(byte(rng));
  const LookupU8Kernel& ref = lookup_u8_kernels().back();
  for (const LookupU8Kernel* k : test::runnable_entries(lookup_u8_kernels(), allowed)) {
    for (int64_t inner : {1, 3, 4, 16, 17, 49, 63, 64, 65, 100}) {
      const auto size = static_cast<size_t>(inner * planes);
      std::vector<uint8_t> x(size);
      for (auto& v : x) v = static_cast<uint8_t>(byte(rng));
      std::vector<uint8_t> got(size + 1, 0xA5), want = got;
      k->run_planes(tables.data(), x.data(), got.data(), inner, planes);
      for (int64_t p = 0; p < planes; ++p) {
        ref.run(tables.data() + 256 * p, x.data() + inner * p, want.data() + inner * p, inner);
      }
      EXPECT_EQ(got, want) << k->name << " inner=" << inner;
    }
  }
}

}  // namespace
}  // namespace kvant

namespace kvant {
namespace {

// Channel sums for the NHWC global average pool (gap_u8.h): exact, so every
// entry equals the reference bit for bit whatever its order.
TEST(GapU8, EveryEntryMatchesTheReference) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  test::check_coverage(gap_u8_kernels(), allowed, "gap_u8 table");
  std::mt19937 rng(13);
  std::uniform_int_distribution<int> byte(0, 255);
  for (float scale : {0.0173f, 3.1e-5f, 117.0f}) {
    float table[256];
    for (int v = 0; v < 256; ++v) table[v] = static_cast<float>(v - 131) * scale;
    const GapU8Kernel& ref = gap_u8_kernels().back();
    for (const GapU8Kernel* k : test::runnable_entries(gap_u8_kernels(), allowed)) {
      for (auto [pixels, channels] : {std::pair{1, 1}, std::pair{49, 17}, std::pair{3136, 32}, std::pair{7, 1152}}) {
        std::vector<uint8_t> x(static_cast<size_t>(pixels) * channels);
        for (auto& v : x) v = static_cast<uint8_t>(byte(rng));
        std::vector<double> got(static_cast<size_t>(channels) + 1, -1.0), want = got;
        k->run(x.data(), pixels, channels, table, got.data());
        ref.run(x.data(), pixels, channels, table, want.data());
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(double)), 0)
            << k->name << " " << pixels << "x" << channels << " scale " << scale;
      }
    }
  }
}

}  // namespace
}  // namespace kvant
