// The 7-bit INT8 GEMM entry (gemm_s8.h, gemm_s8_kernels.h): pack_b_s8 marks
// B whose raw values all lie in [-64, 64], and at the AVX2 level picks the
// vpmaddubsw kernel, which is exact only under that bound. Every result is compared
// bit for bit with gemm_u8s8_s32_reference: odd shapes, all zero-point
// combinations, extremes (A = 255 with B = -64 / 64), a single -65 or 65
// sending B back to the wide kernel, the wide kernel's K blocking past its
// stack buffer, no heap allocation per call, and concurrent calls.
#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <tuple>
#include <vector>

#include "alloc_counter.h"
#include "kernel_walk.h"
#include "kernels/cpu_features.h"
#include "kernels/gemm_s8.h"
#include "kernels/gemm_s8_kernels.h"
#include "kvant/status.h"

namespace kvant {
namespace {

bool have_avx2() { return isa_implemented(Isa::kAvx2) && cpu_supports(cpu_features(), Isa::kAvx2); }

struct Case {
  int M, N, K, lda, ldc;
  uint8_t a_zp;
  std::vector<uint8_t> a;
  std::vector<int8_t> b;
  std::vector<int8_t> b_zp;  // empty: none
};

// B uniform in [b_lo, b_hi]; A uniform bytes; optional padding of lda / ldc.
Case make_case(std::mt19937& rng, int M, int N, int K, uint8_t a_zp, bool with_b_zp, int b_lo, int b_hi, int pad) {
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_int_distribution<int> weight(b_lo, b_hi);
  Case c{M, N, K, K + pad, N + pad, a_zp, {}, {}, {}};
  c.a.resize(static_cast<size_t>(M) * c.lda);
  c.b.resize(static_cast<size_t>(K) * N);
  for (auto& v : c.a) v = static_cast<uint8_t>(byte(rng));
  for (auto& v : c.b) v = static_cast<int8_t>(weight(rng));
  if (with_b_zp) {
    c.b_zp.resize(static_cast<size_t>(N));
    for (auto& v : c.b_zp) v = static_cast<int8_t>(byte(rng) - 128);
  }
  return c;
}

std::vector<int32_t> reference(const Case& c) {
  std::vector<int32_t> out(static_cast<size_t>(c.M) * c.ldc, -1);
  gemm_u8s8_s32_reference(c.a.data(), c.lda, c.b.data(), c.N, c.M, c.N, c.K, c.a_zp,
                          c.b_zp.empty() ? nullptr : c.b_zp.data(), out.data(), c.ldc);
  return out;
}

PackedB pack(const Case& c) {
  return pack_b_s8(c.b.data(), c.K, c.N, Isa::kAvx2, c.b_zp.empty() ? nullptr : c.b_zp.data());
}

std::vector<int32_t> run(const Case& c, const PackedB& packed) {
  std::vector<int32_t> out(static_cast<size_t>(c.M) * c.ldc, -1);  // padding must stay -1
  gemm_u8s8_s32(c.a.data(), c.lda, c.M, c.a_zp, packed, out.data(), c.ldc);
  return out;
}

// Element-wise comparison, padding included; reports the first mismatch.
void expect_exact(const Case& c, const PackedB& packed) {
  const auto want = reference(c);
  const auto got = run(c, packed);
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      ADD_FAILURE() << "M=" << c.M << " N=" << c.N << " K=" << c.K << " a_zp=" << int{c.a_zp}
                    << " b_zp=" << (c.b_zp.empty() ? "none" : "per column") << " 7bit=" << packed.fits_7bit << ": C["
                    << i / static_cast<size_t>(c.ldc) << ", " << i % static_cast<size_t>(c.ldc) << "] = " << got[i]
                    << ", reference " << want[i];
      return;
    }
  }
}

TEST(GemmS8SevenBit, RandomOddShapesAreExact) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2";
  const int sizes[] = {1, 3, 4, 5, 16, 17, 31, 63, 64, 100};
  std::mt19937 rng(20261126);
  std::uniform_int_distribution<int> byte(0, 255);
  int checked = 0;
  for (int M : sizes) {
    for (int N : sizes) {
      for (int K : sizes) {
        const int variant = (M + 3 * N + 5 * K) % 6;
        const uint8_t a_zp = variant % 3 == 0 ? 0 : variant % 3 == 1 ? 128 : static_cast<uint8_t>(byte(rng));
        const Case c = make_case(rng, M, N, K, a_zp, variant >= 3, -64, 64, (M + N + K) % 3 == 0 ? 5 : 0);
        const PackedB packed = pack(c);
        ASSERT_TRUE(packed.fits_7bit);
        expect_exact(c, packed);
        ++checked;
        if (HasFailure()) FAIL();
      }
    }
  }
  EXPECT_EQ(checked, 1000);
}

