// AVX-512 VBMI entry of kernels/lookup_u8.h: vpermi2b looks 64 indices up in
// a 128-byte table (their low 7 bits); one for each half of the 256 entries,
// then the top bit of each index picks.
#include <immintrin.h>

#include "kernels/lookup_u8.h"

namespace kvant {

void lookup_u8_avx512vbmi(const uint8_t* table, const uint8_t* x, uint8_t* y, int64_t n) {
  const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
  const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
  for (int64_t i = 0; i < n; i += 64) {
    const int64_t left = n - i;
    const __mmask64 m = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
    const __m512i idx = _mm512_maskz_loadu_epi8(m, x + i);
    const __m512i low = _mm512_permutex2var_epi8(t0, idx, t1);
    const __m512i high = _mm512_permutex2var_epi8(t2, idx, t3);
    _mm512_mask_storeu_epi8(y + i, m, _mm512_mask_blend_epi8(_mm512_movepi8_mask(idx), low, high));
  }
}

// Four table loads per plane: cheap enough for planes of any size.
void lookup_u8_planes_avx512vbmi(const uint8_t* tables, const uint8_t* x, uint8_t* y, int64_t inner, int64_t planes) {
  for (int64_t p = 0; p < planes; ++p) lookup_u8_avx512vbmi(tables + 256 * p, x + inner * p, y + inner * p, inner);
}

}  // namespace kvant
