// 4-bit-weight GEMM entry gemm_w4a32_avx512 (gemm_w4.h): a 16-byte load of a
// row's codes widened to 16 dwords (vpmovzxbd) holds 16 codes in its low
// nibbles and the next 16 in its high ones; vpermps, which reads only an
// index's low 4 bits, looks both up in the row's 16-entry block table
// float(i - zero) * scale (the reference's dequantization, bit for bit), and
// the FMAs sum x * w in 16-lane partial sums, reduced once per output.
// Tiles: 1 row of x by 8 rows of W (decode), 4 by 4 (prefill: each unpacked
// vector serves 4 rows of x), with 1-row tails.
#include <immintrin.h>

#include "kernels/gemm_w4_kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // _mm512_reduce_add_ps (GCC 12 false positive)
#endif

namespace kvant {
namespace {

__m512 block_table(const W4View& w, int row, int b) {
  const size_t p = (static_cast<size_t>(row / 8) * static_cast<size_t>(w.k_blocks) + static_cast<size_t>(b)) * 8 +
                   static_cast<size_t>(row % 8);
  const __m512 iota = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  return _mm512_mul_ps(_mm512_sub_ps(iota, _mm512_set1_ps(static_cast<float>(w.zero[p]))), _mm512_set1_ps(w.scale[p]));
}

// kSplit: block 16, so the two halves of a 32-value chunk have their own blocks.
template <int MR, int NR, bool kSplit>
void tile(const W4A32Args& a, int m0, int n0) {
  const W4View& w = a.w;
  const size_t row_bytes = static_cast<size_t>(w.k_padded / 2);
  const uint8_t* rows[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.codes + static_cast<size_t>(n0 + r) * row_bytes;
  const float* xs[MR];
  for (int i = 0; i < MR; ++i) xs[i] = a.x + static_cast<int64_t>(m0 + i) * a.ldx;
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int r = 0; r < NR; ++r) acc[i][r] = _mm512_setzero_ps();
  }
  __m512 tlo[NR] = {}, thi[NR] = {};
  const int chunks = w.k_padded / 32;
  for (int c = 0; c < chunks; ++c) {
    const int k = c * 32;
    if (k % w.block == 0) {
      const int b = k / w.block;
      for (int r = 0; r < NR; ++r) {
        tlo[r] = block_table(w, n0 + r, b);
        if constexpr (kSplit) thi[r] = block_table(w, n0 + r, b + 1 < w.k_blocks ? b + 1 : b);
      }
    }
    __m512 wl[NR], wh[NR];
    for (int r = 0; r < NR; ++r) {
      const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + c * 16)));
      wl[r] = _mm512_permutexvar_ps(v, tlo[r]);
      wh[r] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), kSplit ? thi[r] : tlo[r]);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512 xl = _mm512_loadu_ps(xs[i] + k);
      const __m512 xh = _mm512_loadu_ps(xs[i] + k + 16);
      for (int r = 0; r < NR; ++r) {
        acc[i][r] = _mm512_fmadd_ps(xl, wl[r], acc[i][r]);
        acc[i][r] = _mm512_fmadd_ps(xh, wh[r], acc[i][r]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* y = a.y + static_cast<int64_t>(m0 + i) * a.ldy;
    for (int r = 0; r < NR; ++r) {
      const float s = _mm512_reduce_add_ps(acc[i][r]);
      y[n0 + r] = a.bias ? s + a.bias[n0 + r] : s;
    }
  }
}

template <bool kSplit>
void run(const W4A32Args& a) {
  if (a.m == 1) {
    int n = a.n0;
    for (; n + 8 <= a.n1; n += 8) tile<1, 8, kSplit>(a, 0, n);
    for (; n + 4 <= a.n1; n += 4) tile<1, 4, kSplit>(a, 0, n);
    for (; n < a.n1; ++n) tile<1, 1, kSplit>(a, 0, n);
    return;
  }
  int n = a.n0;
  for (; n + 4 <= a.n1; n += 4) {
    int m = 0;
    for (; m + 4 <= a.m; m += 4) tile<4, 4, kSplit>(a, m, n);
    for (; m < a.m; ++m) tile<1, 4, kSplit>(a, m, n);
  }
  for (; n < a.n1; ++n) {
    int m = 0;
    for (; m + 4 <= a.m; m += 4) tile<4, 1, kSplit>(a, m, n);
    for (; m < a.m; ++m) tile<1, 1, kSplit>(a, m, n);
  }
}

}  // namespace

void gemm_w4a32_avx512(const W4A32Args& a) {
  if (a.w.block == 16) {
    run<true>(a);
  } else {
    run<false>(a);
  }
}

}  // namespace kvant
