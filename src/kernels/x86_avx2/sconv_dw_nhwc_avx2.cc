// The AVX2 channels-last depthwise entry (sconv_nhwc_kernels.h): 8 channels
// per ymm (a masked last vector when c is not a multiple of 8), 4 output
// pixels per pass where every tap of the 4 is inside the input (the weight
// vector of a tap loaded once for them), one pixel at a time near the
// borders, skipping the taps outside. Each output is one FMA chain from zero
// over the taps ky, kx ascending, then bias and act: the order of the table's
// contract.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>

#include "kernels/sconv_nhwc_kernels.h"

namespace kvant {
namespace {

struct Act {
  __m256 lo, hi;
  bool any, clip;
};

inline __m256 finish(__m256 acc, __m256 bias, const Act& a) {
  __m256 v = _mm256_add_ps(acc, bias);
  if (a.any) v = _mm256_max_ps(v, a.lo);
  if (a.clip) v = _mm256_min_ps(v, a.hi);
  return v;
}

// Channels [c0, c0 + 8) (MASKED: the lanes of `mask` only) of pixels
// ox .. ox + 3 of output row oy, all taps of rows [ky0, ky1) inside the input.
template <bool MASKED>
inline void block4(const DwNhwcRows& r, int oy, int ox, int c0, __m256i mask, int ky0, int ky1, const Act& a) {
  const ptrdiff_t c = r.c;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps();
  __m256 acc3 = _mm256_setzero_ps();
  const ptrdiff_t step = static_cast<ptrdiff_t>(r.sw) * c;
  for (int ky = ky0; ky < ky1; ++ky) {
    const int iy = oy * r.sh - r.pad_top + ky * r.dh;
    const float* row = r.x + static_cast<ptrdiff_t>(iy) * r.w_in * c + c0;
    const float* wrow = r.w + static_cast<ptrdiff_t>(ky) * r.kw * c + c0;
    for (int kx = 0; kx < r.kw; ++kx) {
      const float* p = row + static_cast<ptrdiff_t>(ox * r.sw - r.pad_left + kx * r.dw) * c;
      if constexpr (MASKED) {
        const __m256 w = _mm256_maskload_ps(wrow + kx * c, mask);
        acc0 = _mm256_fmadd_ps(w, _mm256_maskload_ps(p, mask), acc0);
        acc1 = _mm256_fmadd_ps(w, _mm256_maskload_ps(p + step, mask), acc1);
        acc2 = _mm256_fmadd_ps(w, _mm256_maskload_ps(p + 2 * step, mask), acc2);
        acc3 = _mm256_fmadd_ps(w, _mm256_maskload_ps(p + 3 * step, mask), acc3);
      } else {
        const __m256 w = _mm256_loadu_ps(wrow + kx * c);
        acc0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p), acc0);
        acc1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p + step), acc1);
        acc2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p + 2 * step), acc2);
        acc3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(p + 3 * step), acc3);
      }
    }
  }
  float* out = r.out + (static_cast<ptrdiff_t>(oy) * r.w_out + ox) * c + c0;
  if constexpr (MASKED) {
    const __m256 bias = _mm256_maskload_ps(r.bias + c0, mask);
    _mm256_maskstore_ps(out, mask, finish(acc0, bias, a));
    _mm256_maskstore_ps(out + c, mask, finish(acc1, bias, a));
    _mm256_maskstore_ps(out + 2 * c, mask, finish(acc2, bias, a));
    _mm256_maskstore_ps(out + 3 * c, mask, finish(acc3, bias, a));
  } else {
    const __m256 bias = _mm256_loadu_ps(r.bias + c0);
    _mm256_storeu_ps(out, finish(acc0, bias, a));
    _mm256_storeu_ps(out + c, finish(acc1, bias, a));
    _mm256_storeu_ps(out + 2 * c, finish(acc2, bias, a));
    _mm256_storeu_ps(out + 3 * c, finish(acc3, bias, a));
  }
}

