// Depthwise conv plane kernel, AVX2+FMA: vectors of 8 output pixels along a
// row; 4 vectors (possibly from different rows) in flight so the tap chains
// overlap. Stride 2 loads 16 inputs and keeps the even ones.
#include "kernels/x86_avx2/sconv_dw_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace kvant {
namespace {

constexpr int kBlock = 4;  // vectors per step

template <int SW>
__attribute__((target("avx2,fma"))) inline __m256 load_px(const float* p) {
  if constexpr (SW == 1) {
    return _mm256_loadu_ps(p);
  } else {
    const __m256 a = _mm256_loadu_ps(p);      // p0..p7
    const __m256 b = _mm256_loadu_ps(p + 8);  // p8..p15
    // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6]
    const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  }
}

template <int SW>
__attribute__((target("avx2,fma"))) void dw_plane(const DwPlane& p) {
  const int nvx = (p.w_out + 7) / 8;
  const int nv = p.h_out * nvx;
  const int taps = p.kh * p.kw;
  // Offsets of each tap from a vector's first input.
  int off[64];
  const bool small = taps <= 64;
  if (small) {
    for (int ky = 0; ky < p.kh; ++ky)
      for (int kx = 0; kx < p.kw; ++kx) off[ky * p.kw + kx] = ky * p.dh * p.wp + kx * p.dw;
  }
  const __m256 bias = _mm256_set1_ps(p.bias);
  const __m256 lo = _mm256_set1_ps(p.act.kind == SgemmActivation::Kind::kRelu ? 0.0f : p.act.lo);
  const __m256 hi = _mm256_set1_ps(p.act.hi);
  for (int v0 = 0; v0 < nv; v0 += kBlock) {
    const int nb = std::min(kBlock, nv - v0);
    const float* base[kBlock];
    float* dst[kBlock];
    int width[kBlock];
    for (int i = 0; i < kBlock; ++i) {
      const int v = v0 + std::min(i, nb - 1);
      const int oy = v / nvx, ox = (v % nvx) * 8;
      base[i] = p.plane + static_cast<size_t>(oy) * p.sh * p.wp + static_cast<size_t>(ox) * SW;
      dst[i] = p.out + static_cast<size_t>(oy) * p.w_out + ox;
      width[i] = std::min(8, p.w_out - ox);
    }
    __m256 acc[kBlock];
#pragma GCC unroll 4
    for (int i = 0; i < kBlock; ++i) acc[i] = _mm256_setzero_ps();
    for (int t = 0; t < taps; ++t) {
      const int o = small ? off[t] : (t / p.kw) * p.dh * p.wp + (t % p.kw) * p.dw;
      const __m256 w = _mm256_broadcast_ss(p.w + t);
#pragma GCC unroll 4
      for (int i = 0; i < kBlock; ++i) acc[i] = _mm256_fmadd_ps(w, load_px<SW>(base[i] + o), acc[i]);
    }
    for (int i = 0; i < nb; ++i) {
      __m256 v = _mm256_add_ps(acc[i], bias);
      if (p.act.kind != SgemmActivation::Kind::kNone) v = _mm256_max_ps(v, lo);
      if (p.act.kind == SgemmActivation::Kind::kClip) v = _mm256_min_ps(v, hi);
      if (width[i] == 8) {
        _mm256_storeu_ps(dst[i], v);
      } else {
        alignas(32) float buf[8];
        _mm256_store_ps(buf, v);
        std::memcpy(dst[i], buf, static_cast<size_t>(width[i]) * sizeof(float));
      }
    }
  }
}

}  // namespace

void sconv_dw_plane_avx2(const DwPlane& p) {
  if (p.sw == 1) return dw_plane<1>(p);
  return dw_plane<2>(p);
}

}  // namespace kvant
