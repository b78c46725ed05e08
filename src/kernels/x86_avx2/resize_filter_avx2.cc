// Resize filter entry resize_filter_avx2 (resize_filter.h): 4 doubles at a
// time with the scalar code's operations per lane (0.0 + products added in
// tap order, separate multiply and add, round-to-nearest conversion to
// float); the W pass permutes its taps out of a 4-value window where the
// step found one (upsampling), else gathers them. Tails run the generic entry.
#include <immintrin.h>

#include "kernels/resize_filter.h"

namespace kvant {

void resize_h_pass_avx2(const float* const* rows, const double* w, int taps, double* t, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    __m256d acc = _mm256_setzero_pd();
    for (int k = 0; k < taps; ++k) {
      const __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(rows[k] + i));
      acc = _mm256_add_pd(acc, _mm256_mul_pd(_mm256_set1_pd(w[k]), x));
    }
    _mm256_storeu_pd(t + i, acc);
  }
  if (i < n) {
    const float* tail[4];
    for (int k = 0; k < taps && k < 4; ++k) tail[k] = rows[k] + i;
    resize_h_pass_generic(tail, w, taps, t + i, n - i);
  }
}

void resize_w_pass_avx2(const double* t, const int64_t* idx, const double* w, int taps, float* y, int64_t m,
                        const int64_t* base, const int32_t* ctrl) {
  int64_t o = 0;
  for (; o + 4 <= m; o += 4) {
    __m256d acc = _mm256_setzero_pd();
    const int64_t g = o / 4;
    if (base != nullptr && base[g] >= 0 && taps <= 2) {
      // The taps of these 4 outputs lie in 4 neighbouring values: permute
      // them out of one load instead of gathering.
      const __m256 window = _mm256_castpd_ps(_mm256_loadu_pd(t + base[g]));
      for (int k = 0; k < taps; ++k) {
        const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ctrl + (g * taps + k) * 8));
        const __m256d v = _mm256_castps_pd(_mm256_permutevar8x32_ps(window, c));
        acc = _mm256_add_pd(acc, _mm256_mul_pd(_mm256_loadu_pd(w + k * m + o), v));
      }
    } else if (base != nullptr && base[g] >= 0) {
      // 8 neighbouring values (cubic): permute both halves, pick per lane.
      const __m256 lo = _mm256_castpd_ps(_mm256_loadu_pd(t + base[g]));
      const __m256 hi = _mm256_castpd_ps(_mm256_loadu_pd(t + base[g] + 4));
      const __m256i seven = _mm256_set1_epi32(7);
      for (int k = 0; k < taps; ++k) {
        const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ctrl + (g * taps + k) * 8));
        const __m256d upper = _mm256_castsi256_pd(_mm256_cmpgt_epi32(c, seven));
        const __m256d v = _mm256_blendv_pd(_mm256_castps_pd(_mm256_permutevar8x32_ps(lo, c)),
                                           _mm256_castps_pd(_mm256_permutevar8x32_ps(hi, c)), upper);
        acc = _mm256_add_pd(acc, _mm256_mul_pd(_mm256_loadu_pd(w + k * m + o), v));
      }
    } else {
      for (int k = 0; k < taps; ++k) {
        const __m256i vi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(idx + k * m + o));
        const __m256d v = _mm256_i64gather_pd(t, vi, 8);
        acc = _mm256_add_pd(acc, _mm256_mul_pd(_mm256_loadu_pd(w + k * m + o), v));
      }
    }
    _mm_storeu_ps(y + o, _mm256_cvtpd_ps(acc));
  }
  for (; o < m; ++o) {  // the generic entry's loop, on the planar tables
    double acc = 0.0;
    for (int k = 0; k < taps; ++k) acc += w[k * m + o] * t[idx[k * m + o]];
    y[o] = static_cast<float>(acc);
  }
}

}  // namespace kvant
