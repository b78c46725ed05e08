// The AVX-512 entries of the INT8 NHWC depthwise table (kernels/qdw_nhwc.h),
// one body for two ISA levels: included by x86_avx512/qdw_nhwc_avx512.cc
// (vpmaddwd + vpaddd) and x86_avx512vnni/qdw_nhwc_avx512vnni.cc (vpdpwssd,
// one instruction), each compiled with its folder's flags, with
//   KVANT_QDW_FUNCTION  the entry's name
//   KVANT_QDW_DOT(acc, x_pairs, w_pairs)  acc + the int16 pair dot products.
// 32 channels per step (a masked step for the tail); taps in pairs through
// vpunpck{l,h}wd. Raw input values (x_zp is folded into the bias by the
// caller, qdw_nhwc.h), widened to int16 by the load.
#include <immintrin.h>

#include "kernels/qdw_nhwc.h"

namespace kvant {

void KVANT_QDW_FUNCTION(const QDwArgs& a) {
  const ConvShape& s = *a.s;
  const int channels = s.c_out, taps = s.kh * s.kw, pairs = (taps + 1) / 2;
  const __m512 lo = _mm512_set1_ps(static_cast<float>(a.lo - a.y_zp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(a.hi - a.y_zp));
  const __m512i yzp = _mm512_set1_epi32(a.y_zp);
  // lo holds channels 0-3, 8-11, 16-19, 24-27 of the block, hi the others.
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const uint8_t* tap[kQDwMaxTaps + 1];
  // Tap offsets from a pixel's first tap; interior pixels (every tap inside)
  // just add them, border pixels check each tap.
  int64_t offset[kQDwMaxTaps];
  for (int t = 0; t < taps; ++t) {
    offset[t] = (static_cast<int64_t>((t / s.kw) * s.dil_h) * s.w_in + (t % s.kw) * s.dil_w) * channels;
  }
  int ox_lo = 0, ox_hi = s.w_out;  // columns whose taps all lie inside the row
  while (ox_lo < s.w_out && ox_lo * s.stride_w - s.pad_left < 0) ++ox_lo;
  while (ox_hi > ox_lo && (ox_hi - 1) * s.stride_w - s.pad_left + (s.kw - 1) * s.dil_w >= s.w_in) --ox_hi;
  tap[taps] = a.zp_row;  // partner of an odd last tap (zero weights)
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
      for (int c0 = 0; c0 < channels; c0 += 32) {
        const int left = channels - c0;
        const __mmask32 m = left >= 32 ? ~__mmask32{0} : (__mmask32{1} << left) - 1;
        const int16_t* w = a.packed_w + static_cast<int64_t>(c0 / 32) * pairs * 64;
        __m512i acc_lo = _mm512_setzero_si512(), acc_hi = _mm512_setzero_si512();
        for (int p = 0; p < pairs; ++p, w += 64) {
          const __m256i ba = _mm256_maskz_loadu_epi8(m, tap[2 * p] + c0);
          const __m256i bb = _mm256_maskz_loadu_epi8(m, tap[2 * p + 1] + c0);
          const __m512i xa = a.x_signed ? _mm512_cvtepi8_epi16(ba) : _mm512_cvtepu8_epi16(ba);
          const __m512i xb = a.x_signed ? _mm512_cvtepi8_epi16(bb) : _mm512_cvtepu8_epi16(bb);
          acc_lo = KVANT_QDW_DOT(acc_lo, _mm512_unpacklo_epi16(xa, xb), _mm512_loadu_si512(w));
          acc_hi = KVANT_QDW_DOT(acc_hi, _mm512_unpackhi_epi16(xa, xb), _mm512_loadu_si512(w + 32));
        }
        const __m512i a0 = _mm512_permutex2var_epi32(acc_lo, first, acc_hi);   // channels 0-15
        const __m512i a1 = _mm512_permutex2var_epi32(acc_lo, second, acc_hi);  // 16-31
        const __mmask16 m0 = static_cast<__mmask16>(m), m1 = static_cast<__mmask16>(m >> 16);
        __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a0, _mm512_maskz_loadu_epi32(m0, a.bias + c0))),
                                  _mm512_maskz_loadu_ps(m0, a.mult + c0));
        __m512 f1 =
            _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a1, _mm512_maskz_loadu_epi32(m1, a.bias + c0 + 16))),
                          _mm512_maskz_loadu_ps(m1, a.mult + c0 + 16));
        f0 = _mm512_min_ps(_mm512_max_ps(f0, lo), hi);
        f1 = _mm512_min_ps(_mm512_max_ps(f1, lo), hi);
        _mm512_mask_cvtepi32_storeu_epi8(out + c0, m0, _mm512_add_epi32(_mm512_cvtps_epi32(f0), yzp));
        _mm512_mask_cvtepi32_storeu_epi8(out + c0 + 16, m1, _mm512_add_epi32(_mm512_cvtps_epi32(f1), yzp));
      }
    }
  }
}

}  // namespace kvant
