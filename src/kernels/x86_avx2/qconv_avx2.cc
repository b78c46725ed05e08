// AVX2 INT8 convolution pieces; the scheme and layouts are in qconv_avx2.h.
#if defined(__x86_64__)

#include "kernels/x86_avx2/qconv_avx2.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#define KVANT_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace kvant::qconv_avx2 {

namespace {

// 16 int32 accumulators (a0: outputs 0-7, a1: 8-15) plus bias, times the
// multiplier, clamped, rounded half to even (MXCSR default), plus y_zp, as
// 16 bytes in order.
KVANT_TARGET_AVX2 inline __m128i requant16(__m256i a0, __m256i a1, __m256i bias, __m256 mult, __m256 lo, __m256 hi,
                                           __m256i zp, bool y_signed) {
  __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(a0, bias)), mult);
  __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(a1, bias)), mult);
  f0 = _mm256_min_ps(_mm256_max_ps(f0, lo), hi);
  f1 = _mm256_min_ps(_mm256_max_ps(f1, lo), hi);
  const __m256i i0 = _mm256_add_epi32(_mm256_cvtps_epi32(f0), zp);
  const __m256i i1 = _mm256_add_epi32(_mm256_cvtps_epi32(f1), zp);
  const __m256i s16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
  const __m128i l = _mm256_castsi256_si128(s16);
  const __m128i h = _mm256_extracti128_si256(s16, 1);
  return y_signed ? _mm_packs_epi16(l, h) : _mm_packus_epi16(l, h);
}

KVANT_TARGET_AVX2 inline void store_bytes(uint8_t* out, __m128i v, int count) {
  if (count >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), v);
  } else {
    // 8 + 4 + 2 + 1 byte pieces: no library call for a short row.
    if (count & 8) {
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out), v);
      v = _mm_srli_si128(v, 8);
      out += 8;
    }
    uint64_t rest = static_cast<uint64_t>(_mm_cvtsi128_si64(v));
    if (count & 4) {
      const uint32_t piece = static_cast<uint32_t>(rest);
      std::memcpy(out, &piece, 4);
      rest >>= 32;
      out += 4;
    }
    if (count & 2) {
      const uint16_t piece = static_cast<uint16_t>(rest);
      std::memcpy(out, &piece, 2);
      rest >>= 16;
      out += 2;
    }
    if (count & 1) *out = static_cast<uint8_t>(rest);
  }
}

// 16 bytes widened to int16 (zero- or sign-extended) minus zp.
KVANT_TARGET_AVX2 inline __m256i widen16(const uint8_t* p, bool x_signed, __m256i zp) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i w = x_signed ? _mm256_cvtepi8_epi16(bytes) : _mm256_cvtepu8_epi16(bytes);
  return _mm256_sub_epi16(w, zp);
}

// The micro-kernels: acc[r][h] = sum over the k steps of W block row r times
// X columns 8h..8h+7, for the kRowBlock = 6 rows and h < kHalves (the rest
// zero). Written in inline assembly because GCC, given the same loop in
// intrinsics, spills some of the 12 accumulators to the stack and the
// store-reload chain then halves the rate. Registers: ymm0-11 accumulators
// (acc[r][h] in ymm(2r+h)), ymm12/13 the two X halves, ymm14 the broadcast
// W value, ymm15 the product. Each k step reads 64 bytes of X (one panel
// row: 16 columns of an int16 pair, or of a byte quad) and 24 bytes of W (6
// rows of an int16 pair or of a byte quad).
static_assert(kRowBlock == 6 && kCols == 16, "the assembly below is written for 6 x 16 tiles");

#define KV_ZERO(i) "vpxor %%xmm" #i ",%%xmm" #i ",%%xmm" #i "\n\t"
#define KV_STORE(i, off) "vmovdqu %%ymm" #i "," #off "(%[acc])\n\t"
// clang-format re-wraps these two differently on every pass: kept by hand.
// clang-format off
#define KV_ZERO_ALL                                                   \
  KV_ZERO(0) KV_ZERO(1) KV_ZERO(2) KV_ZERO(3) KV_ZERO(4) KV_ZERO(5)  \
  KV_ZERO(6) KV_ZERO(7) KV_ZERO(8) KV_ZERO(9) KV_ZERO(10) KV_ZERO(11)