TEST(GemmS8SevenBit, BenchmarkShapesAreExact) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(5);
  for (auto [M, N, K] :
       {std::tuple{128, 768, 768}, std::tuple{1, 3072, 768}, std::tuple{300, 64, 576}, std::tuple{7, 50, 3072}}) {
    for (bool with_b_zp : {false, true}) {
      const Case c = make_case(rng, M, N, K, 131, with_b_zp, -64, 63, 0);
      const PackedB packed = pack(c);
      ASSERT_TRUE(packed.fits_7bit);
      expect_exact(c, packed);
    }
  }
}

// The largest magnitudes: a vpmaddubsw pair is 2 * 255 * +-64 = +-32640,
// just inside int16. Zero points shift the math, not the raw products.
TEST(GemmS8SevenBit, ExtremeValuesAreExact) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2";
  for (int K : {1, 2, 3, 4, 5, 63, 1024, 4099}) {
    for (auto [a_value, b_value, a_zp, b_zp] :
         {std::tuple{255, -64, 0, 0}, std::tuple{255, 64, 0, 0}, std::tuple{255, 63, 0, 0},
          std::tuple{0, -64, 255, 127}, std::tuple{255, -64, 0, 127}, std::tuple{255, 64, 3, -128}}) {
      Case c{5, 19, K, K, 19, static_cast<uint8_t>(a_zp), {}, {}, {}};
      c.a.assign(static_cast<size_t>(c.M) * K, static_cast<uint8_t>(a_value));
      c.b.assign(static_cast<size_t>(K) * c.N, static_cast<int8_t>(b_value));
      if (b_zp != 0) c.b_zp.assign(static_cast<size_t>(c.N), static_cast<int8_t>(b_zp));
      const PackedB packed = pack(c);
      ASSERT_TRUE(packed.fits_7bit);
      EXPECT_EQ(reference(c)[0], K * (a_value - a_zp) * (b_value - b_zp));
      expect_exact(c, packed);
    }
  }
}

// One value outside [-64, 64] anywhere (here the last one) must select the
// wide kernel, where it stays exact; A = 255 makes saturation visible.
TEST(GemmS8SevenBit, OneValueOutsideRangeTakesTheWidePath) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2";
  for (int outlier : {-65, 65, -128, 127}) {
    for (int K : {2, 17, 256}) {
      Case c{3, 17, K, K, 17, 0, {}, {}, {}};
      c.a.assign(static_cast<size_t>(c.M) * K, 255);
      c.b.assign(static_cast<size_t>(K) * c.N, static_cast<int8_t>(outlier < 0 ? -64 : 64));
      c.b.back() = static_cast<int8_t>(outlier);
      const PackedB packed = pack(c);
      EXPECT_FALSE(packed.fits_7bit) << outlier;
      expect_exact(c, packed);
    }
  }
  // At the reference level the flag is recorded but picks no other kernel.
  std::vector<int8_t> small(16, 3);
  const PackedB ref = pack_b_s8(small.data(), 4, 4, Isa::kRef);
  EXPECT_TRUE(ref.fits_7bit);
  EXPECT_STREQ(ref.kernel_name(), "qgemm_u8s8_ref");
}

// The wide kernel widens A into a fixed stack buffer, K in blocks of at most
// 16384: K past that (and odd) accumulates across blocks.
TEST(GemmS8SevenBit, WideKernelLongKIsExact) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(9);
  for (auto [M, N, K] : {std::tuple{9, 17, 16385}, std::tuple{5, 33, 32770}, std::tuple{70, 20, 20001}}) {
    for (bool with_b_zp : {false, true}) {
      const Case c = make_case(rng, M, N, K, 77, with_b_zp, -128, 127, 3);
      const PackedB packed = pack(c);
      ASSERT_FALSE(packed.fits_7bit);
      expect_exact(c, packed);
    }
  }
  // And the 7-bit kernel on the same lengths.
  const Case c = make_case(rng, 9, 17, 20001, 77, true, -64, 64, 3);
  const PackedB packed = pack(c);
  ASSERT_TRUE(packed.fits_7bit);
  expect_exact(c, packed);
}

