// Vector float math entry vmath_f32_avx512 (vmath.h has the formulas): 16
// lanes per step, the tail through a mask. The same operations as the AVX2
// entry, except that sigmoid, tanh and erf take 1 / d from vrcp14ps refined by one
// Newton step, r' = r (2 - d r), whose relative error (about 2^-28 plus
// rounding) stays below 2 ulp, instead of a division (vdivps zmm issues once
// per 10 or more cycles, the Newton step in 3 FMA-port cycles).
#include <immintrin.h>

#include "kernels/vmath_kernels.h"

// GCC 12 reports the _mm512_undefined_ps() inside _mm512_max_ps, _mm512_min_ps
// and _mm512_reduce_add_ps as (maybe-)uninitialized: a false positive, the
// pass-through operand is unused without a mask.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace kvant {
namespace {

using namespace vmath;

__m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(kExpLo)), _mm512_set1_ps(kExpHi));
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, _mm512_set1_ps(kLn2Hi))),
                                 _mm512_mul_ps(n, _mm512_set1_ps(kLn2Lo)));
  __m512 p = _mm512_set1_ps(kC6);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
}

// 1 / d: vrcp14ps and one Newton step.
__m512 reciprocal(__m512 d) {
  const __m512 r = _mm512_rcp14_ps(d);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

__m512 erf16(__m512 v) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 ax = _mm512_abs_ps(v);
  const __m512 t = reciprocal(_mm512_fmadd_ps(_mm512_set1_ps(kErfP), ax, one));
  __m512 poly = _mm512_set1_ps(kA5);
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kA4));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kA3));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kA2));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kA1));
  poly = _mm512_mul_ps(poly, t);
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(ax, ax)));
  const __m512 r = _mm512_fnmadd_ps(poly, e, one);
  // r's sign bit is clear (r > 0): or in v's.
  return _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(r), _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN))));
}

__m512 sigmoid16(__m512 x) {
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
  return reciprocal(_mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

__m512 tanh16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 z = _mm512_mul_ps(ax, ax);
  __m512 p = _mm512_set1_ps(kT13);
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kT11));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kT9));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kT7));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kT5));
  p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kT3));
  const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(ax, z), p, ax);
  const __m512 e = exp16(_mm512_add_ps(ax, ax));
  const __m512 large = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), reciprocal(_mm512_add_ps(e, one)), one);
  const __m512 v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(kTanhSmall), _CMP_LT_OQ), large, small);
  return _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(v), _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN))));
}

inline __mmask16 tail_mask(int64_t left) { return static_cast<__mmask16>((1u << left) - 1u); }

// y[i] = f(x[i]) for the whole array, the tail under a mask.
template <typename F>
void map(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f(_mm512_loadu_ps(x + i)));
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, f(_mm512_maskz_loadu_ps(m, x + i)));
  }
}

}  // namespace

void vmath_exp_avx512(const float* x, float* y, int64_t n) { map(x, y, n, exp16); }
void vmath_erf_avx512(const float* x, float* y, int64_t n) { map(x, y, n, erf16); }
void vmath_sigmoid_avx512(const float* x, float* y, int64_t n) { map(x, y, n, sigmoid16); }
void vmath_tanh_avx512(const float* x, float* y, int64_t n) { map(x, y, n, tanh16); }

void vmath_silu_avx512(const float* x, float* y, int64_t n) {
  map(x, y, n, [](__m512 v) { return _mm512_mul_ps(v, sigmoid16(v)); });
}

void vmath_gelu_erf_avx512(const float* x, float* y, int64_t n, float divisor, float half) {
  const __m512 d = _mm512_set1_ps(divisor), h = _mm512_set1_ps(half), one = _mm512_set1_ps(1.0f);
  map(x, y, n,
      [&](__m512 v) { return _mm512_mul_ps(_mm512_mul_ps(v, _mm512_add_ps(erf16(_mm512_div_ps(v, d)), one)), h); });
}

float vmath_exp_shifted_sum_avx512(const float* x, float shift, float* y, int64_t n) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    _mm512_storeu_ps(y + i, e);
    acc = _mm512_add_ps(acc, e);
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s));
    _mm512_mask_storeu_ps(y + i, m, e);
    acc = _mm512_mask_add_ps(acc, m, acc, e);
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace kvant
