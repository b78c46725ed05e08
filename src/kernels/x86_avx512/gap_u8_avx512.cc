// AVX-512 entry of kernels/gap_u8.h: 16 channels at a time, their sums in
// two registers of doubles across all pixels (stored once: masked stores do
// not forward to later loads), the table's floats gathered by code. Exact,
// so the order differs from the reference's without changing a bit.
#include <immintrin.h>

#include "kernels/gap_u8.h"

namespace kvant {

void gap_u8_avx512(const uint8_t* x, int64_t pixels, int64_t channels, const float* table, double* sums) {
  for (int64_t c = 0; c < channels; c += 16) {
    const int64_t left = channels - c;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    const uint8_t* xc = x + c;
    for (int64_t p = 0; p < pixels; ++p, xc += channels) {
      const __m512i idx = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, xc));
      const __m512 v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, table, 4);
      lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
      hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    _mm512_mask_storeu_pd(sums + c, static_cast<__mmask8>(m), lo);
    _mm512_mask_storeu_pd(sums + c + 8, static_cast<__mmask8>(m >> 8), hi);
  }
}

}  // namespace kvant
