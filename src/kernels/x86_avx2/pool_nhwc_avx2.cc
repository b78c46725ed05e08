// The AVX2 channels-last pooling entry (pool_nhwc.h): per output pixel, the
// taps inside the input found once, then channels in blocks of 32 (four ymm
// accumulators), 8, and a masked tail. Max: the accumulator starts at the
// first tap and takes vmaxps(x, acc) = x > acc ? x : acc per later tap (the
// reference's rule, NaN included); average: vaddps from zero in tap order,
// then one vdivps by the pixel's divisor. Same operations, same order as
// the portable entry, so the same bits.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <limits>

#include "kernels/pool_nhwc.h"

namespace kvant {
namespace {

struct Window {
  int ky0, ky1, kx0, kx1;
  ptrdiff_t base;      // offset of tap (ky0, kx0) in the image, channel 0
  ptrdiff_t row_step;  // floats between tap rows
  ptrdiff_t col_step;  // floats between tap columns
};

inline void tap_range(int o, int stride, int pad, int dil, int k, int in, int& lo, int& hi) {
  const int start = o * stride - pad;
  lo = 0;
  while (lo < k && start + lo * dil < 0) ++lo;
  hi = k;
  while (hi > lo && start + (hi - 1) * dil >= in) --hi;
}

inline __m256i tail_mask(int n) {
  alignas(32) static const int32_t kOnes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kOnes + 8 - n));
}

template <bool kAverage>
inline __m256 combine(__m256 acc, __m256 v) {
  if constexpr (kAverage) return _mm256_add_ps(acc, v);
  return _mm256_max_ps(v, acc);  // v > acc ? v : acc
}

// Channels [c0, c0 + 8 * NV) over the window; NV vectors at once. MASKED:
// one vector, the lanes of `mask` only.
template <bool kAverage, int NV, bool MASKED>
inline void block(const float* x, float* out, const Window& w, int c0, __m256i mask, __m256 divisor) {
  __m256 acc[NV];
  const float* p0 = x + w.base + c0;
  // Max starts at the first tap and meets it once more in the loop:
  // vmaxps(t, t) gives t back, NaN included.
  for (int v = 0; v < NV; ++v) {
    if constexpr (kAverage) {
      acc[v] = _mm256_setzero_ps();
    } else {
      acc[v] = MASKED ? _mm256_maskload_ps(p0, mask) : _mm256_loadu_ps(p0 + 8 * v);
    }
  }
  for (int ky = w.ky0; ky < w.ky1; ++ky) {
    const float* p = p0 + (ky - w.ky0) * w.row_step;
    for (int kx = w.kx0; kx < w.kx1; ++kx, p += w.col_step) {
      for (int v = 0; v < NV; ++v) {
        const __m256 t = MASKED ? _mm256_maskload_ps(p, mask) : _mm256_loadu_ps(p + 8 * v);
        acc[v] = combine<kAverage>(acc[v], t);
      }
    }
  }
  if constexpr (kAverage) {
    for (int v = 0; v < NV; ++v) acc[v] = _mm256_div_ps(acc[v], divisor);
  }
  for (int v = 0; v < NV; ++v) {
    if constexpr (MASKED) {
      _mm256_maskstore_ps(out + c0, mask, acc[v]);
    } else {
      _mm256_storeu_ps(out + c0 + 8 * v, acc[v]);
    }
  }
}

template <bool kAverage>
void pool_rows(const PoolNhwcRows& r) {
  const ptrdiff_t c = r.c;
  const int c32 = r.c / 32 * 32, c8 = r.c / 8 * 8, tail = r.c - c8;
  const __m256i mask = tail_mask(tail > 0 ? tail : 8);
  for (int oy = r.oy0; oy < r.oy1; ++oy) {
    Window w;
    tap_range(oy, r.sh, r.pad_top, r.dh, r.kh, r.h_in, w.ky0, w.ky1);
    w.row_step = static_cast<ptrdiff_t>(r.dh) * r.w_in * c;
    w.col_step = static_cast<ptrdiff_t>(r.dw) * c;
    for (int ox = 0; ox < r.w_out; ++ox) {
      tap_range(ox, r.sw, r.pad_left, r.dw, r.kw, r.w_in, w.kx0, w.kx1);
      float* out = r.out + (static_cast<ptrdiff_t>(oy) * r.w_out + ox) * c;
      if (w.ky0 == w.ky1 || w.kx0 == w.kx1) {  // the window reads only padding
        const float v = kAverage ? 0.0f : -std::numeric_limits<float>::infinity();
        for (ptrdiff_t ch = 0; ch < c; ++ch) out[ch] = v;
        continue;
      }
      const int iy = oy * r.sh - r.pad_top + w.ky0 * r.dh, ix = ox * r.sw - r.pad_left + w.kx0 * r.dw;
      w.base = (static_cast<ptrdiff_t>(iy) * r.w_in + ix) * c;
      __m256 divisor = _mm256_setzero_ps();
      if constexpr (kAverage) {
        const int64_t d = static_cast<int64_t>(r.row_count[oy]) * r.col_count[ox];
        if (d == 0) {  // no tap counts (an empty window, as above)
          for (ptrdiff_t ch = 0; ch < c; ++ch) out[ch] = 0.0f;
          continue;
        }
        divisor = _mm256_set1_ps(static_cast<float>(d));
      }
      int c0 = 0;
      for (; c0 < c32; c0 += 32) block<kAverage, 4, false>(r.x, out, w, c0, mask, divisor);
      for (; c0 < c8; c0 += 8) block<kAverage, 1, false>(r.x, out, w, c0, mask, divisor);
      if (tail > 0) block<kAverage, 1, true>(r.x, out, w, c0, mask, divisor);
    }
  }
}

}  // namespace

void maxpool_nhwc_rows_avx2(const PoolNhwcRows& r) { pool_rows<false>(r); }
void avgpool_nhwc_rows_avx2(const PoolNhwcRows& r) { pool_rows<true>(r); }

}  // namespace kvant