#define KV_STORE_ALL                                                      \
  KV_STORE(0, 0) KV_STORE(1, 32) KV_STORE(2, 64) KV_STORE(3, 96)          \
  KV_STORE(4, 128) KV_STORE(5, 160) KV_STORE(6, 192) KV_STORE(7, 224)     \
  KV_STORE(8, 256) KV_STORE(9, 288) KV_STORE(10, 320) KV_STORE(11, 352)
// clang-format on
// Row r of an int16-pair step: broadcast the pair at byte `off` of W,
// multiply-add with the X halves (vpmaddwd: two exact products per lane).
#define KV_PAIR2(off, a, b)                                                 \
  "vpbroadcastd " #off                                                      \
  "(%[w]),%%ymm14\n\t"                                                      \
  "vpmaddwd %%ymm12,%%ymm14,%%ymm15\n\tvpaddd %%ymm15,%%ymm" #a ",%%ymm" #a \
  "\n\t"                                                                    \
  "vpmaddwd %%ymm13,%%ymm14,%%ymm15\n\tvpaddd %%ymm15,%%ymm" #b ",%%ymm" #b "\n\t"
#define KV_PAIR1(off, a)                 \
  "vpbroadcastd " #off                   \
  "(%[w]),%%ymm14\n\t"                   \
  "vpmaddwd %%ymm12,%%ymm14,%%ymm15\n\t" \
  "vpaddd %%ymm15,%%ymm" #a ",%%ymm" #a "\n\t"
// Row r of a byte-quad step: vpmaddubsw (unsigned X, signed W; pair sums
// cannot saturate for 7-bit W, qconv.h), then vpmaddwd with ones.
#define KV_QUAD_HALF(x, a)                           \
  "vpmaddubsw %%ymm14,%%ymm" #x                      \
  ",%%ymm15\n\tvpmaddwd %[ones],%%ymm15,%%ymm15\n\t" \
  "vpaddd %%ymm15,%%ymm" #a ",%%ymm" #a "\n\t"
#define KV_QUAD2(off, a, b) "vpbroadcastd " #off "(%[w]),%%ymm14\n\t" KV_QUAD_HALF(12, a) KV_QUAD_HALF(13, b)
#define KV_QUAD1(off, a) "vpbroadcastd " #off "(%[w]),%%ymm14\n\t" KV_QUAD_HALF(12, a)
#define KV_CLOBBERS                                                                                                   \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", \
      "xmm14", "xmm15", "cc", "memory"

// One 6x16 tile: zero the accumulators, `steps` times BODY (which reads X at
// %[x] and W at %[w]) then advance X by 64 and W by 24 bytes, store the
// accumulators to acc. Extra input operands (the ones of the u8 path) follow.
#define KV_TILE(BODY, ...)                                                                             \
  asm volatile(KV_ZERO_ALL "test %[n],%[n]\n\tjz 2f\n\t1:\n\t" BODY                                    \
                           "add $64,%[x]\n\tadd $24,%[w]\n\tdec %[n]\n\tjnz 1b\n\t2:\n\t" KV_STORE_ALL \
               : [x] "+r"(xp), [w] "+r"(wb), [n] "+r"(steps)                                           \
               : [acc] "r"(&acc[0][0])__VA_ARGS__                                                      \
               : KV_CLOBBERS)
#define KV_X2 "vmovdqu (%[x]),%%ymm12\n\tvmovdqu 32(%[x]),%%ymm13\n\t"
#define KV_X1 "vmovdqu (%[x]),%%ymm12\n\t"

