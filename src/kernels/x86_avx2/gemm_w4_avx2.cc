// 4-bit-weight GEMM entries gemm_w4a32_avx2 and gemm_w4a8_avx2 (gemm_w4.h).
// W4A32: 8 codes per ymm, widened (vpmovzxbd), masked or shifted to a nibble,
// dequantized as (float(code) - float(zero)) * scale (the reference's
// rounding: the difference is exact) and summed by FMA in 8-lane partial
// sums; tiles of 1 row of x by 4 rows of W (decode) and 4 by 2 (prefill), x
// read straight from memory by the FMAs. W4A8: kernels/gemm_w4a8_body.inc
// with vpmaddubsw + vpmaddwd.
#include <immintrin.h>

#include "kernels/gemm_w4_kernels.h"

namespace kvant {
namespace {

struct Params {
  __m256 zero, scale;
};

Params block_params(const W4View& w, int row, int b) {
  const size_t p = (static_cast<size_t>(row / 8) * static_cast<size_t>(w.k_blocks) + static_cast<size_t>(b)) * 8 +
                   static_cast<size_t>(row % 8);
  return {_mm256_set1_ps(static_cast<float>(w.zero[p])), _mm256_set1_ps(w.scale[p])};
}

__m256 dequant(__m256i codes, const Params& p) {
  return _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(codes), p.zero), p.scale);
}

float hsum(__m256 v) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}

template <int MR, int NR, bool kSplit>
void tile(const W4A32Args& a, int m0, int n0) {
  const W4View& w = a.w;
  const size_t row_bytes = static_cast<size_t>(w.k_padded / 2);
  const __m256i mask = _mm256_set1_epi32(15);
  const uint8_t* rows[NR];
  for (int r = 0; r < NR; ++r) rows[r] = w.codes + static_cast<size_t>(n0 + r) * row_bytes;
  const float* xs[MR];
  for (int i = 0; i < MR; ++i) xs[i] = a.x + static_cast<int64_t>(m0 + i) * a.ldx;
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i) {
    for (int r = 0; r < NR; ++r) acc[i][r] = _mm256_setzero_ps();
  }
  Params plo[NR] = {}, phi[NR] = {};
  const int chunks = w.k_padded / 32;
  for (int c = 0; c < chunks; ++c) {
    const int k = c * 32;
    if (k % w.block == 0) {
      const int b = k / w.block;
      for (int r = 0; r < NR; ++r) {
        plo[r] = block_params(w, n0 + r, b);
        if constexpr (kSplit) phi[r] = block_params(w, n0 + r, b + 1 < w.k_blocks ? b + 1 : b);
      }
    }
    for (int r = 0; r < NR; ++r) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + c * 16));
      const __m256i v0 = _mm256_cvtepu8_epi32(bytes);
      const __m256i v1 = _mm256_cvtepu8_epi32(_mm_unpackhi_epi64(bytes, bytes));
      const Params& ph = kSplit ? phi[r] : plo[r];
      const __m256 w0 = dequant(_mm256_and_si256(v0, mask), plo[r]);  // k .. k+7
      const __m256 w1 = dequant(_mm256_and_si256(v1, mask), plo[r]);  // k+8 .. k+15
      const __m256 w2 = dequant(_mm256_srli_epi32(v0, 4), ph);        // k+16 .. k+23
      const __m256 w3 = dequant(_mm256_srli_epi32(v1, 4), ph);        // k+24 .. k+31
      for (int i = 0; i < MR; ++i) {
        const float* x = xs[i] + k;
        acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x), w0, acc[i][r]);
        acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 8), w1, acc[i][r]);
        acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), w2, acc[i][r]);
        acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), w3, acc[i][r]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* y = a.y + static_cast<int64_t>(m0 + i) * a.ldy;
    for (int r = 0; r < NR; ++r) {
      const float s = hsum(acc[i][r]);
      y[n0 + r] = a.bias ? s + a.bias[n0 + r] : s;
    }
  }
}

template <bool kSplit>
void run_a32(const W4A32Args& a) {
  if (a.m == 1) {
    int n = a.n0;
    for (; n + 4 <= a.n1; n += 4) tile<1, 4, kSplit>(a, 0, n);
    for (; n < a.n1; ++n) tile<1, 1, kSplit>(a, 0, n);
    return;
  }
  int n = a.n0;
  for (; n + 2 <= a.n1; n += 2) {
    int m = 0;
    for (; m + 4 <= a.m; m += 4) tile<4, 2, kSplit>(a, m, n);
    for (; m < a.m; ++m) tile<1, 2, kSplit>(a, m, n);
  }
  for (; n < a.n1; ++n) {
    int m = 0;
    for (; m + 4 <= a.m; m += 4) tile<4, 1, kSplit>(a, m, n);
    for (; m < a.m; ++m) tile<1, 1, kSplit>(a, m, n);
  }
}

__m256i dot_u8s8(__m256i acc, __m256i codes_u8, __m256i x_s8) {
  const __m256i pairs = _mm256_maddubs_epi16(codes_u8, x_s8);
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

#include "kernels/gemm_w4a8_body.inc"

}  // namespace

void gemm_w4a32_avx2(const W4A32Args& a) {
  if (a.w.block == 16) {
    run_a32<true>(a);
  } else {
    run_a32<false>(a);
  }
}

void gemm_w4a8_avx2(const W4A8Args& a) { w4a8_run(a); }

}  // namespace kvant
