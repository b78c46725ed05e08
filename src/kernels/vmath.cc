#include "kernels/vmath.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu_features.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kvant {

namespace {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpLo = -87.3f, kExpHi = 88.3f;  // 2^n stays a normal float
// 1/k! for the Taylor polynomial of e^r.
constexpr float kC2 = 1.0f / 2, kC3 = 1.0f / 6, kC4 = 1.0f / 24, kC5 = 1.0f / 120, kC6 = 1.0f / 720;

float exp_scalar(float x) {
  x = std::min(std::max(x, kExpLo), kExpHi);
  const float n = std::nearbyint(x * kLog2e);
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  const float p = 1.0f + r * (1.0f + r * (kC2 + r * (kC3 + r * (kC4 + r * (kC5 + r * kC6)))));
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

constexpr float kErfP = 0.3275911f, kA1 = 0.254829592f, kA2 = -0.284496736f, kA3 = 1.421413741f, kA4 = -1.453152027f,
                kA5 = 1.061405429f;

float erf_scalar(float x) {
  const float ax = std::abs(x);
  const float t = 1.0f / (1.0f + kErfP * ax);
  const float poly = t * (kA1 + t * (kA2 + t * (kA3 + t * (kA4 + t * kA5))));
  const float v = 1.0f - poly * exp_scalar(-ax * ax);
  return x < 0 ? -v : v;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline __m256 exp8(__m256 x) {
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

__attribute__((target("avx2,fma"))) int64_t exp_avx2(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_loadu_ps(x + i)));
  return i;
}

__attribute__((target("avx2,fma"))) int64_t erf_avx2(const float* x, float* y, int64_t n) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
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
    _mm256_storeu_ps(y + i, _mm256_or_ps(r, _mm256_and_ps(v, sign)));
  }
  return i;
}

__attribute__((target("avx2,fma"))) int64_t exp_shifted_avx2(const float* x, float shift, float* y, int64_t n,
                                                             float& sum) {
  const __m256 s = _mm256_set1_ps(shift);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), s));
    _mm256_storeu_ps(y + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, acc);
  sum = 0;
  for (float v : lanes) sum += v;
  return i;
}
#endif

}  // namespace

void exp_f32(const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if defined(__x86_64__)
  if (avx2_kernels_enabled()) i = exp_avx2(x, y, n);
#endif
  for (; i < n; ++i) y[i] = exp_scalar(x[i]);
}

void erf_f32(const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if defined(__x86_64__)
  if (avx2_kernels_enabled()) i = erf_avx2(x, y, n);
#endif
  for (; i < n; ++i) y[i] = erf_scalar(x[i]);
}

float exp_shifted_sum_f32(const float* x, float shift, float* y, int64_t n) {
  int64_t i = 0;
  float sum = 0;
#if defined(__x86_64__)
  if (avx2_kernels_enabled()) i = exp_shifted_avx2(x, shift, y, n, sum);
#endif
  for (; i < n; ++i) {
    y[i] = exp_scalar(x[i] - shift);
    sum += y[i];
  }
  return sum;
}

}  // namespace kvant

namespace kvant {

namespace {

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) int64_t sigmoid_avx2(const float* x, float* y, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp8(_mm256_xor_ps(_mm256_loadu_ps(x + i), sign));
    _mm256_storeu_ps(y + i, _mm256_div_ps(one, _mm256_add_ps(one, e)));
  }
  return i;
}

template <bool is_signed>
__attribute__((target("avx2,fma"))) int64_t quantize_avx2(const float* x, uint8_t* y, int64_t n, float scale,
                                                          int32_t zp) {
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
#endif

}  // namespace

void sigmoid_f32(const float* x, float* y, int64_t n) {
  int64_t i = 0;
#if defined(__x86_64__)
  if (avx2_kernels_enabled()) i = sigmoid_avx2(x, y, n);
#endif
  for (; i < n; ++i) y[i] = 1.0f / (1.0f + exp_scalar(-x[i]));
}

void quantize_f32(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed) {
  auto* out = static_cast<uint8_t*>(y);
  int64_t i = 0;
#if defined(__x86_64__)
  if (avx2_kernels_enabled())
    i = is_signed ? quantize_avx2<true>(x, out, n, scale, zp) : quantize_avx2<false>(x, out, n, scale, zp);
#endif
  const double lo = is_signed ? -128.0 : 0.0, hi = is_signed ? 127.0 : 255.0;
  for (; i < n; ++i) {
    const float r = x[i] / scale;
    const double v = std::isnan(r) ? 0.0 : std::nearbyint(static_cast<double>(r)) + zp;
    const auto q = static_cast<int32_t>(std::clamp(v, lo, hi));
    out[i] = static_cast<uint8_t>(q & 0xff);
  }
}

void dequantize_f32(const void* q, float* y, int64_t n, float scale, int32_t zp, bool is_signed) {
  if (is_signed) {
    const auto* in = static_cast<const int8_t*>(q);
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(in[i] - zp) * scale;
  } else {
    const auto* in = static_cast<const uint8_t*>(q);
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(in[i] - zp) * scale;
  }
}

}  // namespace kvant