// int16 pairs.
template <int kHalves>
KVANT_TARGET_AVX2 void micro_tile(const int16_t* wb, const int16_t* xp, int pairs, __m256i (&acc)[kRowBlock][2]) {
  int64_t steps = pairs;
  if (kHalves == 2) {
    KV_TILE(KV_X2 KV_PAIR2(0, 0, 1) KV_PAIR2(4, 2, 3) KV_PAIR2(8, 4, 5) KV_PAIR2(12, 6, 7) KV_PAIR2(16, 8, 9)
                KV_PAIR2(20, 10, 11));
  } else {
    KV_TILE(KV_X1 KV_PAIR1(0, 0) KV_PAIR1(4, 2) KV_PAIR1(8, 4) KV_PAIR1(12, 6) KV_PAIR1(16, 8) KV_PAIR1(20, 10));
  }
}

// int8 W quads and uint8 X quads (qconv_avx2.h).
template <int kHalves>
KVANT_TARGET_AVX2 void micro_tile_u8(const int8_t* wb, const uint8_t* xp, int quads, __m256i (&acc)[kRowBlock][2]) {
  int64_t steps = quads;
  const __m256i ones = _mm256_set1_epi16(1);
  if (kHalves == 2) {
    KV_TILE(KV_X2 KV_QUAD2(0, 0, 1) KV_QUAD2(4, 2, 3) KV_QUAD2(8, 4, 5) KV_QUAD2(12, 6, 7) KV_QUAD2(16, 8, 9)
                KV_QUAD2(20, 10, 11),
            , [ones] "m"(ones));
  } else {
    KV_TILE(KV_X1 KV_QUAD1(0, 0) KV_QUAD1(4, 2) KV_QUAD1(8, 4) KV_QUAD1(12, 6) KV_QUAD1(16, 8) KV_QUAD1(20, 10),
            , [ones] "m"(ones));
  }
}

}  // namespace

KVANT_TARGET_AVX2 void pack_x_u8(const uint8_t* src, int64_t ld, int K, int ncols, bool x_signed, uint8_t* out) {
  const int quads = (K + 3) / 4;
  const int panels = (ncols + kCols - 1) / kCols;
  const __m128i flip = _mm_set1_epi8(x_signed ? static_cast<char>(0x80) : 0);
  for (int q = 0; q < quads; ++q) {
    const uint8_t* rows[4];
    for (int i = 0; i < 4; ++i) rows[i] = 4 * q + i < K ? src + static_cast<int64_t>(4 * q + i) * ld : nullptr;
    for (int j = 0; j < panels; ++j) {
      const int n = j * kCols;
      __m128i v[4];
      for (int i = 0; i < 4; ++i) {
        if (rows[i] == nullptr) {
          v[i] = _mm_setzero_si128();
        } else if (n + kCols <= ncols) {
          v[i] = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[i] + n)), flip);
        } else {
          alignas(16) uint8_t t[kCols] = {};
          std::memcpy(t, rows[i] + n, static_cast<size_t>(ncols - n));
          v[i] = _mm_xor_si128(_mm_load_si128(reinterpret_cast<const __m128i*>(t)), flip);
        }
      }
      const __m128i ab_lo = _mm_unpacklo_epi8(v[0], v[1]), ab_hi = _mm_unpackhi_epi8(v[0], v[1]);
      const __m128i cd_lo = _mm_unpacklo_epi8(v[2], v[3]), cd_hi = _mm_unpackhi_epi8(v[2], v[3]);
      auto* dst = reinterpret_cast<__m128i*>(out + (static_cast<int64_t>(j) * quads + q) * 4 * kCols);
      _mm_storeu_si128(dst + 0, _mm_unpacklo_epi16(ab_lo, cd_lo));  // columns 0-3
      _mm_storeu_si128(dst + 1, _mm_unpackhi_epi16(ab_lo, cd_lo));  // 4-7
      _mm_storeu_si128(dst + 2, _mm_unpacklo_epi16(ab_hi, cd_hi));  // 8-11
      _mm_storeu_si128(dst + 3, _mm_unpackhi_epi16(ab_hi, cd_hi));  // 12-15
    }
  }
}

