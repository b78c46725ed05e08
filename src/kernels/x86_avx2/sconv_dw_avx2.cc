// Depthwise conv plane kernels (sconv_kernels.h), 8 output pixels per ymm,
// stride_w 1 or 2 (16 inputs loaded, the even ones kept).
//
// dwconv_f32_avx2_inplace reads the unpadded input plane, so the driver
// copies nothing:
//   - 8 output pixels per ymm, output rows in blocks of 4: four independent
//     FMA chains per tap, the tap's weight broadcast once for them;
//   - a column of vectors whose taps all fall inside the input row loads
//     whole; the border columns (and a row's last, partial vector) load
//     whole and zero the lanes outside the row (vandps with the column's
//     mask), which is the padded plane's zero, where the bytes read lie in
//     [lo_bound, hi_bound) (x's other rows and channels: every block but
//     the tensor's first and last), else through the mask (vmaskmovps:
//     masked lanes read nothing and are 0; half the load rate);
//   - an input row above or below the plane is the zero row;
// Every output is the chain of its kh * kw taps in order ky, kx from zero
// (padding taps add w * 0), then bias and activation, as the padded entries.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/sconv_kernels.h"

namespace kvant {
namespace {

constexpr int kRows = 4;  // output rows per block

inline int min_int(int a, int b) { return a < b ? a : b; }

// row + i as an address only: a masked load may start before or run past
// the row, its masked lanes are never read.
inline const float* at(const float* row, ptrdiff_t i) {
  return reinterpret_cast<const float*>(reinterpret_cast<uintptr_t>(row) +
                                        static_cast<uintptr_t>(i * static_cast<ptrdiff_t>(sizeof(float))));
}

// [a0 a2 a4 a6 b0 b2 b4 b6]
inline __m256 even_of(__m256 a, __m256 b) {
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // [a0 a2 b0 b2 | a4 a6 b4 b6]
  return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
}

// Lanes l of 8 consecutive columns from c inside [0, w).
inline __m256i lane_mask(int c, int w) {
  const __m256i pos = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(c));
  return _mm256_and_si256(_mm256_cmpgt_epi32(pos, _mm256_set1_epi32(-1)),
                          _mm256_cmpgt_epi32(_mm256_set1_epi32(w), pos));
}

// The 8 inputs of one tap: columns c + SW l, whole (inside the row).
template <int SW>
inline __m256 load_whole(const float* row, int c) {
  if constexpr (SW == 1) {
    return _mm256_loadu_ps(row + c);
  } else {
    return even_of(_mm256_loadu_ps(row + c), _mm256_loadu_ps(row + c + 8));
  }
}

// The same with the columns outside [0, w) zero and unread.
template <int SW>
inline __m256 load_masked(const float* row, int c, int w) {
  if constexpr (SW == 1) {
    return _mm256_maskload_ps(at(row, c), lane_mask(c, w));
  } else {
    return even_of(_mm256_maskload_ps(at(row, c), lane_mask(c, w)),
                   _mm256_maskload_ps(at(row, c + 8), lane_mask(c + 8, w)));
  }
}

// The same from a whole load anded with the lane masks (m1: the second 8
// for stride 2).
template <int SW>
inline __m256 load_anded(const float* row, int c, __m256 m0, __m256 m1) {
  if constexpr (SW == 1) {
    return _mm256_and_ps(_mm256_loadu_ps(at(row, c)), m0);
  } else {
    return even_of(_mm256_and_ps(_mm256_loadu_ps(at(row, c)), m0), _mm256_and_ps(_mm256_loadu_ps(at(row, c + 8)), m1));
  }
}

// KH, KW > 0: the kernel size at compile time (weights held in registers,
// row pointers per block); 0: read from p.
template <int SW, int KH, int KW>
void dw_plane(const DwPlane& p) {
  const int kh = KH > 0 ? KH : p.kh, kw = KW > 0 ? KW : p.kw;
  constexpr bool kFixed = KH * KW > 0;
  __m256 wfix[kFixed ? KH * KW : 1];
  if constexpr (kFixed) {
    for (int t = 0; t < KH * KW; ++t) wfix[t] = _mm256_broadcast_ss(p.w + t);
  }
  const __m256 bias = _mm256_set1_ps(p.bias);
  const __m256 lo = _mm256_set1_ps(p.act.kind == SgemmActivation::Kind::kRelu ? 0.0f : p.act.lo);
  const __m256 hi = _mm256_set1_ps(p.act.hi);
  const int nvx = (p.w_out + 7) / 8;
  // Columns a whole load may read past the row's end (first column of the
  // last vector, last tap, 8 SW floats), and the bounds of plain reads.
  const int over = (nvx - 1) * 8 * SW - p.pad_left + (kw - 1) * p.dw + 8 * SW - p.w_in;
  const uintptr_t lo_bound = reinterpret_cast<uintptr_t>(p.lo_bound);
  const uintptr_t hi_bound = reinterpret_cast<uintptr_t>(p.hi_bound);
  for (int oy0 = 0; oy0 < p.h_out; oy0 += kRows) {
    const int nr = min_int(kRows, p.h_out - oy0);
    // Input row of block row i (past the plane's last output row: that row
    // again, computed and not stored) and tap row ky.
    auto row_of = [&](int i, int ky) -> const float* {
      const int iy = (oy0 + min_int(i, nr - 1)) * p.sh - p.pad_top + ky * p.dh;
      return iy >= 0 && iy < p.h_in ? p.plane + static_cast<size_t>(iy) * static_cast<size_t>(p.w_in) : p.zero_row;
    };
    const float* fixed_rows[kFixed ? KH : 1][kRows];
    if constexpr (kFixed) {
      for (int ky = 0; ky < KH; ++ky) {
        for (int i = 0; i < kRows; ++i) fixed_rows[ky][i] = row_of(i, ky);
      }
    }
    // Whole loads of the border columns stay inside [lo_bound, hi_bound)
    // for every row of the block (the zero row has margins that wide).
    bool safe = true;
    for (int ky = 0; ky < kh && safe; ++ky) {
      for (int i = 0; i < kRows; ++i) {
        const uintptr_t r = reinterpret_cast<uintptr_t>(row_of(i, ky));
        if (r == reinterpret_cast<uintptr_t>(p.zero_row)) continue;
        if (r < lo_bound + static_cast<uintptr_t>(p.pad_left) * sizeof(float) ||
            r + static_cast<uintptr_t>(p.w_in + over) * sizeof(float) > hi_bound) {
          safe = false;
          break;
        }
      }
    }
    for (int vx = 0; vx < nvx; ++vx) {
      const int ox0 = vx * 8;
      const int c0 = ox0 * SW - p.pad_left;  // input column of lane 0, tap kx = 0
      const bool whole = c0 >= 0 && c0 + (kw - 1) * p.dw + 8 * SW - 1 < p.w_in;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
      auto taps = [&](auto load) {
        if constexpr (kFixed) {
#pragma GCC unroll 5
          for (int ky = 0; ky < KH; ++ky) {
            const float* const* r = fixed_rows[ky];
#pragma GCC unroll 5
            for (int kx = 0; kx < KW; ++kx) {
              const int c = c0 + kx * p.dw;
              const __m256 w = wfix[ky * KW + kx];
              acc0 = _mm256_fmadd_ps(w, load(r[0], c), acc0);
              acc1 = _mm256_fmadd_ps(w, load(r[1], c), acc1);
              acc2 = _mm256_fmadd_ps(w, load(r[2], c), acc2);
              acc3 = _mm256_fmadd_ps(w, load(r[3], c), acc3);
            }
          }
        } else {
          for (int ky = 0; ky < kh; ++ky) {
            const float* r[kRows] = {row_of(0, ky), row_of(1, ky), row_of(2, ky), row_of(3, ky)};
            for (int kx = 0; kx < kw; ++kx) {
              const int c = c0 + kx * p.dw;
              const __m256 w = _mm256_broadcast_ss(p.w + ky * kw + kx);
              acc0 = _mm256_fmadd_ps(w, load(r[0], c), acc0);
              acc1 = _mm256_fmadd_ps(w, load(r[1], c), acc1);
              acc2 = _mm256_fmadd_ps(w, load(r[2], c), acc2);
              acc3 = _mm256_fmadd_ps(w, load(r[3], c), acc3);
            }
          }
        }
      };
      if (whole) {
        taps([](const float* r, int c) { return load_whole<SW>(r, c); });
      } else if (safe) {
        const int w_in = p.w_in;
        taps([w_in](const float* r, int c) {
          return load_anded<SW>(r, c, _mm256_castsi256_ps(lane_mask(c, w_in)),
                                _mm256_castsi256_ps(lane_mask(c + 8, w_in)));
        });
      } else {
        const int w_in = p.w_in;
        taps([w_in](const float* r, int c) { return load_masked<SW>(r, c, w_in); });
      }
      const __m256 acc[kRows] = {acc0, acc1, acc2, acc3};
      const int width = min_int(8, p.w_out - ox0);
      for (int i = 0; i < nr; ++i) {
        __m256 v = _mm256_add_ps(acc[i], bias);
        if (p.act.kind != SgemmActivation::Kind::kNone) v = _mm256_max_ps(v, lo);
        if (p.act.kind == SgemmActivation::Kind::kClip) v = _mm256_min_ps(v, hi);
        float* dst = p.out + static_cast<size_t>(oy0 + i) * static_cast<size_t>(p.w_out) + static_cast<size_t>(ox0);
        if (width == 8) {
          _mm256_storeu_ps(dst, v);
        } else {
          _mm256_maskstore_ps(dst, lane_mask(0, width), v);
        }
      }
    }
  }
}

// ---- dwconv_f32_avx2: the zero-padded plane (sconv_kernels.h) ----
// 4 vectors (possibly from different rows) in flight so the tap chains
// overlap.

constexpr int kBlock = 4;  // vectors per step

template <int SW>
inline __m256 load_px(const float* p) {
  if constexpr (SW == 1) {
    return _mm256_loadu_ps(p);
  } else {
    return even_of(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8));
  }
}

