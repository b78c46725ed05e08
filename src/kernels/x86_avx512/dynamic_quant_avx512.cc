// AVX-512 entry of kernels/dynamic_quant.h: 16 floats per step, masked tails.
#include <immintrin.h>

#include "kernels/dynamic_quant.h"

namespace kvant {

namespace {
inline __mmask16 tail_mask(int64_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}
}  // namespace

bool range_f32_avx512(const float* x, int64_t n, float* lo, float* hi) {
  __m512 l = _mm512_setzero_ps(), h = _mm512_setzero_ps();
  __mmask16 nan = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);  // zeros past the end: inside [lo, hi] already
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    l = _mm512_min_ps(l, v);
    h = _mm512_max_ps(h, v);
  }
  if (nan != 0) return false;
  *lo = _mm512_reduce_min_ps(l);
  *hi = _mm512_reduce_max_ps(h);
  return true;
}

void quantize_u8_avx512(const float* x, int64_t n, float scale, int32_t zp, uint8_t* q) {
  const __m512 s = _mm512_set1_ps(scale);
  const __m512 bound = _mm512_set1_ps(1e6f);  // |x / scale| <= ~255 here; keeps the conversion in range
  const __m512i z = _mm512_set1_epi32(zp);
  const __m512i zero = _mm512_setzero_si512(), top = _mm512_set1_epi32(255);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 f = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), s);
    f = _mm512_min_ps(_mm512_max_ps(f, _mm512_sub_ps(_mm512_setzero_ps(), bound)), bound);
    __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(f), z);
    v = _mm512_min_epi32(_mm512_max_epi32(v, zero), top);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, v);
  }
}

void dequant_rows_avx512(const DequantRowsArgs& a) {
  const __m512 lo = _mm512_set1_ps(a.lo), hi = _mm512_set1_ps(a.hi);
  for (int r = 0; r < a.rows; ++r) {
    const int32_t* acc = a.acc + r * a.acc_stride;
    float* out = a.out + r * a.out_stride;
    for (int j = 0; j < a.n; j += 16) {
      const __mmask16 m = tail_mask(a.n - j);
      __m512i c = _mm512_maskz_loadu_epi32(m, acc + j);
      if (a.ibias != nullptr) c = _mm512_add_epi32(c, _mm512_maskz_loadu_epi32(m, a.ibias + j));
      __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(c), _mm512_maskz_loadu_ps(m, a.mult + j));
      if (a.fbias != nullptr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, a.fbias + j));
      // max/min return the second operand when one is NaN, as std::max/min.
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      _mm512_mask_storeu_ps(out + j, m, v);
    }
  }
}

}  // namespace kvant