KVANT_TARGET_AVX2 void gemm_requant_u8(const int8_t* w, int block_begin, int block_end, int M, int quads,
                                       const uint8_t* xpack, int ncols, const Requant& rq, uint8_t* y, int64_t ldy) {
  const int panels = (ncols + kCols - 1) / kCols;
  const __m256 lo = _mm256_set1_ps(rq.lo);
  const __m256 hi = _mm256_set1_ps(rq.hi);
  const __m256i zp = _mm256_set1_epi32(rq.y_zp);
  for (int blk = block_begin; blk < block_end; ++blk) {
    const int8_t* wb = w + static_cast<int64_t>(blk) * quads * kRowBlock * 4;
    const int m0 = blk * kRowBlock;
    const int rows = std::min(kRowBlock, M - m0);
    for (int j = 0; j < panels; ++j) {
      const uint8_t* xp = xpack + static_cast<int64_t>(j) * quads * 4 * kCols;
      const int cols = std::min(kCols, ncols - j * kCols);
      __m256i acc[kRowBlock][2];
      if (cols > kCols / 2) {
        micro_tile_u8<2>(wb, xp, quads, acc);
      } else {
        micro_tile_u8<1>(wb, xp, quads, acc);
      }
      for (int r = 0; r < rows; ++r) {
        const int m = m0 + r;
        const __m128i q = requant16(acc[r][0], acc[r][1], _mm256_set1_epi32(rq.bias[m]),
                                    _mm256_set1_ps(rq.multiplier[m]), lo, hi, zp, rq.y_signed);
        store_bytes(y + m * ldy + j * kCols, q, cols);
      }
    }
  }
}

void im2col(const uint8_t* x, const ConvShape& s, int cin_g, int n0, int ncols, uint8_t fill, uint8_t* out, int ld) {
  const int64_t plane = static_cast<int64_t>(s.h_in) * s.w_in;
  const int end = n0 + ncols;
  for (int c = 0; c < cin_g; ++c) {
    const uint8_t* xc = x + c * plane;
    for (int ky = 0; ky < s.kh; ++ky) {
      for (int kx = 0; kx < s.kw; ++kx) {
        uint8_t* row = out + static_cast<int64_t>((c * s.kh + ky) * s.kw + kx) * ld;
        int n = n0;
        while (n < end) {
          const int oy = n / s.w_out;
          const int ox0 = n % s.w_out;
          const int seg = std::min(s.w_out - ox0, end - n);
          uint8_t* dst = row + (n - n0);
          const int iy = oy * s.stride_h - s.pad_top + ky * s.dil_h;
          if (iy < 0 || iy >= s.h_in) {
            std::memset(dst, fill, static_cast<size_t>(seg));
          } else {
            const uint8_t* src = xc + static_cast<int64_t>(iy) * s.w_in;
            const int ix0 = ox0 * s.stride_w - s.pad_left + kx * s.dil_w;  // ix of dst[0]
            if (s.stride_w == 1) {
              // dst[i] reads src[ix0 + i]: fill, copy, fill.
              const int lo = std::clamp(-ix0, 0, seg);
              const int hi = std::clamp(s.w_in - ix0, lo, seg);
              std::memset(dst, fill, static_cast<size_t>(lo));
              std::memcpy(dst + lo, src + ix0 + lo, static_cast<size_t>(hi - lo));
              std::memset(dst + hi, fill, static_cast<size_t>(seg - hi));
            } else {
              for (int i = 0; i < seg; ++i) {
                const int ix = ix0 + i * s.stride_w;
                dst[i] = (ix >= 0 && ix < s.w_in) ? src[ix] : fill;
              }
            }
          }
          n += seg;
        }
      }
    }
  }
}

