// Depthwise conv plane kernel dwconv_f32_avx2 (sconv_kernels.h): vectors of 8 output pixels along a
// row; 4 vectors (possibly from different rows) in flight so the tap chains
// overlap. Stride 2 loads 16 inputs and keeps the even ones.
#include <immintrin.h>

#include <cstring>

#include "kernels/sconv_kernels.h"

namespace kvant {
namespace {

constexpr int kBlock = 4;  // vectors per step

inline int min_int(int a, int b) { return a < b ? a : b; }

template <int SW>
inline __m256 load_px(const float* p) {
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

// KH, KW > 0: the kernel size at compile time (weights held in registers);
// 0: read from p.
template <int SW, int KH, int KW>
void dw_plane(const DwPlane& p) {
  const int kh = KH > 0 ? KH : p.kh, kw = KW > 0 ? KW : p.kw;
  const int taps = kh * kw;
  const int nvx = (p.w_out + 7) / 8;
  const int nv = p.h_out * nvx;
  constexpr int kFixed = KH * KW > 0 ? KH * KW : 1;
  __m256 wfix[kFixed];
  int ofix[kFixed];
  if constexpr (KH * KW > 0) {
    for (int t = 0; t < kFixed; ++t) {
      wfix[t] = _mm256_broadcast_ss(p.w + t);
      ofix[t] = (t / KW) * p.dh * p.wp + (t % KW) * p.dw;
    }
  }
  const __m256 bias = _mm256_set1_ps(p.bias);
  const __m256 lo = _mm256_set1_ps(p.act.kind == SgemmActivation::Kind::kRelu ? 0.0f : p.act.lo);
  const __m256 hi = _mm256_set1_ps(p.act.hi);
  int oy0 = 0, vx0 = 0;  // first vector of the block
  for (int v0 = 0; v0 < nv; v0 += kBlock) {
    const int nb = min_int(kBlock, nv - v0);
    const float* base[kBlock];
    float* dst[kBlock];
    int width[kBlock];
    int oy = oy0, vx = vx0;
    for (int i = 0; i < kBlock; ++i) {
      base[i] = p.plane + static_cast<size_t>(oy) * p.sh * p.wp + static_cast<size_t>(vx) * 8 * SW;
      dst[i] = p.out + static_cast<size_t>(oy) * p.w_out + vx * 8;
      width[i] = min_int(8, p.w_out - vx * 8);
      if (i + 1 < nb && ++vx == nvx) {  // past the block's end, repeat the last vector
        vx = 0;
        ++oy;
      }
      if (i + 1 == kBlock) {
        if (++vx == nvx) {
          vx = 0;
          ++oy;
        }
        oy0 = oy;
        vx0 = vx;
      }
    }
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    if constexpr (KH * KW > 0) {
#pragma GCC unroll 49
      for (int t = 0; t < kFixed; ++t) {
        acc0 = _mm256_fmadd_ps(wfix[t], load_px<SW>(base[0] + ofix[t]), acc0);
        acc1 = _mm256_fmadd_ps(wfix[t], load_px<SW>(base[1] + ofix[t]), acc1);
        acc2 = _mm256_fmadd_ps(wfix[t], load_px<SW>(base[2] + ofix[t]), acc2);
        acc3 = _mm256_fmadd_ps(wfix[t], load_px<SW>(base[3] + ofix[t]), acc3);
      }
    } else {
      for (int t = 0; t < taps; ++t) {
        const int o = (t / kw) * p.dh * p.wp + (t % kw) * p.dw;
        const __m256 w = _mm256_broadcast_ss(p.w + t);
        acc0 = _mm256_fmadd_ps(w, load_px<SW>(base[0] + o), acc0);
        acc1 = _mm256_fmadd_ps(w, load_px<SW>(base[1] + o), acc1);
        acc2 = _mm256_fmadd_ps(w, load_px<SW>(base[2] + o), acc2);
        acc3 = _mm256_fmadd_ps(w, load_px<SW>(base[3] + o), acc3);
      }
    }
    const __m256 acc[kBlock] = {acc0, acc1, acc2, acc3};
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

void dwconv_plane_avx2(const DwPlane& p) {
  const bool k3 = p.kh == 3 && p.kw == 3, k5 = p.kh == 5 && p.kw == 5;
  if (p.sw == 1) return k3 ? dw_plane<1, 3, 3>(p) : k5 ? dw_plane<1, 5, 5>(p) : dw_plane<1, 0, 0>(p);
  return k3 ? dw_plane<2, 3, 3>(p) : k5 ? dw_plane<2, 5, 5>(p) : dw_plane<2, 0, 0>(p);
}

}  // namespace kvant
