// Vector float math entry vmath_f32_avx2 (vmath.h has the formulas): 8 lanes
// per step; a tail of fewer than 8 goes through a zero-padded 8-float buffer,
// so every element takes the vector formula.
#include <immintrin.h>

#include <cstring>

#include "kernels/vmath_kernels.h"

namespace kvant {
namespace {

using namespace vmath;

__m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kExpLo)), _mm256_set1_ps(kExpHi));
  const __m256 n =
      _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(kLn2Hi))),
                                 _mm256_mul_ps(n, _mm256_set1_ps(kLn2Lo)));
  __m256 p = _mm256_set1_ps(kC6);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

__m256 erf8(__m256 v) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  const __m256 ax = _mm256_andnot_ps(sign, v);
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(kErfP), ax, one));
  __m256 poly = _mm256_set1_ps(kA5);
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kA4));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kA3));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kA2));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kA1));
  poly = _mm256_mul_ps(poly, t);
  const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(ax, ax)));
  const __m256 r = _mm256_fnmadd_ps(poly, e, one);
  return _mm256_or_ps(r, _mm256_and_ps(v, sign));
}

__m256 sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 e = exp8(_mm256_xor_ps(x, _mm256_set1_ps(-0.0f)));
  return _mm256_div_ps(one, _mm256_add_ps(one, e));
}

__m256 tanh8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  const __m256 ax = _mm256_andnot_ps(sign, x);
  const __m256 z = _mm256_mul_ps(ax, ax);
  __m256 p = _mm256_set1_ps(kT13);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kT11));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kT9));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kT7));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kT5));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kT3));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(ax, z), p, ax);
  const __m256 e = exp8(_mm256_add_ps(ax, ax));
  const __m256 large = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  const __m256 v = _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(kTanhSmall), _CMP_LT_OQ));
  return _mm256_or_ps(v, _mm256_and_ps(x, sign));
}

// y[i] = f(x[i]) for the whole array: full vectors, then the tail through a
// buffer.
template <typename F>
void map(const float* x, float* y, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, f(_mm256_loadu_ps(x + i)));
  if (i < n) {
    alignas(32) float buf[8] = {};
    const size_t bytes = static_cast<size_t>(n - i) * sizeof(float);
    std::memcpy(buf, x + i, bytes);
    _mm256_store_ps(buf, f(_mm256_load_ps(buf)));
    std::memcpy(y + i, buf, bytes);
  }
}

float hsum(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float sum = 0;
  for (float l : lanes) sum += l;
  return sum;
}

template <bool is_signed>
int64_t quantize8(const float* x, uint8_t* y, int64_t n, float scale, int32_t zp) {
  const __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps(static_cast<float>(zp));
  const __m256 lo = _mm256_set1_ps(is_signed ? -128.0f : 0.0f), hi = _mm256_set1_ps(is_signed ? 127.0f : 255.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 r = _mm256_div_ps(_mm256_loadu_ps(x + i), s);
    // NaN -> 0 before the zero point is added, as the reference does.
    r = _mm256_and_ps(r, _mm256_cmp_ps(r, r, _CMP_ORD_Q));
    __m256 q = _mm256_round_ps(r, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 nan_mask = _mm256_cmp_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i), _CMP_UNORD_Q);
    q = _mm256_blendv_ps(_mm256_add_ps(q, z), _mm256_setzero_ps(), nan_mask);
    q = _mm256_min_ps(_mm256_max_ps(q, lo), hi);
    const __m256i qi = _mm256_cvtps_epi32(q);
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
    const __m128i b = is_signed ? _mm_packs_epi16(w16, w16) : _mm_packus_epi16(w16, w16);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + i), b);
  }
  return i;
}

}  // namespace

void vmath_exp_avx2(const float* x, float* y, int64_t n) { map(x, y, n, exp8); }
void vmath_erf_avx2(const float* x, float* y, int64_t n) { map(x, y, n, erf8); }
void vmath_sigmoid_avx2(const float* x, float* y, int64_t n) { map(x, y, n, sigmoid8); }
void vmath_tanh_avx2(const float* x, float* y, int64_t n) { map(x, y, n, tanh8); }

void vmath_silu_avx2(const float* x, float* y, int64_t n) {
  map(x, y, n, [](__m256 v) { return _mm256_mul_ps(v, sigmoid8(v)); });
}

void vmath_gelu_erf_avx2(const float* x, float* y, int64_t n, float divisor, float half) {
  const __m256 d = _mm256_set1_ps(divisor), h = _mm256_set1_ps(half), one = _mm256_set1_ps(1.0f);
  map(x, y, n,
      [&](__m256 v) { return _mm256_mul_ps(_mm256_mul_ps(v, _mm256_add_ps(erf8(_mm256_div_ps(v, d)), one)), h); });
}

float vmath_exp_shifted_sum_avx2(const float* x, float shift, float* y, int64_t n) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(y + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum(acc);
  if (i < n) {
    alignas(32) float buf[8] = {};
    const int64_t tail = n - i;
    std::memcpy(buf, x + i, static_cast<size_t>(tail) * sizeof(float));
    _mm256_store_ps(buf, exp8(_mm256_sub_ps(_mm256_load_ps(buf), s)));
    std::memcpy(y + i, buf, static_cast<size_t>(tail) * sizeof(float));
    for (int64_t j = 0; j < tail; ++j) sum += buf[j];
  }
  return sum;
}

void vmath_quantize_avx2(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed) {
  auto* out = static_cast<uint8_t*>(y);
  const int64_t done = is_signed ? quantize8<true>(x, out, n, scale, zp) : quantize8<false>(x, out, n, scale, zp);
  vmath_quantize_generic(x + done, out + done, n - done, scale, zp, is_signed);
}

}  // namespace kvant