KVANT_TARGET_AVX2 void pack_x(const uint8_t* src, int64_t ld, int K, int ncols, bool x_signed, int32_t x_zp,
                              int16_t* out) {
  const int pairs = (K + 1) / 2;
  const int panels = (ncols + kCols - 1) / kCols;
  const __m256i zp = _mm256_set1_epi16(static_cast<int16_t>(x_zp));
  const uint8_t zp_byte = static_cast<uint8_t>(x_zp);
  for (int p = 0; p < pairs; ++p) {
    const uint8_t* r0 = src + static_cast<int64_t>(2 * p) * ld;
    const uint8_t* r1 = 2 * p + 1 < K ? r0 + ld : nullptr;
    for (int j = 0; j < panels; ++j) {
      const int n = j * kCols;
      __m256i a, b;
      if (n + kCols <= ncols) {
        a = widen16(r0 + n, x_signed, zp);
        b = r1 != nullptr ? widen16(r1 + n, x_signed, zp) : _mm256_setzero_si256();
      } else {
        alignas(16) uint8_t t0[kCols], t1[kCols];
        std::memset(t0, zp_byte, sizeof(t0));
        std::memset(t1, zp_byte, sizeof(t1));
        std::memcpy(t0, r0 + n, static_cast<size_t>(ncols - n));
        if (r1 != nullptr) std::memcpy(t1, r1 + n, static_cast<size_t>(ncols - n));
        a = widen16(t0, x_signed, zp);
        b = widen16(t1, x_signed, zp);
      }
      const __m256i lo = _mm256_unpacklo_epi16(a, b);  // columns 0-3 | 8-11
      const __m256i hi = _mm256_unpackhi_epi16(a, b);  // columns 4-7 | 12-15
      int16_t* dst = out + (static_cast<int64_t>(j) * pairs + p) * 2 * kCols;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), _mm256_permute2x128_si256(lo, hi, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + kCols), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
  }
}

KVANT_TARGET_AVX2 void gemm_requant(const int16_t* w, int block_begin, int block_end, int M, int pairs,
                                    const int16_t* xpack, int ncols, const Requant& rq, uint8_t* y, int64_t ldy) {
  const int panels = (ncols + kCols - 1) / kCols;
  const __m256 lo = _mm256_set1_ps(rq.lo);
  const __m256 hi = _mm256_set1_ps(rq.hi);
  const __m256i zp = _mm256_set1_epi32(rq.y_zp);
  for (int blk = block_begin; blk < block_end; ++blk) {
    const int16_t* wb = w + static_cast<int64_t>(blk) * pairs * kRowBlock * 2;
    const int m0 = blk * kRowBlock;
    const int rows = std::min(kRowBlock, M - m0);
    for (int j = 0; j < panels; ++j) {
      const int16_t* xp = xpack + static_cast<int64_t>(j) * pairs * 2 * kCols;
      const int cols = std::min(kCols, ncols - j * kCols);
      __m256i acc[kRowBlock][2];
      if (cols > kCols / 2) {
        micro_tile<2>(wb, xp, pairs, acc);
      } else {
        micro_tile<1>(wb, xp, pairs, acc);  // a last panel of <= 8 columns: half the work
      }
      for (int r = 0; r < rows; ++r) {
        const int m = m0 + r;
        const __m128i q = requant16(acc[r][0], acc[r][1], _mm256_set1_epi32(rq.bias[m]),
                                    _mm256_set1_ps(rq.multiplier[m]), lo, hi, zp, rq.y_signed);
        store_bytes(y + m * ldy + j * kCols, q, cols);
      }
    }
  }
}

