// AVX-VNNI INT8 GEMM (kernels/gemm_s8.h has the math, gemm_s8_kernels.h the
// quads layout): the VEX form of vpdpbusd on ymm, for CPUs that have it
// with or without AVX-512 (Alder Lake and later clients, Zen 4, Sapphire
// Rapids). Exact for any u8 x s8, like the AVX-512 VNNI kernel.
//
// Micro-tile: R rows of A (up to 6) x one 16-column panel = 2R ymm
// accumulators (12 of the 16 registers), per k quad one broadcast of each A
// row and two ymm of the panel. Loop order as in the AVX-512 kernel: chunks
// of A rows sized for L2, each panel against every row tile of the chunk.
#include <immintrin.h>

#include <cstring>

#include "kernels/gemm_s8_kernels.h"

namespace kvant {

namespace {

constexpr int kRows = 6;
constexpr int kQuadBytes = 4 * kQGemmPanelCols;
constexpr int kChunkBytes = 96 * 1024;
constexpr int kMaxChunkRows = 252;  // multiple of kRows

inline int min_int(int a, int b) { return a < b ? a : b; }

template <int R>
inline __attribute__((always_inline)) void step(__m256i (&acc)[R][2], const int8_t* bq, const int32_t* quad) {
  const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bq));
  const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bq + 32));
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    const __m256i av = _mm256_set1_epi32(quad[r]);
    acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], av, b0);
    acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], av, b1);
  }
}

template <int R>
void tile(const uint8_t* a, int lda, int K, const int8_t* b, const int32_t* corr, const int32_t* bzp,
          const int32_t* rowsum, int32_t* c, int ldc, int cols) {
  __m256i acc[R][2];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const int full = K / 4;
  const int tail = K % 4;
  for (int q = 0; q < full; ++q) {
    int32_t quad[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) std::memcpy(&quad[r], a + static_cast<int64_t>(r) * lda + 4 * q, 4);
    step<R>(acc, b + static_cast<int64_t>(q) * kQuadBytes, quad);
  }
  if (tail != 0) {
    int32_t quad[R];
    for (int r = 0; r < R; ++r) {
      quad[r] = 0;
      std::memcpy(&quad[r], a + static_cast<int64_t>(r) * lda + 4 * full, static_cast<size_t>(tail));
    }
    step<R>(acc, b + static_cast<int64_t>(full) * kQuadBytes, quad);
  }
  const __m256i corr0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr));
  const __m256i corr1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 8));
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    __m256i v0 = _mm256_add_epi32(acc[r][0], corr0);
    __m256i v1 = _mm256_add_epi32(acc[r][1], corr1);
    if (bzp != nullptr) {
      const __m256i sum = _mm256_set1_epi32(rowsum[r]);
      v0 = _mm256_sub_epi32(v0, _mm256_mullo_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bzp))));
      v1 = _mm256_sub_epi32(v1, _mm256_mullo_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bzp + 8))));
    }
    int32_t* out = c + static_cast<int64_t>(r) * ldc;
    if (cols == kQGemmPanelCols) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), v1);
    } else {
      alignas(32) int32_t tmp[kQGemmPanelCols];
      _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(tmp + 8), v1);
      std::memcpy(out, tmp, sizeof(int32_t) * static_cast<size_t>(cols));
    }
  }
}

}  // namespace

void qgemm_u8s8_avxvnni(const QGemmArgs& g) {
  const int K = g.k;
  const int quads = (K + 3) / 4;
  const int panels = (g.n + kQGemmPanelCols - 1) / kQGemmPanelCols;
  int chunk_rows = kChunkBytes / (K > 0 ? K : 1) / kRows * kRows;
  chunk_rows = chunk_rows < kRows ? kRows : min_int(chunk_rows, kMaxChunkRows);
  int32_t rowsum[kMaxChunkRows] = {};
  alignas(32) int32_t corr[kQGemmPanelCols];
  alignas(32) int32_t bzp[kQGemmPanelCols];
  for (int m0 = 0; m0 < g.m; m0 += chunk_rows) {
    const int rows = min_int(chunk_rows, g.m - m0);
    const uint8_t* a_chunk = g.a + static_cast<int64_t>(m0) * g.lda;
    if (g.b_zp != nullptr) qgemm_row_sums(a_chunk, g.lda, rows, K, rowsum);
    for (int j = 0; j < panels; ++j) {
      const int8_t* panel = g.packed + static_cast<int64_t>(j) * quads * kQuadBytes;
      const int n0 = j * kQGemmPanelCols;
      const int cols = min_int(kQGemmPanelCols, g.n - n0);
      qgemm_panel_corrections(g, n0, cols, corr, bzp);
      const int32_t* panel_bzp = g.b_zp != nullptr ? bzp : nullptr;
      for (int r0 = 0; r0 < rows; r0 += kRows) {
        const uint8_t* a = a_chunk + static_cast<int64_t>(r0) * g.lda;
        int32_t* c = g.c + static_cast<int64_t>(m0 + r0) * g.ldc + n0;
        switch (min_int(kRows, rows - r0)) {
          case 6: tile<6>(a, g.lda, K, panel, corr, panel_bzp, rowsum + r0, c, g.ldc, cols); break;
          case 5: tile<5>(a, g.lda, K, panel, corr, panel_bzp, rowsum + r0, c, g.ldc, cols); break;
          case 4: tile<4>(a, g.lda, K, panel, corr, panel_bzp, rowsum + r0, c, g.ldc, cols); break;
          case 3: tile<3>(a, g.lda, K, panel, corr, panel_bzp, rowsum + r0, c, g.ldc, cols); break;
          case 2: tile<2>(a, g.lda, K, panel, corr, panel_bzp, rowsum + r0, c, g.ldc, cols); break;
          default: tile<1>(a, g.lda, K, panel, corr, panel_bzp, rowsum + r0, c, g.ldc, cols); break;
        }
      }
    }
  }
}

}  // namespace kvant
