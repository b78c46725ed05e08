// AVX2 entry of the INT8 NHWC depthwise table (kernels/qdw_nhwc.h): 16
// channels per step, taps in pairs through vpunpck{l,h}wd + vpmaddwd on the
// raw input values (x_zp is in the bias).
#include <immintrin.h>

#include <cmath>

#include "kernels/qdw_nhwc.h"

namespace kvant {

namespace {

inline __m256i widen(const uint8_t* p, bool x_signed) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return x_signed ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b);
}

}  // namespace

void qdw_nhwc_avx2(const QDwArgs& a) {
  const ConvShape& s = *a.s;
  const int channels = s.c_out, taps = s.kh * s.kw, pairs = (taps + 1) / 2;
  const int full = channels / 16 * 16;
  const __m256 lo = _mm256_set1_ps(static_cast<float>(a.lo - a.y_zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(a.hi - a.y_zp));
  const __m256i yzp = _mm256_set1_epi32(a.y_zp);
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
      for (int c0 = 0; c0 < full; c0 += 16) {
        const int16_t* w = a.packed_w + static_cast<int64_t>(c0 / 16) * pairs * 32;
        __m256i acc_lo = _mm256_setzero_si256(), acc_hi = _mm256_setzero_si256();
        for (int p = 0; p < pairs; ++p, w += 32) {
          const __m256i xa = widen(tap[2 * p] + c0, a.x_signed);
          const __m256i xb = widen(tap[2 * p + 1] + c0, a.x_signed);
          acc_lo = _mm256_add_epi32(acc_lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(xa, xb),
                                                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w))));
          acc_hi =
              _mm256_add_epi32(acc_hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(xa, xb),
                                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 16))));
        }
        // acc_lo: channels 0-3 | 8-11, acc_hi: 4-7 | 12-15.
        const __m256i a0 = _mm256_permute2x128_si256(acc_lo, acc_hi, 0x20);
        const __m256i a1 = _mm256_permute2x128_si256(acc_lo, acc_hi, 0x31);
        __m256 f0 = _mm256_mul_ps(
            _mm256_cvtepi32_ps(_mm256_add_epi32(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bias + c0)))),
            _mm256_loadu_ps(a.mult + c0));
        __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(
                                      a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bias + c0 + 8)))),
                                  _mm256_loadu_ps(a.mult + c0 + 8));
        f0 = _mm256_min_ps(_mm256_max_ps(f0, lo), hi);
        f1 = _mm256_min_ps(_mm256_max_ps(f1, lo), hi);
        const __m256i i0 = _mm256_add_epi32(_mm256_cvtps_epi32(f0), yzp);
        const __m256i i1 = _mm256_add_epi32(_mm256_cvtps_epi32(f1), yzp);
        const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
        const __m128i l = _mm256_castsi256_si128(w16), h = _mm256_extracti128_si256(w16, 1);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c0),
                         a.y_signed ? _mm_packs_epi16(l, h) : _mm_packus_epi16(l, h));
      }
      for (int c = full; c < channels; ++c) {  // the tail, from the packed pairs of its block
        const int16_t* w = a.packed_w + static_cast<int64_t>(c / 16) * pairs * 32;
        const int lane = (c % 16) / 8, half = (c % 8) / 4, i = c % 4;
        int32_t acc = a.bias[c];
        for (int p = 0; p < pairs; ++p) {
          const int16_t* wp = w + p * 32 + half * 16 + lane * 8 + 2 * i;
          for (int k = 0; k < 2; ++k) {
            const uint8_t raw = tap[2 * p + k][c];
            const int32_t xv = a.x_signed ? int32_t{static_cast<int8_t>(raw)} : int32_t{raw};
            acc += xv * wp[k];
          }
        }
        float f = static_cast<float>(acc) * a.mult[c];
        f = std::fmin(std::fmax(f, static_cast<float>(a.lo - a.y_zp)), static_cast<float>(a.hi - a.y_zp));
        out[c] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(f)) + a.y_zp);
      }
    }
  }
}

}  // namespace kvant