// Its zero-store loops are short (a pad or a row); as memset calls they cost
// more than the stores, so GCC must not turn them into calls (clang, used for
// the fuzzing build, has no such attribute).
#if defined(__clang__)
#define KVANT_NO_MEMSET_CALLS
#else
#define KVANT_NO_MEMSET_CALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#endif
KVANT_TARGET_AVX2 KVANT_NO_MEMSET_CALLS void depthwise_fill(const uint8_t* x, const ConvShape& s, bool x_signed,
                                                            int32_t x_zp, int rows, int width, int16_t* plane) {
  const int sw = s.stride_w;
  const int64_t row_stride = static_cast<int64_t>(sw) * width;
  const __m256i zp = _mm256_set1_epi16(static_cast<int16_t>(x_zp));
  for (int r = 0; r < rows; ++r) {
    int16_t* out = plane + r * row_stride;
    const int iy = r - s.pad_top;
    if (iy < 0 || iy >= s.h_in) {
      for (int64_t i = 0; i < row_stride; i += 16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_setzero_si256());
      }
      continue;
    }
    const uint8_t* src = x + static_cast<int64_t>(iy) * s.w_in;
    if (sw == 1) {
      // out[i] = src[i - pad_left] - zp inside the row, else 0, in whole
      // vectors: each store may run up to 15 values past its part (left
      // zeros, data, right zeros are written in that order; past the row it
      // lands in the next row, written later, or the plane's 16 values of
      // slack). Loads may read past the row while they stay in the channel.
      const int lo = std::clamp(s.pad_left, 0, width);
      const int hi = std::clamp(s.pad_left + s.w_in, lo, width);
      const int64_t row_at = static_cast<int64_t>(iy) * s.w_in - s.pad_left;  // plane offset of out[0]
      const int64_t plane_bytes = static_cast<int64_t>(s.h_in) * s.w_in;
      for (int i = 0; i < lo; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_setzero_si256());
      for (int i = lo; i < hi; i += 16) {
        __m256i v;
        if (row_at + i + 16 <= plane_bytes) {
          v = widen16(src + (i - s.pad_left), x_signed, zp);
        } else {
          alignas(16) uint8_t tail[16] = {};
          std::memcpy(tail, src + (i - s.pad_left), static_cast<size_t>(std::min(16, hi - i)));
          v = widen16(tail, x_signed, zp);
        }
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), v);
      }
      for (int i = hi; i < width; i += 16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_setzero_si256());
      }
    } else {
      for (int q = 0; q < sw; ++q) {
        int16_t* phase = out + static_cast<int64_t>(q) * width;
        int i = 0;
        if (sw == 2) {
          // Whole blocks of 16 outputs whose 32 source bytes lie inside the
          // row: widen, keep the even int16 (low half of each int32 lane).
          const int first = std::max(0, (s.pad_left - q + 1) / 2);  // 2i + q - pad_left >= 0
          for (; i < first && i < width; ++i) phase[i] = 0;
          for (; i + 16 <= width && 2 * i + q - s.pad_left + 32 <= s.w_in; i += 16) {
            const uint8_t* from = src + (2 * i + q - s.pad_left);
            const __m256i a = widen16(from, x_signed, zp);
            const __m256i b = widen16(from + 16, x_signed, zp);
            const __m256i ae = _mm256_srai_epi32(_mm256_slli_epi32(a, 16), 16);
            const __m256i be = _mm256_srai_epi32(_mm256_slli_epi32(b, 16), 16);
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(phase + i),
                                _mm256_permute4x64_epi64(_mm256_packs_epi32(ae, be), 0xD8));
          }
        }
        for (; i < width; ++i) {
          const int ix = i * sw + q - s.pad_left;
          int v = 0;
          if (ix >= 0 && ix < s.w_in) v = (x_signed ? static_cast<int8_t>(src[ix]) : src[ix]) - x_zp;
          phase[i] = static_cast<int16_t>(v);
        }
      }
    }
  }
}

namespace {

// Depthwise sums of 16 consecutive outputs from `ox` of one row: the npairs
// tap pairs (offsets into the int16 plane row `base`, weights packed two per
// int32), as outputs 0-7 and 8-15.
struct Sums16 {
  __m256i lo, hi;
};

KVANT_TARGET_AVX2 inline Sums16 in_order(__m256i a0, __m256i a1) {
  // a0 holds outputs 0-3 | 8-11, a1 4-7 | 12-15.
  return {_mm256_permute2x128_si256(a0, a1, 0x20), _mm256_permute2x128_si256(a0, a1, 0x31)};
}

KVANT_TARGET_AVX2 inline Sums16 depthwise_sums16(const int16_t* base, const int32_t* wpairs, const int32_t* offsets,
                                                 int npairs, int ox) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0;
  for (int t = 0; t < npairs; ++t) {
    const __m256i wv = _mm256_set1_epi32(wpairs[t]);
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + offsets[2 * t] + ox));
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(base + offsets[2 * t + 1] + ox));
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(u, v), wv));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(u, v), wv));
  }
  return in_order(a0, a1);
}

