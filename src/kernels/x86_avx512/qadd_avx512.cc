// Quantized Add/Mul entry qadd_avx512 (qadd.h): 16 lanes at a time with the
// scalar code's IEEE operations per lane (separate multiply and add, true
// division, round-to-nearest-even), so it equals the scalar entry exactly;
// the tail runs under a mask. The narrowing vpmov[u]sdb saturates, but q is
// already clamped to [qmin, qmax] inside the 8-bit range, so it is exact.
#include <immintrin.h>

#include "kernels/qadd.h"
#include "kernels/qadd_kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // _mm512_max_ps/min_ps (GCC 12 false positive)
#endif

namespace kvant {
namespace {

template <bool is_signed>
void qadd16(const void* a, const void* b, void* y, int64_t n, const QAddParams& p) {
  const __m512 as = _mm512_set1_ps(p.a_scale), bs = _mm512_set1_ps(p.b_scale), ys = _mm512_set1_ps(p.y_scale);
  const __m512i az = _mm512_set1_epi32(p.a_zp), bz = _mm512_set1_epi32(p.b_zp);
  const __m512 yz = _mm512_set1_ps(static_cast<float>(p.y_zp));
  const __m512 lo = _mm512_set1_ps(p.lo), hi = _mm512_set1_ps(p.hi);
  const __m512 qlo = _mm512_set1_ps(static_cast<float>(p.qmin)), qhi = _mm512_set1_ps(static_cast<float>(p.qmax));
  const auto* pa = static_cast<const uint8_t*>(a);
  const auto* pb = static_cast<const uint8_t*>(b);
  auto* py = static_cast<uint8_t*>(y);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1u);
    const __m128i ra = _mm_maskz_loadu_epi8(m, pa + i);
    const __m128i rb = _mm_maskz_loadu_epi8(m, pb + i);
    const __m512i wa = is_signed ? _mm512_cvtepi8_epi32(ra) : _mm512_cvtepu8_epi32(ra);
    const __m512i wb = is_signed ? _mm512_cvtepi8_epi32(rb) : _mm512_cvtepu8_epi32(rb);
    const __m512 fa = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(wa, az)), as);
    const __m512 fb = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(wb, bz)), bs);
    __m512 s = p.multiply ? _mm512_mul_ps(fa, fb) : _mm512_add_ps(fa, fb);
    s = _mm512_min_ps(_mm512_max_ps(s, lo), hi);
    __m512 q = _mm512_roundscale_ps(_mm512_div_ps(s, ys), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(q, yz), qlo), qhi);
    const __m512i qi = _mm512_cvtps_epi32(q);  // exact: q is an integer in range
    const __m128i bytes = is_signed ? _mm512_cvtsepi32_epi8(qi) : _mm512_cvtusepi32_epi8(qi);
    _mm_mask_storeu_epi8(py + i, m, bytes);
  }
}

}  // namespace

void qadd_u8_avx512(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p) {
  qadd16<false>(a, b, y, n, p);
}

void qadd_s8_avx512(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p) {
  qadd16<true>(a, b, y, n, p);
}

}  // namespace kvant
