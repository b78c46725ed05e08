// im2col tile packer im2col_f32_avx2 (sconv_kernels.h has the layout): the
// AVX-512 entry's scheme in 8-lane halves. Each piece of an output row that
// falls in one 16-column panel is, per half panel, one vmaskmovps load and
// one vmaskmovps store, the masks covering both the panel's columns and the
// input's columns (masked-off loads read nothing and give zero: the padding).
// Stride 2 loads 16 inputs and keeps the even ones.
#include <immintrin.h>

#include "kernels/sconv_kernels.h"

namespace kvant {
namespace {

constexpr int kCols = 16;

inline int min_int(int a, int b) { return a < b ? a : b; }

// Lanes j (0..7) with lo <= j < hi set.
inline __m256i lanes(int lo, int hi) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(lo - 1)),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), idx));
}

template <int SW>
void pack(const Im2colTile& t) {
  const __m256i even = _mm256_setr_epi32(-1, 0, -1, 0, -1, 0, -1, 0);
  const __m256i lo_pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  const __m256i hi_pairs = _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7);
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
      const float* src = t.x + t.row_off[k] + static_cast<int64_t>(t.seg_iy[g]) * t.w_in + t.seg_ix[g];
      for (int c = c0; c < c1;) {
        const int lane0 = c % kCols;
        const int n = min_int(c1 - c, kCols - lane0);
        const int shift = c - c0 - lane0;  // panel lane j holds piece position shift + j
        float* dst = row + static_cast<int64_t>(c / kCols) * panel;
        for (int h = 0; h < 2; ++h) {
          const int base_lane = 8 * h;
          if (lane0 + n <= base_lane || lane0 >= base_lane + 8) continue;
          const __m256i store = lanes(lane0 - base_lane, lane0 + n - base_lane);
          const __m256i valid = _mm256_and_si256(store, lanes(first - shift - base_lane, last - shift - base_lane));
          const float* base = src + static_cast<int64_t>(shift + base_lane) * SW;  // lane j reads base[j * SW]
          __m256 v;
          if constexpr (SW == 1) {
            v = _mm256_maskload_ps(base, valid);
          } else {
            const __m256i ma = _mm256_and_si256(_mm256_permutevar8x32_epi32(valid, lo_pairs), even);
            const __m256i mb = _mm256_and_si256(_mm256_permutevar8x32_epi32(valid, hi_pairs), even);
            const __m256 a = _mm256_maskload_ps(base, ma);      // elements 0..7
            const __m256 b = _mm256_maskload_ps(base + 8, mb);  // elements 8..15
            // [a0 a2 b0 b2 | a4 a6 b4 b6] -> [a0 a2 a4 a6 b0 b2 b4 b6]
            const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
            v = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
          }
          _mm256_maskstore_ps(dst + base_lane, store, v);
        }
        c += n;
      }
    }
    for (int c = t.nc; c < padded_nc; ++c) row[static_cast<int64_t>(c / kCols) * panel + c % kCols] = 0.0f;
  }
}

}  // namespace

void im2col_pack_avx2(const Im2colTile& t) {
  if (t.stride_w == 1) return pack<1>(t);
  pack<2>(t);
}

}  // namespace kvant
