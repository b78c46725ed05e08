// int8-weight GEMV entry gemv_w8_avx2 (gemv_w8.h): four rows at a time,
// eight k per step (int8 widened to float in registers), one horizontal sum
// per row, then the k tail in scalar code; and its blocked-scale variant.
#include <immintrin.h>

#include "kernels/gemv_w8_kernels.h"

namespace kvant {
namespace {

float hsum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

__m256 widen(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

void store(const GemvW8Args& a, int n, float sum) {
  const float v = sum * a.scale[n];
  a.y[n] = a.accumulate ? a.y[n] + v : v;
}

}  // namespace

void gemv_w8_row_avx2(const GemvW8Args& a) {
  const int k8 = a.k / 8 * 8;
  const float* x = a.x;
  int n = 0;
  for (; n + 4 <= a.n; n += 4) {
    const int8_t* r0 = a.w + static_cast<int64_t>(n) * a.k;
    const int8_t* r1 = r0 + a.k;
    const int8_t* r2 = r1 + a.k;
    const int8_t* r3 = r2 + a.k;
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
      for (int k = k8; k < a.k; ++k) sums[j] += x[k] * static_cast<float>(rows[j][k]);
      store(a, n + j, sums[j]);
    }
  }
  for (; n < a.n; ++n) {
    const int8_t* r = a.w + static_cast<int64_t>(n) * a.k;
    __m256 acc = _mm256_setzero_ps();
    for (int k = 0; k < k8; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), widen(r + k), acc);
    float sum = hsum(acc);
    for (int k = k8; k < a.k; ++k) sum += x[k] * static_cast<float>(r[k]);
    store(a, n, sum);
  }
}

// Blocked scales: four rows at a time, per block 8-lane partial sums scaled
// into the row totals (FMA), the block's k tail (past a multiple of 8) in
// scalar code.
void gemv_w8_row_blocked_avx2(const GemvW8Args& a) {
  const int blocks = (a.k + a.block - 1) / a.block;
  const float* x = a.x;
  int n = 0;
  for (; n + 4 <= a.n; n += 4) {
    const int8_t* rows[4];
    for (int j = 0; j < 4; ++j) rows[j] = a.w + static_cast<int64_t>(n + j) * a.k;
    __m256 tot[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float tails[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int b = 0; b < blocks; ++b) {
      const int k0 = b * a.block, k1 = a.k < k0 + a.block ? a.k : k0 + a.block;
      const int k8 = k0 + (k1 - k0) / 8 * 8;
      __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int k = k0; k < k8; k += 8) {
        const __m256 xv = _mm256_loadu_ps(x + k);
        for (int j = 0; j < 4; ++j) acc[j] = _mm256_fmadd_ps(xv, widen(rows[j] + k), acc[j]);
      }
      for (int j = 0; j < 4; ++j) {
        const float s = a.scale[static_cast<int64_t>(n + j) * blocks + b];
        tot[j] = _mm256_fmadd_ps(acc[j], _mm256_set1_ps(s), tot[j]);
        float t = 0.0f;
        for (int k = k8; k < k1; ++k) t += x[k] * static_cast<float>(rows[j][k]);
        tails[j] += t * s;
      }
    }
    for (int j = 0; j < 4; ++j) {
      const float v = hsum(tot[j]) + tails[j];
      a.y[n + j] = a.accumulate ? a.y[n + j] + v : v;
    }
  }
  for (; n < a.n; ++n) {
    const int8_t* r = a.w + static_cast<int64_t>(n) * a.k;
    __m256 tot = _mm256_setzero_ps();
    float tail = 0.0f;
    for (int b = 0; b < blocks; ++b) {
      const int k0 = b * a.block, k1 = a.k < k0 + a.block ? a.k : k0 + a.block;
      const int k8 = k0 + (k1 - k0) / 8 * 8;
      __m256 acc = _mm256_setzero_ps();
      for (int k = k0; k < k8; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), widen(r + k), acc);
      const float s = a.scale[static_cast<int64_t>(n) * blocks + b];
      tot = _mm256_fmadd_ps(acc, _mm256_set1_ps(s), tot);
      float t = 0.0f;
      for (int k = k8; k < k1; ++k) t += x[k] * static_cast<float>(r[k]);
      tail += t * s;
    }
    const float v = hsum(tot) + tail;
    a.y[n] = a.accumulate ? a.y[n] + v : v;
  }
}

}  // namespace kvant
