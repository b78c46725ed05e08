// AVX-512 VNNI INT8 GEMM (kernels/gemm_s8.h has the math, gemm_s8_kernels.h
// the quads layout). vpdpbusd adds, per int32 lane, the four products of
// unsigned bytes of its first source with signed bytes of its second into
// the accumulator: exact for any u8 x s8 (|4 * 255 * 128| < 2^31), so 8-bit
// weights need neither widening nor a 7-bit bound.
//
// Micro-tile: R rows of A (up to 6) x P panels of B (up to 4, 64 columns),
// R * P zmm accumulators. Per k quad: one 4-byte broadcast of each A row
// (read in place), one zmm of each panel, R * P vpdpbusd. Loop order: chunks
// of A rows sized for L2; per group of 4 panels (64 columns x K bytes, L1/L2)
// every row tile of the chunk. Column tails use masked stores.
#include <immintrin.h>

#include <cstring>

#include "kernels/gemm_s8_kernels.h"

namespace kvant {

namespace {

constexpr int kRows = 6;
constexpr int kPanels = 4;
constexpr int kQuadBytes = 4 * kQGemmPanelCols;
constexpr int kChunkBytes = 192 * 1024;  // A bytes per row chunk
constexpr int kMaxChunkRows = 252;       // multiple of kRows

inline int min_int(int a, int b) { return a < b ? a : b; }

// The 4 bytes a[0..len) (len 0..4) as one int32, zero-filled.
inline int32_t load_quad(const uint8_t* a, int len) {
  int32_t v = 0;
  std::memcpy(&v, a, static_cast<size_t>(len));
  return v;
}

// acc[r][p] += the 4 bytes quad[r] of row r times quad q of panel p.
template <int R, int P>
inline __attribute__((always_inline)) void step(__m512i (&acc)[R][P], const int8_t* b, int64_t panel_bytes, int q,
                                                const int32_t* quad) {
  __m512i bq[P];
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) bq[p] = _mm512_loadu_si512(b + p * panel_bytes + static_cast<int64_t>(q) * kQuadBytes);
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
    const __m512i av = _mm512_set1_epi32(quad[r]);
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], av, bq[p]);
  }
}

template <int R, int P>
void tile(const uint8_t* a, int lda, int K, const int8_t* b, int64_t panel_bytes, const int32_t* corr,
          const int32_t* bzp, const int32_t* rowsum, int32_t* c, int ldc, int last_cols) {
  __m512i acc[R][P];
#pragma GCC unroll 6
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int p = 0; p < P; ++p) acc[r][p] = _mm512_setzero_si512();
  }
  const int full = K / 4;
  const int tail = K % 4;
  for (int q = 0; q < full; ++q) {
    int32_t quad[R];
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) std::memcpy(&quad[r], a + static_cast<int64_t>(r) * lda + 4 * q, 4);
    step<R, P>(acc, b, panel_bytes, q, quad);
  }
  if (tail != 0) {
    int32_t quad[R];
    for (int r = 0; r < R; ++r) quad[r] = load_quad(a + static_cast<int64_t>(r) * lda + 4 * full, tail);
    step<R, P>(acc, b, panel_bytes, full, quad);
  }
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) {
    const __m512i cv = _mm512_loadu_si512(corr + p * kQGemmPanelCols);
    const __m512i zv = bzp != nullptr ? _mm512_loadu_si512(bzp + p * kQGemmPanelCols) : _mm512_setzero_si512();
    const __mmask16 mask = p == P - 1 ? static_cast<__mmask16>((1u << last_cols) - 1u) : static_cast<__mmask16>(0xFFFF);
#pragma GCC unroll 6
    for (int r = 0; r < R; ++r) {
      __m512i v = _mm512_add_epi32(acc[r][p], cv);
      if (bzp != nullptr) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(rowsum[r]), zv));
      _mm512_mask_storeu_epi32(c + static_cast<int64_t>(r) * ldc + p * kQGemmPanelCols, mask, v);
    }
  }
}

using TileFn = void (*)(const uint8_t*, int, int, const int8_t*, int64_t, const int32_t*, const int32_t*,
                        const int32_t*, int32_t*, int, int);

template <int R>
TileFn tile_for_panels(int panels) {
  switch (panels) {
    case 4: return tile<R, 4>;
    case 3: return tile<R, 3>;
    case 2: return tile<R, 2>;
    default: return tile<R, 1>;
  }
}

TileFn tile_for(int rows, int panels) {
  switch (rows) {
    case 6: return tile_for_panels<6>(panels);
    case 5: return tile_for_panels<5>(panels);
    case 4: return tile_for_panels<4>(panels);
    case 3: return tile_for_panels<3>(panels);
    case 2: return tile_for_panels<2>(panels);
    default: return tile_for_panels<1>(panels);
  }
}

}  // namespace

void qgemm_u8s8_avx512vnni_strided(const QGemmArgs& g, int panel_quads) {
  const int K = g.k;
  const int panels = (g.n + kQGemmPanelCols - 1) / kQGemmPanelCols;
  const int64_t panel_bytes = static_cast<int64_t>(panel_quads) * kQuadBytes;
  int chunk_rows = kChunkBytes / (K > 0 ? K : 1) / kRows * kRows;
  chunk_rows = chunk_rows < kRows ? kRows : min_int(chunk_rows, kMaxChunkRows);
  int32_t rowsum[kMaxChunkRows] = {};
  alignas(64) int32_t corr[kPanels * kQGemmPanelCols];
  alignas(64) int32_t bzp[kPanels * kQGemmPanelCols];

  for (int m0 = 0; m0 < g.m; m0 += chunk_rows) {
    const int rows = min_int(chunk_rows, g.m - m0);
    const uint8_t* a_chunk = g.a + static_cast<int64_t>(m0) * g.lda;
    if (g.b_zp != nullptr) qgemm_row_sums(a_chunk, g.lda, rows, K, rowsum);
    for (int j0 = 0; j0 < panels; j0 += kPanels) {
      const int np = min_int(kPanels, panels - j0);
      const int n0 = j0 * kQGemmPanelCols;
      for (int p = 0; p < np; ++p) {
        const int pn = n0 + p * kQGemmPanelCols;
        qgemm_panel_corrections(g, pn, min_int(kQGemmPanelCols, g.n - pn), corr + p * kQGemmPanelCols,
                                bzp + p * kQGemmPanelCols);
      }
      const int last_cols = g.n - (n0 + (np - 1) * kQGemmPanelCols) < kQGemmPanelCols
                                ? g.n - (n0 + (np - 1) * kQGemmPanelCols)
                                : kQGemmPanelCols;
      const int8_t* b = g.packed + static_cast<int64_t>(j0) * panel_bytes;
      const int32_t* tile_bzp = g.b_zp != nullptr ? bzp : nullptr;
      for (int r0 = 0; r0 < rows; r0 += kRows) {
        const int tr = min_int(kRows, rows - r0);
        tile_for(tr, np)(a_chunk + static_cast<int64_t>(r0) * g.lda, g.lda, K, b, panel_bytes, corr, tile_bzp,
                         rowsum + r0, g.c + static_cast<int64_t>(m0 + r0) * g.ldc + n0, g.ldc, last_cols);
      }
    }
  }
}

void qgemm_u8s8_avx512vnni(const QGemmArgs& g) { qgemm_u8s8_avx512vnni_strided(g, (g.k + 3) / 4); }

}  // namespace kvant
