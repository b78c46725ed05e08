// im2col tile packer im2col_f32_avx512 (sconv_kernels.h has the layout): each
// piece of an output row that falls in one 16-column panel is one masked
// load and one masked store, the mask covering both the panel's columns and
// the input's columns (so the zero padding costs nothing extra); stride 2
// loads 32 inputs and keeps the even ones (one vpermt2ps). The generic packer
// copies element by element wherever a piece is not a whole panel, which is
// most pieces on maps of 7 to 56 columns.
#include <immintrin.h>

#include "kernels/sconv_kernels.h"

namespace kvant {
namespace {

constexpr int kCols = 16;

inline int min_int(int a, int b) { return a < b ? a : b; }
inline int max_int(int a, int b) { return a > b ? a : b; }

// Lanes [lo, hi) set (empty when hi <= lo); lo, hi in [0, 16].
inline __mmask16 lanes(int lo, int hi) {
  lo = max_int(lo, 0);
  hi = min_int(hi, kCols);
  if (hi <= lo) return 0;
  return static_cast<__mmask16>(((1u << (hi - lo)) - 1u) << lo);
}

template <int SW>
void pack(const Im2colTile& t) {
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512 zero = _mm512_setzero_ps();
  const int64_t panel = static_cast<int64_t>(kCols) * t.kl;
  const int padded_nc = (t.nc + kCols - 1) / kCols * kCols;
  for (int k = 0; k < t.kl; ++k) {
    float* row = t.dst + static_cast<int64_t>(k) * kCols;
    for (int g = 0; g < t.segs; ++g) {
      const int c0 = t.seg_c0[g], c1 = t.seg_c0[g + 1];
      const int iy = t.seg_iy[g] + t.row_dy[k];
      const bool row_inside = iy >= 0 && iy < t.h_in;
      // Column c reads input column ix0 + (c - c0) * SW: inside for
      // c - c0 in [first, last).
      const int ix0 = t.seg_ix[g] + t.row_dx[k];
      int first = 0, last = 0;
      if (row_inside) {
        first = ix0 >= 0 ? 0 : (-ix0 + SW - 1) / SW;
        last = ix0 >= t.w_in ? 0 : (t.w_in - 1 - ix0) / SW + 1;
      }
      // The element of column c0 (possibly outside the input: only read
      // through a mask).
      const float* src = t.x + t.row_off[k] + static_cast<int64_t>(t.seg_iy[g]) * t.w_in + t.seg_ix[g];
      for (int c = c0; c < c1;) {
        const int lane0 = c % kCols;
        const int n = min_int(c1 - c, kCols - lane0);
        const __mmask16 store = lanes(lane0, lane0 + n);
        // Lane j holds column c + j - lane0, i.e. piece position p = c - c0 + j - lane0.
        const int shift = c - c0 - lane0;  // p = shift + j
        const __mmask16 valid = store & lanes(first - shift, last - shift);
        __m512 v = zero;
        if (valid != 0) {
          const float* base = src + static_cast<int64_t>(shift) * SW;  // lane j reads base[j * SW]
          if constexpr (SW == 1) {
            v = _mm512_maskz_loadu_ps(valid, base);
          } else {
            const uint32_t elems = _pdep_u32(valid, 0x55555555u);  // element 2j for lane j
            const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(elems), base);
            const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(elems >> 16), base + kCols);
            v = _mm512_permutex2var_ps(lo, even, hi);
          }
        }
        _mm512_mask_storeu_ps(row + static_cast<int64_t>(c / kCols) * panel, store, v);
        c += n;
      }
    }
    if (t.nc < padded_nc) {
      _mm512_mask_storeu_ps(row + static_cast<int64_t>(t.nc / kCols) * panel, lanes(t.nc % kCols, kCols), zero);
    }
  }
}

}  // namespace

void im2col_pack_avx512(const Im2colTile& t) {
  if (t.stride_w == 1) return pack<1>(t);
  pack<2>(t);
}

}  // namespace kvant
