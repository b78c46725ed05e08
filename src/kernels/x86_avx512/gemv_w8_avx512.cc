// int8-weight GEMV entry gemv_w8_avx512 (gemv_w8.h): four rows at a time,
// 16 k per step (int8 widened to float in registers: vpmovsxbd, vcvtdq2ps),
// the k tail through masked loads (zero lanes add nothing), one horizontal
// sum per row.
#include <immintrin.h>

#include "kernels/gemv_w8_kernels.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"  // _mm512_reduce_add_ps (GCC 12 false positive)
#endif

namespace kvant {
namespace {

__m512 widen(__m128i bytes) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes)); }

__m128i load16(const int8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }

void store(const GemvW8Args& a, int n, float sum) {
  const float v = sum * a.scale[n];
  a.y[n] = a.accumulate ? a.y[n] + v : v;
}

}  // namespace

void gemv_w8_row_avx512(const GemvW8Args& a) {
  const int k16 = a.k / 16 * 16;
  const __mmask16 tail = static_cast<__mmask16>((1u << (a.k - k16)) - 1u);
  const float* x = a.x;
  const __m512 xt = _mm512_maskz_loadu_ps(tail, x + k16);
  int n = 0;
  for (; n + 4 <= a.n; n += 4) {
    const int8_t* r0 = a.w + static_cast<int64_t>(n) * a.k;
    const int8_t* r1 = r0 + a.k;
    const int8_t* r2 = r1 + a.k;
    const int8_t* r3 = r2 + a.k;
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    for (int k = 0; k < k16; k += 16) {
      const __m512 xv = _mm512_loadu_ps(x + k);
      a0 = _mm512_fmadd_ps(xv, widen(load16(r0 + k)), a0);
      a1 = _mm512_fmadd_ps(xv, widen(load16(r1 + k)), a1);
      a2 = _mm512_fmadd_ps(xv, widen(load16(r2 + k)), a2);
      a3 = _mm512_fmadd_ps(xv, widen(load16(r3 + k)), a3);
    }
    if (tail != 0) {
      a0 = _mm512_fmadd_ps(xt, widen(_mm_maskz_loadu_epi8(tail, r0 + k16)), a0);
      a1 = _mm512_fmadd_ps(xt, widen(_mm_maskz_loadu_epi8(tail, r1 + k16)), a1);
      a2 = _mm512_fmadd_ps(xt, widen(_mm_maskz_loadu_epi8(tail, r2 + k16)), a2);
      a3 = _mm512_fmadd_ps(xt, widen(_mm_maskz_loadu_epi8(tail, r3 + k16)), a3);
    }
    store(a, n, _mm512_reduce_add_ps(a0));
    store(a, n + 1, _mm512_reduce_add_ps(a1));
    store(a, n + 2, _mm512_reduce_add_ps(a2));
    store(a, n + 3, _mm512_reduce_add_ps(a3));
  }
  for (; n < a.n; ++n) {
    const int8_t* r = a.w + static_cast<int64_t>(n) * a.k;
    __m512 acc = _mm512_setzero_ps();
    for (int k = 0; k < k16; k += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), widen(load16(r + k)), acc);
    if (tail != 0) acc = _mm512_fmadd_ps(xt, widen(_mm_maskz_loadu_epi8(tail, r + k16)), acc);
    store(a, n, _mm512_reduce_add_ps(acc));
  }
}

}  // namespace kvant