// The segment form (gemm_u8s8_segments_requant, the implicit-GEMM conv rows):
// rows given by pointers, each the concatenation of `segments` runs of seg_k
// bytes at fixed offsets, must give the bytes gemm_u8s8_requant gives on that
// A gathered into plain rows: odd M (tiles of 1-3 rows), N across panel
// edges, 1-4 segments, extremes, an output stride wider than N (the sentinel
// past N must stay).
TEST(GemmS8SevenBit, SegmentRowsMatchTheRequantizedGemm) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> byte(0, 255), pick(0, 1 << 20);
  int runs = 0;
  for (int m : {1, 2, 3, 4, 5, 7, 13, 64, 67}) {
    for (int n : {1, 15, 16, 17, 40}) {
      for (int segments : {1, 3, 4}) {
        for (int seg_k : {4, 12, 48, 100}) {
          const int K = segments * seg_k;
          const bool extreme = (m + n + segments) % 5 == 0;
          Case c = make_case(rng, m, n, K, static_cast<uint8_t>(byte(rng)), false, -64, 64, 0);
          if (extreme) {
            for (auto& v : c.b) v = static_cast<int8_t>(byte(rng) % 2 == 0 ? -64 : 64);
          }
          // The source bytes, row pointers into them at random places.
          std::vector<uint8_t> source(static_cast<size_t>(4096 + K) * 4);
          for (auto& v : source) v = static_cast<uint8_t>(extreme ? 255 : byte(rng));
          std::vector<int64_t> offsets(static_cast<size_t>(segments));
          for (int s = 0; s < segments; ++s) offsets[static_cast<size_t>(s)] = pick(rng) % 4096;
          std::vector<const uint8_t*> rows(static_cast<size_t>(m));
          std::vector<uint8_t> dense(static_cast<size_t>(m) * K);
          for (int r = 0; r < m; ++r) {
            rows[static_cast<size_t>(r)] = source.data() + pick(rng) % 8192;
            for (int s = 0; s < segments; ++s) {
              for (int k = 0; k < seg_k; ++k) {
                dense[static_cast<size_t>(r) * K + static_cast<size_t>(s) * seg_k + k] =
                    rows[static_cast<size_t>(r)][offsets[static_cast<size_t>(s)] + k];
              }
            }
          }
          const PackedB packed = pack(c);
          ASSERT_TRUE(gemm_u8s8_has_segments(packed, seg_k)) << packed.kernel_name();
          std::vector<int32_t> bias(static_cast<size_t>(n));
          std::vector<float> mult(static_cast<size_t>(n));
          for (int i = 0; i < n; ++i) {
            bias[static_cast<size_t>(i)] = byte(rng) * 40 - 5000;
            mult[static_cast<size_t>(i)] = 1e-4f * static_cast<float>(1 + byte(rng));
          }
          const int ldy = n + 3;
          const int32_t y_zp = byte(rng), lo = byte(rng) % 2 == 0 ? 0 : y_zp;
          std::vector<uint8_t> want(static_cast<size_t>(m) * ldy, 0xA5), got(want.size(), 0xA5);
          std::vector<int32_t> acc(static_cast<size_t>(m) * n);
          gemm_u8s8_requant(dense.data(), K, m, c.a_zp, packed,
                            QGemmRequant{bias.data(), mult.data(), y_zp, lo, 255, false, want.data(), ldy}, acc.data());
          gemm_u8s8_segments_requant(QGemmRowSegments{rows.data(), m, offsets.data(), segments, seg_k}, c.a_zp, packed,
                                     QGemmRequant{bias.data(), mult.data(), y_zp, lo, 255, false, got.data(), ldy});
          ASSERT_EQ(got, want) << "m " << m << " n " << n << " segments " << segments << " seg_k " << seg_k;
          ++runs;
        }
      }
    }
  }
  EXPECT_EQ(runs, 9 * 5 * 3 * 4);
}

