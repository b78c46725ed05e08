// AVX2 entry of kernels/dynamic_quant.h: 8 floats per step, scalar tails
// with the same operations.
#include <immintrin.h>

#include <cmath>

#include "kernels/dynamic_quant.h"

namespace kvant {

bool range_f32_avx2(const float* x, int64_t n, float* lo, float* hi) {
  __m256 l = _mm256_setzero_ps(), h = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    l = _mm256_min_ps(l, v);
    h = _mm256_max_ps(h, v);
  }
  if (_mm256_movemask_ps(nan) != 0) return false;
  alignas(32) float ls[8], hs[8];
  _mm256_store_ps(ls, l);
  _mm256_store_ps(hs, h);
  float lmin = 0.0f, hmax = 0.0f;
  for (int k = 0; k < 8; ++k) {
    lmin = ls[k] < lmin ? ls[k] : lmin;
    hmax = hs[k] > hmax ? hs[k] : hmax;
  }
  for (; i < n; ++i) {
    if (std::isnan(x[i])) return false;
    lmin = x[i] < lmin ? x[i] : lmin;
    hmax = x[i] > hmax ? x[i] : hmax;
  }
  *lo = lmin;
  *hi = hmax;
  return true;
}

void quantize_u8_avx2(const float* x, int64_t n, float scale, int32_t zp, uint8_t* q) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256 bound = _mm256_set1_ps(1e6f), neg = _mm256_set1_ps(-1e6f);
  const __m256i z = _mm256_set1_epi32(zp);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 f = _mm256_div_ps(_mm256_loadu_ps(x + i), s);
    f = _mm256_min_ps(_mm256_max_ps(f, neg), bound);
    const __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(f), z);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packus_epi16(w, w));  // saturates to [0, 255]
  }
  for (; i < n; ++i) {
    float f = x[i] / scale;
    f = f < -1e6f ? -1e6f : (f > 1e6f ? 1e6f : f);
    const int32_t v = static_cast<int32_t>(std::nearbyint(f)) + zp;
    q[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
}

void dequant_rows_avx2(const DequantRowsArgs& a) {
  const __m256 lo = _mm256_set1_ps(a.lo), hi = _mm256_set1_ps(a.hi);
  for (int r = 0; r < a.rows; ++r) {
    const int32_t* acc = a.acc + r * a.acc_stride;
    float* out = a.out + r * a.out_stride;
    int j = 0;
    for (; j + 8 <= a.n; j += 8) {
      __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j));
      if (a.ibias != nullptr)
        c = _mm256_add_epi32(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.ibias + j)));
      __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(c), _mm256_loadu_ps(a.mult + j));
      if (a.fbias != nullptr) v = _mm256_add_ps(v, _mm256_loadu_ps(a.fbias + j));
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      _mm256_storeu_ps(out + j, v);
    }
    for (; j < a.n; ++j) {
      const int32_t c = a.ibias != nullptr
                            ? static_cast<int32_t>(static_cast<uint32_t>(acc[j]) + static_cast<uint32_t>(a.ibias[j]))
                            : acc[j];
      float v = static_cast<float>(c) * a.mult[j];
      if (a.fbias != nullptr) v += a.fbias[j];
      v = v > a.lo ? v : (v != v ? v : a.lo);
      v = v < a.hi ? v : (v != v ? v : a.hi);
      out[j] = v;
    }
  }
}

void quantize_centered_avx2(const float* x, int64_t n, float scale, int32_t zp, float* out) {
  const __m256 s = _mm256_set1_ps(scale);
  const __m256 bound = _mm256_set1_ps(1e6f), neg = _mm256_set1_ps(-1e6f);
  const __m256i z = _mm256_set1_epi32(zp), zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(255);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 f = _mm256_div_ps(_mm256_loadu_ps(x + i), s);
    f = _mm256_min_ps(_mm256_max_ps(f, neg), bound);
    __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(f), z);
    v = _mm256_sub_epi32(_mm256_min_epi32(_mm256_max_epi32(v, zero), top), z);
    _mm256_storeu_ps(out + i, _mm256_cvtepi32_ps(v));
  }
  for (; i < n; ++i) {
    float f = x[i] / scale;
    f = f < -1e6f ? -1e6f : (f > 1e6f ? 1e6f : f);
    const int32_t v = static_cast<int32_t>(std::nearbyint(f)) + zp;
    out[i] = static_cast<float>((v < 0 ? 0 : (v > 255 ? 255 : v)) - zp);
  }
}

