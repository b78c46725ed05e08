// AVX-512 entry of kernels/layout_u8.h: requantization of accumulator rows,
// 16 values per vector, masked tails, vpmovdb to bytes.
#include <immintrin.h>

#include "kernels/layout_u8.h"

namespace kvant {

void requant_rows_avx512(const RequantRowsArgs& a) {
  const __m512 lo = _mm512_set1_ps(static_cast<float>(a.lo - a.y_zp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(a.hi - a.y_zp));
  const __m512i zp = _mm512_set1_epi32(a.y_zp);
  for (int r = 0; r < a.rows; ++r) {
    const int32_t* acc = a.acc + r * a.acc_stride;
    uint8_t* out = a.out + r * a.out_stride;
    for (int j = 0; j < a.n; j += 16) {
      const int left = a.n - j;
      const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
      const __m512i s = _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, acc + j), _mm512_maskz_loadu_epi32(m, a.bias + j));
      __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(s), _mm512_maskz_loadu_ps(m, a.mult + j));
      f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);  // integer bounds: clamping before rounding is the same
      const __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
      _mm512_mask_cvtepi32_storeu_epi8(out + j, m, v);  // in range: the low byte of each lane
    }
  }
}

}  // namespace kvant
