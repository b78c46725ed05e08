// AVX2 entries of kernels/layout_u8.h: the 16 x 16 byte transpose (four
// rounds of unpacks: bytes, words, dwords, qwords) and the requantization of
// accumulator rows, 8 values per vector.
#include <immintrin.h>

#include <cstring>

#include "kernels/layout_u8.h"

namespace kvant {

namespace {

// out[c] = column c of the 16 x 16 block a (rows a[0..15]).
inline void transpose16(const __m128i (&a)[16], __m128i (&out)[16]) {
  __m128i b[16], c[16], d[16];
  for (int i = 0; i < 8; ++i) {
    b[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);      // rows 2i, 2i+1: columns 0-7
    b[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);  // columns 8-15
  }
  for (int j = 0; j < 4; ++j) {                                     // rows 4j..4j+3
    c[4 * j + 0] = _mm_unpacklo_epi16(b[4 * j], b[4 * j + 2]);      // columns 0-3
    c[4 * j + 1] = _mm_unpackhi_epi16(b[4 * j], b[4 * j + 2]);      // 4-7
    c[4 * j + 2] = _mm_unpacklo_epi16(b[4 * j + 1], b[4 * j + 3]);  // 8-11
    c[4 * j + 3] = _mm_unpackhi_epi16(b[4 * j + 1], b[4 * j + 3]);  // 12-15
  }
  for (int h = 0; h < 2; ++h) {  // rows 8h..8h+7
    for (int q = 0; q < 4; ++q) {
      d[8 * h + 2 * q] = _mm_unpacklo_epi32(c[8 * h + q], c[8 * h + 4 + q]);      // columns 4q, 4q+1
      d[8 * h + 2 * q + 1] = _mm_unpackhi_epi32(c[8 * h + q], c[8 * h + 4 + q]);  // 4q+2, 4q+3
    }
  }
  for (int p = 0; p < 8; ++p) {
    out[2 * p] = _mm_unpacklo_epi64(d[p], d[8 + p]);
    out[2 * p + 1] = _mm_unpackhi_epi64(d[p], d[8 + p]);
  }
}

}  // namespace

void transpose_u8_avx2(const uint8_t* src, int64_t src_stride, int rows, int cols, uint8_t* dst, int64_t dst_stride,
                       uint8_t flip) {
  const __m128i x = _mm_set1_epi8(static_cast<char>(flip));
  __m128i a[16], t[16];
  for (int r0 = 0; r0 < rows; r0 += 16) {
    const int rr = rows - r0 < 16 ? rows - r0 : 16;
    for (int c0 = 0; c0 < cols; c0 += 16) {
      const int cc = cols - c0 < 16 ? cols - c0 : 16;
      const uint8_t* s = src + r0 * src_stride + c0;
      if (rr == 16 && cc == 16) {
        for (int i = 0; i < 16; ++i) {
          a[i] = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s + i * src_stride)), x);
        }
      } else {
        alignas(16) uint8_t block[16][16] = {};
        for (int i = 0; i < rr; ++i) std::memcpy(block[i], s + i * src_stride, static_cast<size_t>(cc));
        for (int i = 0; i < 16; ++i) {
          a[i] = _mm_xor_si128(_mm_load_si128(reinterpret_cast<const __m128i*>(block[i])), x);
        }
      }
      transpose16(a, t);
      uint8_t* d = dst + c0 * dst_stride + r0;
      if (rr == 16) {
        for (int i = 0; i < cc; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i * dst_stride), t[i]);
      } else {
        for (int i = 0; i < cc; ++i) {
          alignas(16) uint8_t row[16];
          _mm_store_si128(reinterpret_cast<__m128i*>(row), t[i]);
          std::memcpy(d + i * dst_stride, row, static_cast<size_t>(rr));
        }
      }
    }
  }
}

void requant_rows_avx2(const RequantRowsArgs& a) {
  const __m256 lo = _mm256_set1_ps(static_cast<float>(a.lo - a.y_zp));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(a.hi - a.y_zp));
  const __m256i zp = _mm256_set1_epi32(a.y_zp);
  for (int r = 0; r < a.rows; ++r) {
    const int32_t* acc = a.acc + r * a.acc_stride;
    uint8_t* out = a.out + r * a.out_stride;
    int j = 0;
    for (; j + 8 <= a.n; j += 8) {
      const __m256i s = _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + j)),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bias + j)));
      __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_loadu_ps(a.mult + j));
      f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);  // integer bounds: clamping before rounding is the same
      const __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(f), zp);
      // v is within the output type's range: keep the low byte of each lane.
      const __m256i bytes =
          _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8,
                                                  12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
      const uint32_t lo4 = static_cast<uint32_t>(_mm256_cvtsi256_si32(bytes));
      const uint32_t hi4 = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(bytes, 1)));
      std::memcpy(out + j, &lo4, 4);
      std::memcpy(out + j + 4, &hi4, 4);
    }
    for (; j < a.n; ++j) {
      const __m128 f0 = _mm_set_ss(
          static_cast<float>(static_cast<int32_t>(static_cast<uint32_t>(acc[j]) + static_cast<uint32_t>(a.bias[j]))) *
          a.mult[j]);
      const __m128 f = _mm_min_ss(_mm_max_ss(f0, _mm256_castps256_ps128(lo)), _mm256_castps256_ps128(hi));
      out[j] = static_cast<uint8_t>(_mm_cvtss_si32(f) + a.y_zp);
    }
  }
}

}  // namespace kvant
