// AVX2 INT8 GEMM, the scheme and packed layout are described in
// gemm_s8_avx2.h. Loop order: A is widened to int16 in chunks of rows that
// stay in L2; for each 16-column panel of B, tiles of up to 4 rows x 16
// columns keep 8 ymm accumulators while the K loop streams the panel.
#if defined(__x86_64__)

#include "kernels/x86_avx2/gemm_s8_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#define KVANT_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace kvant::avx2 {

namespace {

constexpr int kTileRows = 4;
constexpr int kPairBytes = 2 * kPanelCols;   // one k pair of one panel
constexpr int64_t kChunkBytes = 128 * 1024;  // widened A kept per chunk

int round_up(int x, int to) { return (x + to - 1) / to * to; }

// out[0..kp) = A row widened to int16, zero after K (kp = K rounded to even).
KVANT_TARGET_AVX2 void widen_row(const uint8_t* a, int K, int kp, int16_t* out) {
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), _mm256_cvtepu8_epi16(bytes));
  }
  for (; k < K; ++k) out[k] = a[k];
  for (; k < kp; ++k) out[k] = 0;
}

// One tile: kRows rows of widened A (row stride a_stride int16) times one
// packed panel, plus the corrections, stored to `cols` (1..16) columns of C.
// corr/bzp: 16 values each for this panel (bzp nullptr: no rowsum term).
template <int kRows>
KVANT_TARGET_AVX2 void tile(const int16_t* a, int a_stride, int pairs, const int8_t* b, const int32_t* corr,
                            const int32_t* bzp, const int32_t* rowsum, int32_t* c, int ldc, int cols) {
  __m256i acc[kRows][2];
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int p = 0; p < pairs; ++p) {
    const int8_t* bp = b + static_cast<int64_t>(p) * kPairBytes;
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bp)));
    const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bp + 16)));
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + static_cast<int64_t>(r) * a_stride + 2 * p, sizeof(pair));
      const __m256i av = _mm256_set1_epi32(pair);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
    }
  }
  const __m256i corr0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr));
  const __m256i corr1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 8));
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r) {
    __m256i v0 = _mm256_add_epi32(acc[r][0], corr0);
    __m256i v1 = _mm256_add_epi32(acc[r][1], corr1);
    if (bzp != nullptr) {
      const __m256i sum = _mm256_set1_epi32(rowsum[r]);
      v0 = _mm256_sub_epi32(v0, _mm256_mullo_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bzp))));
      v1 = _mm256_sub_epi32(v1, _mm256_mullo_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bzp + 8))));
    }
    int32_t* out = c + static_cast<int64_t>(r) * ldc;
    if (cols == kPanelCols) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), v1);
    } else {
      alignas(32) int32_t tmp[kPanelCols];
      _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(tmp + 8), v1);
      std::memcpy(out, tmp, sizeof(int32_t) * static_cast<size_t>(cols));
    }
  }
}

}  // namespace

int64_t packed_b_size(int K, int N) { return static_cast<int64_t>(round_up(K, 2)) * round_up(N, kPanelCols); }

void pack_b(const int8_t* B, int ldb, int K, int N, int8_t* packed) {
  const int pairs = round_up(K, 2) / 2;
  const int panels = round_up(N, kPanelCols) / kPanelCols;
  for (int j = 0; j < panels; ++j) {
    int8_t* panel = packed + static_cast<int64_t>(j) * pairs * kPairBytes;
    for (int p = 0; p < pairs; ++p) {
      for (int col = 0; col < kPanelCols; ++col) {
        const int n = j * kPanelCols + col;
        for (int half = 0; half < 2; ++half) {
          const int k = 2 * p + half;
          const bool inside = n < N && k < K;
          panel[p * kPairBytes + 2 * col + half] = inside ? B[static_cast<int64_t>(k) * ldb + n] : int8_t{0};
        }
      }
    }
  }
}

KVANT_TARGET_AVX2 void gemm(const uint8_t* A, int lda, int M, int K, int N, const int8_t* packed,
                            const int32_t* col_corr, const int32_t* b_zp, int32_t* C, int ldc) {
  const int kp = round_up(K, 2);
  const int pairs = kp / 2;
  const int padded_n = round_up(N, kPanelCols);
  const int panels = padded_n / kPanelCols;
  // Scratch reused across calls on a thread; it grows, never shrinks.
  thread_local std::vector<int16_t> wide_a;
  thread_local std::vector<int32_t> corr, bzp, rowsum;
  corr.assign(static_cast<size_t>(padded_n), 0);
  std::copy(col_corr, col_corr + N, corr.begin());
  if (b_zp != nullptr) {
    bzp.assign(static_cast<size_t>(padded_n), 0);
    std::copy(b_zp, b_zp + N, bzp.begin());
  }
  const int64_t row_bytes = 2 * static_cast<int64_t>(std::max(kp, 2));
  const int chunk_rows =
      static_cast<int>(std::clamp<int64_t>(kChunkBytes / row_bytes / kTileRows * kTileRows, kTileRows, 256));
  wide_a.resize(static_cast<size_t>(chunk_rows) * static_cast<size_t>(kp));
  rowsum.resize(static_cast<size_t>(chunk_rows));

  for (int m0 = 0; m0 < M; m0 += chunk_rows) {
    const int rows = std::min(chunk_rows, M - m0);
    for (int r = 0; r < rows; ++r) {
      const uint8_t* a_row = A + static_cast<int64_t>(m0 + r) * lda;
      widen_row(a_row, K, kp, wide_a.data() + static_cast<int64_t>(r) * kp);
      if (b_zp != nullptr) {
        int32_t sum = 0;
        for (int k = 0; k < K; ++k) sum += a_row[k];
        rowsum[static_cast<size_t>(r)] = sum;
      }
    }
    for (int j = 0; j < panels; ++j) {
      const int8_t* panel = packed + static_cast<int64_t>(j) * pairs * kPairBytes;
      const int n0 = j * kPanelCols;
      const int cols = std::min(kPanelCols, N - n0);
      const int32_t* panel_corr = corr.data() + n0;
      const int32_t* panel_bzp = b_zp != nullptr ? bzp.data() + n0 : nullptr;
      for (int r0 = 0; r0 < rows; r0 += kTileRows) {
        const int16_t* a = wide_a.data() + static_cast<int64_t>(r0) * kp;
        const int32_t* sums = rowsum.data() + r0;
        int32_t* c = C + static_cast<int64_t>(m0 + r0) * ldc + n0;
        switch (std::min(kTileRows, rows - r0)) {
          case 4: tile<4>(a, kp, pairs, panel, panel_corr, panel_bzp, sums, c, ldc, cols); break;
          case 3: tile<3>(a, kp, pairs, panel, panel_corr, panel_bzp, sums, c, ldc, cols); break;
          case 2: tile<2>(a, kp, pairs, panel, panel_corr, panel_bzp, sums, c, ldc, cols); break;
          default: tile<1>(a, kp, pairs, panel, panel_corr, panel_bzp, sums, c, ldc, cols); break;
        }
      }
    }
  }
}

}  // namespace kvant::avx2

#endif  // __x86_64__