// What has no segment form says so, and asking for it anyway is an error.
TEST(GemmS8SevenBit, SegmentFormOnlyWhereItExists) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2";
  std::mt19937 rng(12);
  const Case plain = make_case(rng, 4, 16, 24, 3, false, -64, 64, 0);
  const PackedB packed = pack(plain);
  EXPECT_TRUE(gemm_u8s8_has_segments(packed, 12));
  EXPECT_FALSE(gemm_u8s8_has_segments(packed, 6));   // not a multiple of 4
  EXPECT_FALSE(gemm_u8s8_has_segments(packed, 16));  // does not divide K
  const Case with_zp = make_case(rng, 4, 16, 24, 3, true, -64, 64, 0);
  EXPECT_FALSE(gemm_u8s8_has_segments(pack(with_zp), 12));
  const Case wide = make_case(rng, 4, 16, 24, 3, false, -128, 127, 0);
  const PackedB wide_packed = pack(wide);
  EXPECT_FALSE(gemm_u8s8_has_segments(wide_packed, 12)) << wide_packed.kernel_name();
  const uint8_t* rows[1] = {plain.a.data()};
  const int64_t offsets[2] = {0, 12};
  int32_t bias[16] = {};
  float mult[16] = {};
  uint8_t y[16];
  EXPECT_THROW(gemm_u8s8_segments_requant(QGemmRowSegments{rows, 1, offsets, 2, 12}, 0, wide_packed,
                                          QGemmRequant{bias, mult, 0, 0, 255, false, y, 16}),
               Error);
}

// Steady-state calls allocate nothing, on every entry (DESIGN.md §3).
TEST(GemmS8SevenBit, CallsDoNotAllocate) {
  for (const QGemmKernel* kernel : test::runnable_entries(qgemm_kernels(), selected_isa())) {
    std::mt19937 rng(4);
    for (auto [lo, hi] : {std::pair{-64, 64}, std::pair{-128, 127}}) {
      if (kernel->needs_7bit && hi > 64) continue;
      for (bool with_b_zp : {false, true}) {
        const Case c = make_case(rng, 37, 45, 300, 12, with_b_zp, lo, hi, 0);
        const PackedB packed = pack_b_s8(*kernel, c.b.data(), c.K, c.N, c.b_zp.empty() ? nullptr : c.b_zp.data());
        std::vector<int32_t> out(static_cast<size_t>(c.M) * c.ldc);
        const long before = test::allocation_count();
        gemm_u8s8_s32(c.a.data(), c.lda, c.M, c.a_zp, packed, out.data(), c.ldc);
        EXPECT_EQ(test::allocation_count(), before) << kernel->name << " b in [" << lo << ", " << hi << "]";
      }
    }
  }
}

// Long K on every entry that takes 8-bit weights (the AVX2 wide kernel's K
// blocks, the AMX kernel's 64-byte chunks and its zero-padded tail).
TEST(GemmS8SevenBit, EveryEntryLongKIsExact) {
  std::mt19937 rng(10);
  for (const QGemmKernel* kernel : test::runnable_entries(qgemm_kernels(), selected_isa())) {
    for (auto [M, N, K] : {std::tuple{33, 17, 16385}, std::tuple{48, 64, 4099}, std::tuple{70, 20, 2001}}) {
      const Case c =
          make_case(rng, M, N, K, 77, true, kernel->needs_7bit ? -64 : -128, kernel->needs_7bit ? 64 : 127, 3);
      const PackedB packed = pack_b_s8(*kernel, c.b.data(), c.K, c.N, c.b_zp.data());
      SCOPED_TRACE(kernel->name);
      expect_exact(c, packed);
    }
  }
}

// Several threads on disjoint row ranges with one PackedB, as the runtime
// calls it, give the single-threaded result.
TEST(GemmS8SevenBit, ConcurrentCallsOnDisjointRows) {
  std::mt19937 rng(8);
  for (auto [lo, hi] : {std::pair{-64, 64}, std::pair{-128, 127}}) {
    const Case c = make_case(rng, 203, 70, 500, 100, true, lo, hi, 0);
    const PackedB packed = pack_b_s8(c.b.data(), c.K, c.N, selected_isa(), c.b_zp.data());
    const auto want = reference(c);
    std::vector<int32_t> got(want.size(), -1);
    std::vector<std::thread> threads;
    const int parts = 4;
    for (int t = 0; t < parts; ++t) {
      threads.emplace_back([&, t] {
        const int r0 = c.M * t / parts;
        const int r1 = c.M * (t + 1) / parts;
        for (int rep = 0; rep < 20; ++rep) {
          gemm_u8s8_s32(c.a.data() + static_cast<size_t>(r0) * c.lda, c.lda, r1 - r0, c.a_zp, packed,
                        got.data() + static_cast<size_t>(r0) * c.ldc, c.ldc);
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(got, want) << packed.kernel_name() << " b in [" << lo << ", " << hi << "]";
  }
}

}  // namespace
}  // namespace kvant