namespace {

// One output value of dequant_t, the scalar way (tails).
inline float dequant_one(const DequantRowsArgs& a, int r, int j) {
  const int32_t acc = a.acc[r * a.acc_stride + j];
  const int32_t c =
      a.ibias != nullptr ? static_cast<int32_t>(static_cast<uint32_t>(acc) + static_cast<uint32_t>(a.ibias[j])) : acc;
  float v = static_cast<float>(c) * a.mult[j];
  if (a.fbias != nullptr) v += a.fbias[j];
  v = v < a.lo ? a.lo : v;     // std::max(v, lo)
  return a.hi < v ? a.hi : v;  // std::min(v, hi)
}

}  // namespace

// Blocks of 8 rows x 8 columns: dequantized along the rows as dequant_rows
// does, transposed in registers, stored as 8 runs of 8 along the planes.
void dequant_t_avx2(const DequantRowsArgs& a, float* range) {
  const __m256 lo = _mm256_set1_ps(a.lo), hi = _mm256_set1_ps(a.hi);
  __m256 rlo = _mm256_setzero_ps(), rhi = rlo, rnan = rlo;  // the range of the stored values (vector part)
  float slo = 0.0f, shi = 0.0f;                             // and of the scalar tails
  bool snan = false;
  auto scalar = [&](int r, int k) {
    const float v = dequant_one(a, r, k);
    a.out[k * a.out_stride + r] = v;
    snan = snan || v != v;
    slo = v < slo ? v : slo;
    shi = v > shi ? v : shi;
  };
  const int rows8 = a.rows / 8 * 8, n8 = a.n / 8 * 8;
  for (int j = 0; j < n8; j += 8) {
    const __m256 mult = _mm256_loadu_ps(a.mult + j);
    const __m256i ib =
        a.ibias != nullptr ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.ibias + j)) : _mm256_setzero_si256();
    const __m256 fb = a.fbias != nullptr ? _mm256_loadu_ps(a.fbias + j) : _mm256_setzero_ps();
    for (int r = 0; r < rows8; r += 8) {
      __m256 v[8];
      for (int i = 0; i < 8; ++i) {
        __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.acc + (r + i) * a.acc_stride + j));
        if (a.ibias != nullptr) c = _mm256_add_epi32(c, ib);
        __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(c), mult);
        if (a.fbias != nullptr) f = _mm256_add_ps(f, fb);
        v[i] = _mm256_min_ps(hi, _mm256_max_ps(lo, f));  // NaN and -0 pass as std::min(std::max(v, lo), hi)
        if (range != nullptr) {
          rnan = _mm256_or_ps(rnan, _mm256_cmp_ps(v[i], v[i], _CMP_UNORD_Q));
          rlo = _mm256_min_ps(rlo, v[i]);
          rhi = _mm256_max_ps(rhi, v[i]);
        }
      }
      // 8x8 transpose: v[i][k] -> t[k][i].
      const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
      const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
      const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
      const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      const __m256 o[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                           _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                           _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                           _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
      for (int k = 0; k < 8; ++k) _mm256_storeu_ps(a.out + (j + k) * a.out_stride + r, o[k]);
    }
    for (int r = rows8; r < a.rows; ++r) {
      for (int k = j; k < j + 8; ++k) scalar(r, k);
    }
  }
  for (int k = n8; k < a.n; ++k) {
    for (int r = 0; r < a.rows; ++r) scalar(r, k);
  }
  if (range == nullptr) return;
  alignas(32) float ls[8], hs[8];
  _mm256_store_ps(ls, rlo);
  _mm256_store_ps(hs, rhi);
  for (int i = 0; i < 8; ++i) {
    slo = ls[i] < slo ? ls[i] : slo;
    shi = hs[i] > shi ? hs[i] : shi;
  }
  if (snan || _mm256_movemask_ps(rnan) != 0) range[2] = 1.0f;
  range[0] = slo < range[0] ? slo : range[0];
  range[1] = shi > range[1] ? shi : range[1];
}

}  // namespace kvant