// The same for 32 outputs (two independent accumulator sets): outputs
// ox..ox+15 in `first`, ox+16..ox+31 in `second`.
KVANT_TARGET_AVX2 inline void depthwise_sums32(const int16_t* base, const int32_t* wpairs, const int32_t* offsets,
                                               int npairs, int ox, Sums16& first, Sums16& second) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, b0 = a0, b1 = a0;
  for (int t = 0; t < npairs; ++t) {
    const int16_t* p0 = base + offsets[2 * t] + ox;
    const int16_t* p1 = base + offsets[2 * t + 1] + ox;
    const __m256i wv = _mm256_set1_epi32(wpairs[t]);
    const __m256i u0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0));
    const __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1));
    const __m256i u1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p0 + 16));
    const __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p1 + 16));
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_unpacklo_epi16(u0, v0), wv));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_unpackhi_epi16(u0, v0), wv));
    b0 = _mm256_add_epi32(b0, _mm256_madd_epi16(_mm256_unpacklo_epi16(u1, v1), wv));
    b1 = _mm256_add_epi32(b1, _mm256_madd_epi16(_mm256_unpackhi_epi16(u1, v1), wv));
  }
  first = in_order(a0, a1);
  second = in_order(b0, b1);
}

}  // namespace

KVANT_TARGET_AVX2 void depthwise_channel(const int16_t* plane, int64_t row_stride, const int32_t* wpairs,
                                         const int32_t* offsets, int npairs, const ConvShape& s, const Requant& rq,
                                         uint8_t* y) {
  const __m256 lo = _mm256_set1_ps(rq.lo);
  const __m256 hi = _mm256_set1_ps(rq.hi);
  const __m256i zp = _mm256_set1_epi32(rq.y_zp);
  const __m256i bias = _mm256_set1_epi32(rq.bias[0]);
  const __m256 mult = _mm256_set1_ps(rq.multiplier[0]);
  for (int oy = 0; oy < s.h_out; ++oy) {
    const int16_t* base = plane + static_cast<int64_t>(oy) * s.stride_h * row_stride;
    uint8_t* out = y + static_cast<int64_t>(oy) * s.w_out;
    int ox = 0;
    // 32 outputs at a time (two independent accumulator sets), then 16.
    for (; ox + 32 <= s.w_out; ox += 32) {
      Sums16 first, second;
      depthwise_sums32(base, wpairs, offsets, npairs, ox, first, second);
      store_bytes(out + ox, requant16(first.lo, first.hi, bias, mult, lo, hi, zp, rq.y_signed), 16);
      store_bytes(out + ox + 16, requant16(second.lo, second.hi, bias, mult, lo, hi, zp, rq.y_signed), 16);
    }
    for (; ox < s.w_out; ox += 16) {
      const Sums16 sums = depthwise_sums16(base, wpairs, offsets, npairs, ox);
      store_bytes(out + ox, requant16(sums.lo, sums.hi, bias, mult, lo, hi, zp, rq.y_signed), s.w_out - ox);
    }
  }
}