// KH, KW > 0: the kernel size at compile time (weights held in registers);
// 0: read from p.
template <int SW, int KH, int KW>
void dw_plane_padded(const DwPlane& p) {
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

void dwconv_plane_inplace_avx2(const DwPlane& p) {
  const bool k3 = p.kh == 3 && p.kw == 3, k5 = p.kh == 5 && p.kw == 5;
  if (p.sw == 1) return k3 ? dw_plane<1, 3, 3>(p) : k5 ? dw_plane<1, 5, 5>(p) : dw_plane<1, 0, 0>(p);
  return k3 ? dw_plane<2, 3, 3>(p) : k5 ? dw_plane<2, 5, 5>(p) : dw_plane<2, 0, 0>(p);
}

void dwconv_plane_avx2(const DwPlane& p) {
  const bool k3 = p.kh == 3 && p.kw == 3, k5 = p.kh == 5 && p.kw == 5;
  if (p.sw == 1) {
    return k3 ? dw_plane_padded<1, 3, 3>(p) : k5 ? dw_plane_padded<1, 5, 5>(p) : dw_plane_padded<1, 0, 0>(p);
  }
  return k3 ? dw_plane_padded<2, 3, 3>(p) : k5 ? dw_plane_padded<2, 5, 5>(p) : dw_plane_padded<2, 0, 0>(p);
}

}  // namespace kvant