// One pixel, taps outside the input skipped.
template <bool MASKED>
inline void block1(const DwNhwcRows& r, int oy, int ox, int c0, __m256i mask, int ky0, int ky1, const Act& a) {
  const ptrdiff_t c = r.c;
  __m256 acc = _mm256_setzero_ps();
  for (int ky = ky0; ky < ky1; ++ky) {
    const int iy = oy * r.sh - r.pad_top + ky * r.dh;
    const float* row = r.x + static_cast<ptrdiff_t>(iy) * r.w_in * c + c0;
    const float* wrow = r.w + static_cast<ptrdiff_t>(ky) * r.kw * c + c0;
    for (int kx = 0; kx < r.kw; ++kx) {
      const int ix = ox * r.sw - r.pad_left + kx * r.dw;
      if (ix < 0 || ix >= r.w_in) continue;
      const float* p = row + static_cast<ptrdiff_t>(ix) * c;
      if constexpr (MASKED) {
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(wrow + kx * c, mask), _mm256_maskload_ps(p, mask), acc);
      } else {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(wrow + kx * c), _mm256_loadu_ps(p), acc);
      }
    }
  }
  float* out = r.out + (static_cast<ptrdiff_t>(oy) * r.w_out + ox) * c + c0;
  if constexpr (MASKED) {
    _mm256_maskstore_ps(out, mask, finish(acc, _mm256_maskload_ps(r.bias + c0, mask), a));
  } else {
    _mm256_storeu_ps(out, finish(acc, _mm256_loadu_ps(r.bias + c0), a));
  }
}

}  // namespace

void dwconv_nhwc_rows_avx2(const DwNhwcRows& r) {
  Act a;
  a.any = r.act.kind != SgemmActivation::Kind::kNone;
  a.clip = r.act.kind == SgemmActivation::Kind::kClip;
  a.lo = _mm256_set1_ps(r.act.kind == SgemmActivation::Kind::kRelu ? 0.0f : r.act.lo);
  a.hi = _mm256_set1_ps(r.act.hi);
  const int full = r.c / 8 * 8;
  const int tail = r.c - full;
  alignas(32) int lanes[8];
  for (int i = 0; i < 8; ++i) lanes[i] = i < tail ? -1 : 0;
  const __m256i mask = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
  const __m256i none = _mm256_setzero_si256();
  // Interior columns: ox in [ox_lo, ox_hi) read every kx inside the row.
  const int span = (r.kw - 1) * r.dw;
  const int ox_lo = std::min(r.w_out, (r.pad_left + r.sw - 1) / r.sw);
  const int last = r.w_in - 1 - span + r.pad_left;  // ox * sw <= last
  const int ox_hi = last < 0 ? 0 : std::min(r.w_out, last / r.sw + 1);
  for (int oy = r.oy0; oy < r.oy1; ++oy) {
    // Kernel rows inside the input: [ky0, ky1).
    int ky0 = 0, ky1 = r.kh;
    while (ky0 < r.kh && oy * r.sh - r.pad_top + ky0 * r.dh < 0) ++ky0;
    while (ky1 > ky0 && oy * r.sh - r.pad_top + (ky1 - 1) * r.dh >= r.h_in) --ky1;
    int ox = 0;
    while (ox < r.w_out) {
      if (ox >= ox_lo && ox + 4 <= ox_hi) {
        for (int c0 = 0; c0 < full; c0 += 8) block4<false>(r, oy, ox, c0, none, ky0, ky1, a);
        if (tail > 0) block4<true>(r, oy, ox, full, mask, ky0, ky1, a);
        ox += 4;
      } else {
        for (int c0 = 0; c0 < full; c0 += 8) block1<false>(r, oy, ox, c0, none, ky0, ky1, a);
        if (tail > 0) block1<true>(r, oy, ox, full, mask, ky0, ky1, a);
        ox += 1;
      }
    }
  }
}

}  // namespace kvant