namespace {

// The range {lo, hi, nan} of the values a loop stores, per lane.
struct RangeAcc {
  __m256 lo, hi, nan;
};

// 16 accumulators (a0: outputs 0-7, a1: 8-15) as floats: float(acc) * mult
// [+ bias], clamped, the first `count` stored (and, with r, their range).
KVANT_TARGET_AVX2 inline void store_f32x16(float* out, __m256i a0, __m256i a1, __m256 mult, const __m256* bias,
                                           __m256 lo, __m256 hi, int count, bool track, RangeAcc& r) {
  __m256 f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(a0), mult);
  __m256 f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(a1), mult);
  if (bias != nullptr) {
    f0 = _mm256_add_ps(f0, *bias);
    f1 = _mm256_add_ps(f1, *bias);
  }
  f0 = _mm256_min_ps(hi, _mm256_max_ps(lo, f0));  // as std::min(std::max(v, lo), hi), NaN too
  f1 = _mm256_min_ps(hi, _mm256_max_ps(lo, f1));
  if (count >= 16) {
    _mm256_storeu_ps(out, f0);
    _mm256_storeu_ps(out + 8, f1);
  } else {  // the first `count` lanes; the others read as 0 for the range (which holds 0 anyway)
    const __m256i n = _mm256_set1_epi32(count);
    const __m256i m0 = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i m1 = _mm256_cmpgt_epi32(n, _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15));
    _mm256_maskstore_ps(out, m0, f0);
    _mm256_maskstore_ps(out + 8, m1, f1);
    f0 = _mm256_and_ps(f0, _mm256_castsi256_ps(m0));
    f1 = _mm256_and_ps(f1, _mm256_castsi256_ps(m1));
  }
  if (track) {
    r.nan = _mm256_or_ps(r.nan, _mm256_or_ps(_mm256_cmp_ps(f0, f0, _CMP_UNORD_Q), _mm256_cmp_ps(f1, f1, _CMP_UNORD_Q)));
    r.lo = _mm256_min_ps(r.lo, _mm256_min_ps(f0, f1));
    r.hi = _mm256_max_ps(r.hi, _mm256_max_ps(f0, f1));
  }
}

}  // namespace

KVANT_TARGET_AVX2 void depthwise_channel_f32(const int16_t* plane, int64_t row_stride, const int32_t* wpairs,
                                             const int32_t* offsets, int npairs, const ConvShape& s, float mult,
                                             const float* bias, float lo, float hi, float* y, float* range) {
  RangeAcc acc{_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
  const bool track = range != nullptr;
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vm = _mm256_set1_ps(mult);
  const __m256 vb = _mm256_set1_ps(bias != nullptr ? *bias : 0.0f);
  const __m256* b = bias != nullptr ? &vb : nullptr;
  for (int oy = 0; oy < s.h_out; ++oy) {
    const int16_t* base = plane + static_cast<int64_t>(oy) * s.stride_h * row_stride;
    float* out = y + static_cast<int64_t>(oy) * s.w_out;
    int ox = 0;
    for (; ox + 32 <= s.w_out; ox += 32) {
      Sums16 first, second;
      depthwise_sums32(base, wpairs, offsets, npairs, ox, first, second);
      store_f32x16(out + ox, first.lo, first.hi, vm, b, vlo, vhi, 16, track, acc);
      store_f32x16(out + ox + 16, second.lo, second.hi, vm, b, vlo, vhi, 16, track, acc);
    }
    for (; ox < s.w_out; ox += 16) {
      const Sums16 sums = depthwise_sums16(base, wpairs, offsets, npairs, ox);
      store_f32x16(out + ox, sums.lo, sums.hi, vm, b, vlo, vhi, s.w_out - ox, track, acc);
    }
  }
  if (!track) return;
  alignas(32) float ls[8], hs[8];
  _mm256_store_ps(ls, acc.lo);
  _mm256_store_ps(hs, acc.hi);
  float slo = 0.0f, shi = 0.0f;
  for (int i = 0; i < 8; ++i) {
    slo = ls[i] < slo ? ls[i] : slo;
    shi = hs[i] > shi ? hs[i] : shi;
  }
  if (_mm256_movemask_ps(acc.nan) != 0) range[2] = 1.0f;
  range[0] = slo < range[0] ? slo : range[0];
  range[1] = shi > range[1] ? shi : range[1];
}

}  // namespace kvant::qconv_avx2

#endif  // __x86_64__
