// The AVX-512 VNNI u8 x s8 entry of the INT8 NHWC depthwise table
// (kernels/qdw_nhwc.h): 64 channels per step and four taps per vpdpbusd.
// The bytes of four taps are interleaved per channel with vpunpck{l,h}bw and
// vpunpck{l,h}wd, which leave 16-channel lanes in the order the packed
// weights follow (pack_qdw_nhwc); four vshufi32x4 pairs put the int32 sums
// back in channel order before the requantization.
#include <immintrin.h>

#include "kernels/qdw_nhwc.h"

namespace kvant {

void qdw_nhwc_u8s8_avx512vnni(const QDwArgs& a) {
  const ConvShape& s = *a.s;
  const int channels = s.c_out, taps = s.kh * s.kw, quads = (taps + 3) / 4;
  const __m512 lo = _mm512_set1_ps(static_cast<float>(a.lo - a.y_zp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(a.hi - a.y_zp));
  const __m512i yzp = _mm512_set1_epi32(a.y_zp);
  const auto* packed = reinterpret_cast<const int8_t*>(a.packed_w);
  const uint8_t* tap[kQDwMaxTaps + 3];
  int64_t offset[kQDwMaxTaps];
  for (int t = 0; t < taps; ++t) {
    offset[t] = (static_cast<int64_t>((t / s.kw) * s.dil_h) * s.w_in + (t % s.kw) * s.dil_w) * channels;
  }
  int ox_lo = 0, ox_hi = s.w_out;  // columns whose taps all lie inside the row
  while (ox_lo < s.w_out && ox_lo * s.stride_w - s.pad_left < 0) ++ox_lo;
  while (ox_hi > ox_lo && (ox_hi - 1) * s.stride_w - s.pad_left + (s.kw - 1) * s.dil_w >= s.w_in) --ox_hi;
  for (int t = taps; t < 4 * quads; ++t) tap[t] = a.zp_row;  // partners of the last taps (zero weights)
  for (int oy = a.row_begin; oy < a.row_end; ++oy) {
    const int iy0 = oy * s.stride_h - s.pad_top;
    const bool rows_inside = iy0 >= 0 && iy0 + (s.kh - 1) * s.dil_h < s.h_in;
    for (int ox = 0; ox < s.w_out; ++ox) {
      const int ix0 = ox * s.stride_w - s.pad_left;
      if (rows_inside && ox >= ox_lo && ox < ox_hi) {
        const uint8_t* base = a.x + (static_cast<int64_t>(iy0) * s.w_in + ix0) * channels;
        for (int t = 0; t < taps; ++t) tap[t] = base + offset[t];
      } else {
        for (int t = 0; t < taps; ++t) {
          const int iy = iy0 + (t / s.kw) * s.dil_h;
          const int ix = ix0 + (t % s.kw) * s.dil_w;
          const bool inside = iy >= 0 && iy < s.h_in && ix >= 0 && ix < s.w_in;
          tap[t] = inside ? a.x + (static_cast<int64_t>(iy) * s.w_in + ix) * channels : a.zp_row;
        }
      }
      uint8_t* out = a.y + (static_cast<int64_t>(oy) * s.w_out + ox) * channels;
      for (int c0 = 0; c0 < channels; c0 += 64) {
        const int left = channels - c0;
        const __mmask64 m = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
        const int8_t* w = packed + static_cast<int64_t>(c0 / 64) * quads * 256;
        __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                          _mm512_setzero_si512()};
        for (int q = 0; q < quads; ++q, w += 256) {
          const __m512i t0 = _mm512_maskz_loadu_epi8(m, tap[4 * q] + c0);
          const __m512i t1 = _mm512_maskz_loadu_epi8(m, tap[4 * q + 1] + c0);
          const __m512i t2 = _mm512_maskz_loadu_epi8(m, tap[4 * q + 2] + c0);
          const __m512i t3 = _mm512_maskz_loadu_epi8(m, tap[4 * q + 3] + c0);
          const __m512i a_lo = _mm512_unpacklo_epi8(t0, t1), a_hi = _mm512_unpackhi_epi8(t0, t1);
          const __m512i b_lo = _mm512_unpacklo_epi8(t2, t3), b_hi = _mm512_unpackhi_epi8(t2, t3);
          acc[0] = _mm512_dpbusd_epi32(acc[0], _mm512_unpacklo_epi16(a_lo, b_lo), _mm512_loadu_si512(w));
          acc[1] = _mm512_dpbusd_epi32(acc[1], _mm512_unpackhi_epi16(a_lo, b_lo), _mm512_loadu_si512(w + 64));
          acc[2] = _mm512_dpbusd_epi32(acc[2], _mm512_unpacklo_epi16(a_hi, b_hi), _mm512_loadu_si512(w + 128));
          acc[3] = _mm512_dpbusd_epi32(acc[3], _mm512_unpackhi_epi16(a_hi, b_hi), _mm512_loadu_si512(w + 192));
        }
        // acc[k] lane L holds channels 16L + 4k .. 16L + 4k + 3: transpose the
        // 4 x 4 lanes so that vector j holds channels 16j .. 16j + 15.
        const __m512i u0 = _mm512_shuffle_i32x4(acc[0], acc[1], 0x44), u1 = _mm512_shuffle_i32x4(acc[0], acc[1], 0xEE);
        const __m512i u2 = _mm512_shuffle_i32x4(acc[2], acc[3], 0x44), u3 = _mm512_shuffle_i32x4(acc[2], acc[3], 0xEE);
        const __m512i v[4] = {_mm512_shuffle_i32x4(u0, u2, 0x88), _mm512_shuffle_i32x4(u0, u2, 0xDD),
                              _mm512_shuffle_i32x4(u1, u3, 0x88), _mm512_shuffle_i32x4(u1, u3, 0xDD)};
        for (int j = 0; j < 4; ++j) {
          const int cj = c0 + 16 * j;
          if (cj >= channels) break;
          const __mmask16 mj = static_cast<__mmask16>(m >> (16 * j));
          __m512 f =
              _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(v[j], _mm512_maskz_loadu_epi32(mj, a.bias + cj))),
                            _mm512_maskz_loadu_ps(mj, a.mult + cj));
          f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
          _mm512_mask_cvtepi32_storeu_epi8(out + cj, mj, _mm512_add_epi32(_mm512_cvtps_epi32(f), yzp));
        }
      }
    }
  }
}

}  // namespace kvant
