// Quantized Add/Mul entry qadd_avx2 (qadd.h): 8 lanes at a time with the
// scalar code's IEEE operations per lane (separate multiply and add, true
// division, round-to-nearest-even), so it equals the scalar entry exactly;
// the tail runs the scalar entry.
#include <immintrin.h>

#include "kernels/qadd.h"
#include "kernels/qadd_kernels.h"

namespace kvant {
namespace {

// `is_signed` picks the 8-bit widening and narrowing; returns the elements done.
template <bool is_signed>
int64_t qadd8(const void* a, const void* b, void* y, int64_t n, const QAddParams& p) {
  const __m256 as = _mm256_set1_ps(p.a_scale), bs = _mm256_set1_ps(p.b_scale), ys = _mm256_set1_ps(p.y_scale);
  const __m256i az = _mm256_set1_epi32(p.a_zp), bz = _mm256_set1_epi32(p.b_zp);
  const __m256 yz = _mm256_set1_ps(static_cast<float>(p.y_zp));
  const __m256 lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256 qlo = _mm256_set1_ps(static_cast<float>(p.qmin)), qhi = _mm256_set1_ps(static_cast<float>(p.qmax));
  const auto* pa = static_cast<const uint8_t*>(a);
  const auto* pb = static_cast<const uint8_t*>(b);
  auto* py = static_cast<uint8_t*>(y);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i ra = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(pa + i));
    const __m128i rb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(pb + i));
    const __m256i wa = is_signed ? _mm256_cvtepi8_epi32(ra) : _mm256_cvtepu8_epi32(ra);
    const __m256i wb = is_signed ? _mm256_cvtepi8_epi32(rb) : _mm256_cvtepu8_epi32(rb);
    // Separate multiply and add (no FMA), as the scalar code rounds each.
    const __m256 fa = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(wa, az)), as);
    const __m256 fb = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(wb, bz)), bs);
    __m256 s = p.multiply ? _mm256_mul_ps(fa, fb) : _mm256_add_ps(fa, fb);
    s = _mm256_min_ps(_mm256_max_ps(s, lo), hi);
    __m256 q = _mm256_round_ps(_mm256_div_ps(s, ys), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(q, yz), qlo), qhi);
    const __m256i qi = _mm256_cvtps_epi32(q);  // exact: q is an integer in range
    const __m128i lo16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
    const __m128i bytes = is_signed ? _mm_packs_epi16(lo16, lo16) : _mm_packus_epi16(lo16, lo16);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(py + i), bytes);
  }
  return i;
}

}  // namespace

void qadd_u8_avx2(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p) {
  const int64_t done = qadd8<false>(a, b, y, n, p);
  qadd_u8_generic(a + done, b + done, y + done, n - done, p);
}

void qadd_s8_avx2(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p) {
  const int64_t done = qadd8<true>(a, b, y, n, p);
  qadd_s8_generic(a + done, b + done, y + done, n - done, p);
}

}  // namespace kvant
