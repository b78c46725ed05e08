// Depthwise conv plane kernel dwconv_f32_avx512 (sconv_kernels.h): vectors of
// 16 output pixels along a row; 4 vectors (possibly from different rows) in
// flight so the tap chains overlap. Stride 2 loads 32 inputs and keeps the
// even ones (one vpermt2ps). Row tails store through a mask.
#include <immintrin.h>

// GCC 12 reports the _mm512_undefined_ps() inside _mm512_max_ps, _mm512_min_ps
// and _mm512_reduce_add_ps as (maybe-)uninitialized: a false positive, the
// pass-through operand is unused without a mask.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "kernels/sconv_kernels.h"

namespace kvant {
namespace {

constexpr int kBlock = 4;  // vectors per step
constexpr int kPixels = 16;

inline int min_int(int a, int b) { return a < b ? a : b; }

template <int SW>
inline __m512 load_px(const float* p, __m512i even) {
  if constexpr (SW == 1) {
    (void)even;
    return _mm512_loadu_ps(p);
  } else {
    return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 16));
  }
}

// KH, KW > 0: the kernel size at compile time (weights held in registers);
// 0: read from p.
template <int SW, int KH, int KW>
void dw_plane(const DwPlane& p) {
  const int kh = KH > 0 ? KH : p.kh, kw = KW > 0 ? KW : p.kw;
  const int taps = kh * kw;
  const int nvx = (p.w_out + kPixels - 1) / kPixels;
  const int nv = p.h_out * nvx;
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  constexpr int kFixed = KH * KW > 0 ? KH * KW : 1;
  __m512 wfix[kFixed];
  int ofix[kFixed];
  if constexpr (KH * KW > 0) {
    for (int t = 0; t < kFixed; ++t) {
      wfix[t] = _mm512_set1_ps(p.w[t]);
      ofix[t] = (t / KW) * p.dh * p.wp + (t % KW) * p.dw;
    }
  }
  const __m512 bias = _mm512_set1_ps(p.bias);
  const __m512 lo = _mm512_set1_ps(p.act.kind == SgemmActivation::Kind::kRelu ? 0.0f : p.act.lo);
  const __m512 hi = _mm512_set1_ps(p.act.hi);
  int oy0 = 0, vx0 = 0;  // first vector of the block
  for (int v0 = 0; v0 < nv; v0 += kBlock) {
    const int nb = min_int(kBlock, nv - v0);
    const float* base[kBlock];
    float* dst[kBlock];
    __mmask16 mask[kBlock];
    int oy = oy0, vx = vx0;
    for (int i = 0; i < kBlock; ++i) {
      base[i] = p.plane + static_cast<size_t>(oy) * p.sh * p.wp + static_cast<size_t>(vx) * kPixels * SW;
      dst[i] = p.out + static_cast<size_t>(oy) * p.w_out + vx * kPixels;
      const int width = min_int(kPixels, p.w_out - vx * kPixels);
      mask[i] = static_cast<__mmask16>((1u << width) - 1u);
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
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    if constexpr (KH * KW > 0) {
#pragma GCC unroll 49
      for (int t = 0; t < kFixed; ++t) {
        acc0 = _mm512_fmadd_ps(wfix[t], load_px<SW>(base[0] + ofix[t], even), acc0);
        acc1 = _mm512_fmadd_ps(wfix[t], load_px<SW>(base[1] + ofix[t], even), acc1);
        acc2 = _mm512_fmadd_ps(wfix[t], load_px<SW>(base[2] + ofix[t], even), acc2);
        acc3 = _mm512_fmadd_ps(wfix[t], load_px<SW>(base[3] + ofix[t], even), acc3);
      }
    } else {
      for (int t = 0; t < taps; ++t) {
        const int o = (t / kw) * p.dh * p.wp + (t % kw) * p.dw;
        const __m512 w = _mm512_set1_ps(p.w[t]);
        acc0 = _mm512_fmadd_ps(w, load_px<SW>(base[0] + o, even), acc0);
        acc1 = _mm512_fmadd_ps(w, load_px<SW>(base[1] + o, even), acc1);
        acc2 = _mm512_fmadd_ps(w, load_px<SW>(base[2] + o, even), acc2);
        acc3 = _mm512_fmadd_ps(w, load_px<SW>(base[3] + o, even), acc3);
      }
    }
    const __m512 acc[kBlock] = {acc0, acc1, acc2, acc3};
    for (int i = 0; i < nb; ++i) {
      __m512 v = _mm512_add_ps(acc[i], bias);
      if (p.act.kind != SgemmActivation::Kind::kNone) v = _mm512_max_ps(v, lo);
      if (p.act.kind == SgemmActivation::Kind::kClip) v = _mm512_min_ps(v, hi);
      _mm512_mask_storeu_ps(dst[i], mask[i], v);
    }
  }
}

}  // namespace

void dwconv_plane_avx512(const DwPlane& p) {
  const bool k3 = p.kh == 3 && p.kw == 3, k5 = p.kh == 5 && p.kw == 5;
  if (p.sw == 1) return k3 ? dw_plane<1, 3, 3>(p) : k5 ? dw_plane<1, 5, 5>(p) : dw_plane<1, 0, 0>(p);
  return k3 ? dw_plane<2, 3, 3>(p) : k5 ? dw_plane<2, 5, 5>(p) : dw_plane<2, 0, 0>(p);
}

}  // namespace kvant
