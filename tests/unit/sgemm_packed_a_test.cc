// The sgemm additions for prepacked weights and threads (kernels/sgemm.h):
// sgemm_packed_a (A packed once, per-row bias, activation) against a
// double-accumulated oracle for every table entry this CPU and KVANT_ISA allow
// and every M/N/K tail of the 6x16 and 12x32 tiles, and the threaded
// sgemm_packed overload bit-identical to the single-thread one for 1, 2, 3
// threads, splitting rows (large M) and columns (small M).
// Tolerance as in sgemm_test.cc: 1e-5 of sum |a b| + |bias| plus 1e-6.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernel_walk.h"
#include "kernels/sgemm.h"
#include "kernels/sgemm_kernels.h"
#include "kvant/status.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

std::vector<float> random_vector(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

TEST(SgemmPackedA, MatchesOracleWithRowBiasAndActivation) {
  std::mt19937 rng(21);
  const int sizes[] = {1, 5, 6, 7, 16, 17, 33, 257, 300};
  const SgemmActivation acts[] = {SgemmActivation::none(), SgemmActivation::relu(), SgemmActivation::clip(-1, 2)};
  int n_case = 0;
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  for (const SgemmKernel* kernel : test::runnable_entries(sgemm_kernels(), allowed)) {
    for (int M : {1, 5, 6, 11, 12, 13, 25, 64}) {
      for (int N : sizes) {
        for (int K : sizes) {
          const SgemmActivation act = acts[n_case++ % 3];
          const bool with_bias = n_case % 2 == 0;
          const int ldc = N + 3;
          const std::vector<float> A = random_vector(static_cast<size_t>(M) * K, rng);
          const std::vector<float> B = random_vector(static_cast<size_t>(K) * N, rng);
          const std::vector<float> bias = random_vector(static_cast<size_t>(M), rng);
          std::vector<float> C(static_cast<size_t>(M) * ldc, 7.0f);
          const PackedSgemmA packed = sgemm_pack_a(*kernel, A.data(), M, K);
          sgemm_packed_a(M, N, K, packed, B.data(), N, C.data(), ldc, with_bias ? bias.data() : nullptr, act);
          for (int i = 0; i < M; ++i) {
            for (int j = 0; j < ldc; ++j) {
              const float got = C[static_cast<size_t>(i) * ldc + j];
              if (j >= N) {
                ASSERT_EQ(got, 7.0f) << "column past N written";
                continue;
              }
              double sum = with_bias ? bias[i] : 0.0, mag = with_bias ? std::fabs(bias[i]) : 0.0;
              for (int k = 0; k < K; ++k) {
                const double p =
                    static_cast<double>(A[static_cast<size_t>(i) * K + k]) * B[static_cast<size_t>(k) * N + j];
                sum += p;
                mag += std::fabs(p);
              }
              if (act.kind == SgemmActivation::Kind::kRelu) sum = std::max(sum, 0.0);
              if (act.kind == SgemmActivation::Kind::kClip) sum = std::min(std::max(sum, -1.0), 2.0);
              ASSERT_LE(std::fabs(got - sum), 1e-5 * mag + 1e-6)
                  << kernel->name << " M=" << M << " N=" << N << " K=" << K << " at " << i << "," << j;
            }
          }
        }
      }
    }
  }
}

// The narrow tail (sgemm_kernels.h: the last 1-4 columns, vectorised over
// rows) gives the bits the full tile gives the same columns: a block of nc
// columns against the same block computed 16 wider (no tail), for K of one
// and two blocks, B packed and through a row table, with row bias, each
// activation and a residual, rows 1 to 50 from row 0 and from row 6.
TEST(SgemmPackedA, NarrowTailMatchesTheFullTileBitForBit) {
  std::mt19937 rng(23);
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const SgemmActivation acts[] = {SgemmActivation::none(), SgemmActivation::relu(), SgemmActivation::clip(-1, 2)};
  int n_case = 0, narrow_runs = 0;
  for (const SgemmKernel* kernel : test::runnable_entries(sgemm_kernels(), allowed)) {
    if (kernel->narrow != nullptr) ++narrow_runs;
    for (int M : {1, 5, 13, 50}) {
      for (int K : {7, 300}) {
        for (int nc : {1, 2, 3, 4, 5, 17, 20, 49}) {
          for (bool rows : {false, true}) {
            if (rows && !kernel->b_row_table) continue;
            const SgemmActivation act = acts[n_case++ % 3];
            const int m0 = M > 6 && n_case % 2 == 0 ? 6 : 0;
            const int wide = (nc + kSgemmNr - 1) / kSgemmNr * kSgemmNr + kSgemmNr;
            const std::vector<float> A = random_vector(static_cast<size_t>(M) * K, rng);
            const std::vector<float> bias = random_vector(static_cast<size_t>(M), rng);
            const std::vector<float> residual = random_vector(static_cast<size_t>(M) * wide, rng);
            const PackedSgemmA packed = sgemm_pack_a(*kernel, A.data(), M, K);
            // B as packed 16-column panels of each K block, or row-major
            // (row stride `wide`) read through a row table.
            const std::vector<float> B = random_vector(static_cast<size_t>(K) * wide, rng);
            std::vector<float> want(static_cast<size_t>(M) * wide, 7.0f), got = want;
            for (int k0 = 0; k0 < K; k0 += kSgemmKc) {
              const int kl = std::min(kSgemmKc, K - k0);
              std::vector<float> panels(static_cast<size_t>(kl) * wide);
              std::vector<int64_t> offsets(static_cast<size_t>(kl));
              for (int k = 0; k < kl; ++k) {
                offsets[static_cast<size_t>(k)] = static_cast<int64_t>(k0 + k) * wide;
                for (int j = 0; j < wide; ++j) {
                  panels[static_cast<size_t>(j / kSgemmNr) * kSgemmNr * kl + static_cast<size_t>(k) * kSgemmNr +
                         j % kSgemmNr] = B[static_cast<size_t>(k0 + k) * wide + j];
                }
              }
              const float* b = rows ? B.data() : panels.data();
              const int64_t* b_rows = rows ? offsets.data() : nullptr;
              sgemm_packed_a_block(packed, m0, M, k0, b, wide, want.data(), wide, bias.data(), act, b_rows,
                                   residual.data());
              sgemm_packed_a_block(packed, m0, M, k0, b, nc, got.data(), wide, bias.data(), act, b_rows,
                                   residual.data());
            }
            for (int i = 0; i < M; ++i) {
              for (int j = 0; j < wide; ++j) {
                const size_t at = static_cast<size_t>(i) * wide + j;
                if (i < m0 || j >= nc) {
                  ASSERT_EQ(got[at], 7.0f) << kernel->name << " wrote outside the block at " << i << "," << j;
                } else {
                  ASSERT_EQ(std::memcmp(&got[at], &want[at], sizeof(float)), 0)
                      << kernel->name << " M=" << M << " K=" << K << " nc=" << nc << " rows " << rows << " at " << i
                      << "," << j << ": " << got[at] << " vs " << want[at];
                }
              }
            }
          }
        }
      }
    }
  }
  // The AVX2 entry has a narrow kernel: it ran wherever that entry can.
  if (isa_allows(allowed, Isa::kAvx2, cpu_features())) {
    EXPECT_GT(narrow_runs, 0);
  }
}

TEST(SgemmPackedA, RejectsWrongShape) {
  const std::vector<float> A(12, 1.0f), B(12, 1.0f);
  std::vector<float> C(16);
  const PackedSgemmA packed = sgemm_pack_a(A.data(), 3, 4);
  EXPECT_THROW(sgemm_packed_a(4, 3, 3, packed, B.data(), 3, C.data(), 3, nullptr, SgemmActivation::none()), Error);
}

TEST(SgemmPackedThreaded, BitIdenticalForAnyThreadCount) {
  std::mt19937 rng(4);
  ThreadPool pool2(2), pool3(3);
  struct Shape {
    int M, N, K;
  };
  // Large M splits rows, M = 1 and 7 split 16-column panels (N tail 5).
  const Shape shapes[] = {{100, 37, 300}, {1, 1000, 257}, {7, 133, 64}, {64, 16, 17}, {2, 3, 5}};
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  for (const SgemmKernel* kernel : test::runnable_entries(sgemm_kernels(), allowed)) {
    for (const Shape& s : shapes) {
      const std::vector<float> A = random_vector(static_cast<size_t>(s.M) * s.K, rng);
      const std::vector<float> B = random_vector(static_cast<size_t>(s.K) * s.N, rng);
      const std::vector<float> bias = random_vector(static_cast<size_t>(s.N), rng);
      const PackedSgemmB packed = sgemm_pack_b(*kernel, B.data(), s.K, s.N, false);
      std::vector<float> want(static_cast<size_t>(s.M) * s.N);
      sgemm_packed(s.M, s.N, s.K, A.data(), s.K, packed, want.data(), s.N, bias.data(), SgemmActivation::relu());
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &pool2, &pool3}) {
        std::vector<float> got(want.size(), std::nanf(""));
        sgemm_packed(s.M, s.N, s.K, A.data(), s.K, packed, got.data(), s.N, bias.data(), SgemmActivation::relu(), pool);
        EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
            << kernel->name << " M=" << s.M << " N=" << s.N << " K=" << s.K << " threads "
            << (pool == nullptr ? 1 : pool->size());
      }
      // And it is right: spot-check one element against a double sum.
      double sum = bias[s.N - 1];
      for (int k = 0; k < s.K; ++k) {
        sum +=
            static_cast<double>(A[static_cast<size_t>(s.M - 1) * s.K + k]) * B[static_cast<size_t>(k) * s.N + s.N - 1];
      }
      EXPECT_NEAR(want.back(), std::max(sum, 0.0), 1e-4);
    }
  }
}

}  // namespace
}  // namespace kvant
