#include "kernels/gemv_w8.h"

#include "kernels/cpu_features.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace kvant {

namespace {

void rows_scalar(const W8Matrix& w, const float* x, float* y, int n0, int n1, bool accumulate) {
  for (int n = n0; n < n1; ++n) {
    const int8_t* row = w.w.data() + static_cast<int64_t>(n) * w.k;
    float lanes[8] = {};
    int k = 0;
    for (; k + 8 <= w.k; k += 8) {
      for (int l = 0; l < 8; ++l) lanes[l] += x[k + l] * static_cast<float>(row[k + l]);
    }
    float sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5])) + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for (; k < w.k; ++k) sum += x[k] * static_cast<float>(row[k]);
    const float v = sum * w.scale[static_cast<size_t>(n)];
    y[n] = accumulate ? y[n] + v : v;
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

__attribute__((target("avx2,fma"))) inline __m256 widen(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

// Rows [n0, n1) with k a multiple of 8 handled here; the tail k by scalar code.
__attribute__((target("avx2,fma"))) void rows_avx2(const W8Matrix& w, const float* x, float* y, int n0, int n1,
                                                   bool accumulate) {
  const int k8 = w.k / 8 * 8;
  int n = n0;
  for (; n + 4 <= n1; n += 4) {
    const int8_t* r0 = w.w.data() + static_cast<int64_t>(n) * w.k;
    const int8_t* r1 = r0 + w.k;
    const int8_t* r2 = r1 + w.k;
    const int8_t* r3 = r2 + w.k;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int k = 0; k < k8; k += 8) {
      const __m256 xv = _mm256_loadu_ps(x + k);
      a0 = _mm256_fmadd_ps(xv, widen(r0 + k), a0);
      a1 = _mm256_fmadd_ps(xv, widen(r1 + k), a1);
      a2 = _mm256_fmadd_ps(xv, widen(r2 + k), a2);
      a3 = _mm256_fmadd_ps(xv, widen(r3 + k), a3);
    }
    float sums[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
    const int8_t* rows[4] = {r0, r1, r2, r3};
    for (int j = 0; j < 4; ++j) {
      for (int k = k8; k < w.k; ++k) sums[j] += x[k] * static_cast<float>(rows[j][k]);
      const float v = sums[j] * w.scale[static_cast<size_t>(n + j)];
      y[n + j] = accumulate ? y[n + j] + v : v;
    }
  }
  for (; n < n1; ++n) {
    const int8_t* r = w.w.data() + static_cast<int64_t>(n) * w.k;
    __m256 a = _mm256_setzero_ps();
    for (int k = 0; k < k8; k += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), widen(r + k), a);
    float sum = hsum(a);
    for (int k = k8; k < w.k; ++k) sum += x[k] * static_cast<float>(r[k]);
    const float v = sum * w.scale[static_cast<size_t>(n)];
    y[n] = accumulate ? y[n] + v : v;
  }
}
#endif

}  // namespace

void gemv_w8(const W8Matrix& w, const float* x, int ldx, int M, float* y, int ldy, bool accumulate) {
  for (int m = 0; m < M; ++m) {
    const float* xm = x + static_cast<int64_t>(m) * ldx;
    float* ym = y + static_cast<int64_t>(m) * ldy;
#if defined(__x86_64__)
    if (avx2_kernels_enabled()) {
      rows_avx2(w, xm, ym, 0, w.n, accumulate);
      continue;
    }
#endif
    rows_scalar(w, xm, ym, 0, w.n, accumulate);
  }
}

}  // namespace kvant
