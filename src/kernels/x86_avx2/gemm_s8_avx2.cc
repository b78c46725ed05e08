// AVX2 INT8 GEMM, wide kernel (any int8 B); the scheme and packed layout are
// described in kernels/gemm_s8_kernels.h (pairs). Loop order: A is widened to int16 into a
// fixed stack buffer, a chunk of rows times a block of K at a time; for each
// 16-column panel of B, tiles of up to 4 rows x 16 columns keep 8 ymm
// accumulators while the K loop streams the panel. The first K block stores
// accumulators plus corrections, later blocks add into C.
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/gemm_s8_kernels.h"

#define KVANT_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace kvant {

namespace {

constexpr int kTileRows = 6;                     // the inline-assembly tile below; 1-5 rows use intrinsics
constexpr int kPairBytes = 2 * kQGemmPanelCols;  // one k pair of one panel
constexpr int kWideElems = 65536;                // int16 of widened A on the stack (128 KiB)
constexpr int kMaxBlockK = kWideElems / kTileRows;
constexpr int kMaxChunkRows = 256;

int round_up_int(int x, int to) { return (x + to - 1) / to * to; }

// out[0..kb) = a[0..len) widened to int16, zero after len (kb even).
KVANT_TARGET_AVX2 void widen_row(const uint8_t* a, int len, int kb, int16_t* out) {
  int k = 0;
  for (; k + 16 <= len; k += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + k), _mm256_cvtepu8_epi16(bytes));
  }
  for (; k < len; ++k) out[k] = a[k];
  for (; k < kb; ++k) out[k] = 0;
}

// Stores v0|v1 (16 int32) to `cols` values at out, adding what is there
// when `accumulate`.
KVANT_TARGET_AVX2 inline void store_row(int32_t* out, __m256i v0, __m256i v1, int cols, bool accumulate) {
  if (cols == kQGemmPanelCols) {
    if (accumulate) {
      v0 = _mm256_add_epi32(v0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out)));
      v1 = _mm256_add_epi32(v1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out + 8)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), v1);
    return;
  }
  alignas(32) int32_t tmp[kQGemmPanelCols];
  _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v0);
  _mm256_store_si256(reinterpret_cast<__m256i*>(tmp + 8), v1);
  for (int i = 0; i < cols; ++i) {
    out[i] = accumulate ? static_cast<int32_t>(static_cast<uint32_t>(out[i]) + static_cast<uint32_t>(tmp[i])) : tmp[i];
  }
}

// Accumulates 6 rows of widened A (row stride a_stride int16) times `pairs`
// k pairs of one packed panel into acc[r][h] (columns 8h..8h+7). Inline
// assembly: in intrinsics GCC keeps copies of the 12 accumulators on the
// stack, and the store-reload chains cost about a fifth of the rate.
// ymm0-11 accumulators (acc[r][h] in ymm(2r+h)), ymm12/13 the panel's pair
// row widened to int16, ymm14 the broadcast A pair, ymm15 the product.
#define KV_ZERO(i) "vpxor %%xmm" #i ",%%xmm" #i ",%%xmm" #i "\n\t"
#define KV_STORE(i, off) "vmovdqu %%ymm" #i "," #off "(%[acc])\n\t"
#define KV_ROW(src, a, b)                                                   \
  "vpbroadcastd " src                                                       \
  ",%%ymm14\n\t"                                                            \
  "vpmaddwd %%ymm12,%%ymm14,%%ymm15\n\tvpaddd %%ymm15,%%ymm" #a ",%%ymm" #a \
  "\n\t"                                                                    \
  "vpmaddwd %%ymm13,%%ymm14,%%ymm15\n\tvpaddd %%ymm15,%%ymm" #b ",%%ymm" #b "\n\t"
KVANT_TARGET_AVX2 void accumulate6(const int16_t* a, int a_stride, int pairs, const int8_t* b, __m256i (&acc)[6][2]) {
  const int16_t* a3 = a + static_cast<int64_t>(3) * a_stride;
  const int64_t stride_bytes = static_cast<int64_t>(a_stride) * 2;
  int64_t steps = pairs;
  asm volatile(KV_ZERO(0) KV_ZERO(1) KV_ZERO(2) KV_ZERO(3) KV_ZERO(4) KV_ZERO(5) KV_ZERO(6) KV_ZERO(7) KV_ZERO(8)
                   KV_ZERO(9) KV_ZERO(10) KV_ZERO(11)
               "test %[n],%[n]\n\t"
               "jz 2f\n\t"
               "1:\n\t"
               "vpmovsxbw (%[b]),%%ymm12\n\t"
               "vpmovsxbw 16(%[b]),%%ymm13\n\t" KV_ROW("(%[a])", 0, 1) KV_ROW("(%[a],%[s],1)", 2, 3)
                   KV_ROW("(%[a],%[s],2)", 4, 5) KV_ROW("(%[a3])", 6, 7) KV_ROW("(%[a3],%[s],1)", 8, 9)
                       KV_ROW("(%[a3],%[s],2)", 10, 11)
               "add $4,%[a]\n\t"
               "add $4,%[a3]\n\t"
               "add $32,%[b]\n\t"
               "dec %[n]\n\t"
               "jnz 1b\n\t"
               "2:\n\t" KV_STORE(0, 0) KV_STORE(1, 32) KV_STORE(2, 64) KV_STORE(3, 96) KV_STORE(4, 128)
                   KV_STORE(5, 160) KV_STORE(6, 192) KV_STORE(7, 224) KV_STORE(8, 256) KV_STORE(9, 288)
                       KV_STORE(10, 320) KV_STORE(11, 352)
               : [a] "+r"(a), [a3] "+r"(a3), [b] "+r"(b), [n] "+r"(steps)
               : [s] "r"(stride_bytes), [acc] "r"(&acc[0][0])
               : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
                 "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
}
#undef KV_ZERO
#undef KV_STORE
#undef KV_ROW

// kRows (< 6) rows of widened A times `pairs` k pairs of one panel, in
// intrinsics (few enough accumulators to stay in registers).
template <int kRows>
KVANT_TARGET_AVX2 void accumulate(const int16_t* a, int a_stride, int pairs, const int8_t* b,
                                  __m256i (&acc)[kRows][2]) {
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  for (int p = 0; p < pairs; ++p) {
    const int8_t* bp = b + static_cast<int64_t>(p) * kPairBytes;
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bp)));
    const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bp + 16)));
#pragma GCC unroll 6
    for (int r = 0; r < kRows; ++r) {
      int32_t pair;
      std::memcpy(&pair, a + static_cast<int64_t>(r) * a_stride + 2 * p, sizeof(pair));
      const __m256i av = _mm256_set1_epi32(pair);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
    }
  }
}

// One tile: kRows rows of widened A (row stride a_stride int16) times `pairs`
// k pairs of one packed panel. first: C = acc + corr - bzp * rowsum (bzp
// nullptr: no rowsum term); otherwise C += acc. `cols` (1..16) columns.
template <int kRows>
KVANT_TARGET_AVX2 void tile(const int16_t* a, int a_stride, int pairs, const int8_t* b, bool first, const int32_t* corr,
                            const int32_t* bzp, const int32_t* rowsum, int32_t* c, int ldc, int cols) {
  __m256i acc[kRows][2];
  if constexpr (kRows == 6) {
    accumulate6(a, a_stride, pairs, b, acc);
  } else {
    accumulate<kRows>(a, a_stride, pairs, b, acc);
  }
  const __m256i corr0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr));
  const __m256i corr1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 8));
#pragma GCC unroll 6
  for (int r = 0; r < kRows; ++r) {
    __m256i v0 = acc[r][0];
    __m256i v1 = acc[r][1];
    if (first) {
      v0 = _mm256_add_epi32(v0, corr0);
      v1 = _mm256_add_epi32(v1, corr1);
      if (bzp != nullptr) {
        const __m256i sum = _mm256_set1_epi32(rowsum[r]);
        v0 = _mm256_sub_epi32(v0, _mm256_mullo_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bzp))));
        v1 = _mm256_sub_epi32(v1,
                              _mm256_mullo_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bzp + 8))));
      }
    }
    store_row(c + static_cast<int64_t>(r) * ldc, v0, v1, cols, !first);
  }
}

}  // namespace

int64_t qgemm_avx2_packed_bytes(int K, int N) { return qgemm_panels_bytes(K, N, 2); }

// The pairs layout (gemm_s8_kernels.h) by 16-byte interleaves where a pair
// of rows covers a whole panel; the generic packer writes the rest (the last
// panel when N % 16 != 0, and the zero row of an odd K). B that changes per
// call (steps_qmatmul.cc) is packed for every batch, so this is on its path.
KVANT_TARGET_AVX2 void qgemm_avx2_pack(const int8_t* B, int ldb, int K, int N, int8_t* packed) {
  const int full_panels = N / kQGemmPanelCols;
  const int full_pairs = K / 2;
  // The tails (or everything, when there is no full part); the loop below
  // rewrites the full part.
  if (K % 2 != 0 || N % kQGemmPanelCols != 0 || full_panels == 0 || full_pairs == 0) {
    qgemm_pack_panels(B, ldb, K, N, 2, 2, packed);
  }
  const int64_t pairs = (K + 1) / 2;
  for (int j = 0; j < full_panels; ++j) {
    int8_t* panel = packed + static_cast<int64_t>(j) * pairs * kPairBytes;
    const int8_t* col = B + static_cast<int64_t>(j) * kQGemmPanelCols;
    for (int q = 0; q < full_pairs; ++q) {
      const __m128i r0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(col + static_cast<int64_t>(2 * q) * ldb));
      const __m128i r1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(col + static_cast<int64_t>(2 * q + 1) * ldb));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(panel + q * kPairBytes), _mm_unpacklo_epi8(r0, r1));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(panel + q * kPairBytes + 16), _mm_unpackhi_epi8(r0, r1));
    }
  }
}

KVANT_TARGET_AVX2 void qgemm_u8s8_avx2(const QGemmArgs& g) {
  const int K = g.k;
  const int kp = round_up_int(K, 2);
  const int pairs = kp / 2;
  const int panels = round_up_int(g.n, kQGemmPanelCols) / kQGemmPanelCols;
  const int block_k = std::min(std::max(kp, 2), kMaxBlockK);  // even
  const int chunk_rows = std::clamp(kWideElems / block_k / kTileRows * kTileRows, kTileRows, kMaxChunkRows);
  alignas(32) int16_t wide_a[kWideElems];
  int32_t rowsum[kMaxChunkRows] = {};

  for (int m0 = 0; m0 < g.m; m0 += chunk_rows) {
    const int rows = std::min(chunk_rows, g.m - m0);
    if (g.b_zp != nullptr) {
      for (int r = 0; r < rows; ++r) {
        const uint8_t* a_row = g.a + static_cast<int64_t>(m0 + r) * g.lda;
        int32_t sum = 0;
        for (int k = 0; k < K; ++k) sum += a_row[k];
        rowsum[r] = sum;
      }
    }
    for (int k0 = 0; k0 < std::max(kp, 1); k0 += block_k) {
      const int kb = std::min(block_k, kp - k0);  // even
      for (int r = 0; r < rows; ++r) {
        widen_row(g.a + static_cast<int64_t>(m0 + r) * g.lda + k0, std::max(0, std::min(kb, K - k0)), kb,
                  wide_a + static_cast<int64_t>(r) * kb);
      }
      for (int j = 0; j < panels; ++j) {
        const int8_t* panel = g.packed + (static_cast<int64_t>(j) * pairs + k0 / 2) * kPairBytes;
        const int n0 = j * kQGemmPanelCols;
        const int cols = std::min(kQGemmPanelCols, g.n - n0);
        alignas(32) int32_t corr[kQGemmPanelCols];
        alignas(32) int32_t bzp[kQGemmPanelCols];
        qgemm_panel_corrections(g, n0, cols, corr, bzp);
        const int32_t* panel_bzp = g.b_zp != nullptr ? bzp : nullptr;
        const bool first = k0 == 0;
        for (int r0 = 0; r0 < rows; r0 += kTileRows) {
          const int16_t* a = wide_a + static_cast<int64_t>(r0) * kb;
          const int32_t* sums = rowsum + r0;
          int32_t* c = g.c + static_cast<int64_t>(m0 + r0) * g.ldc + n0;
          switch (std::min(kTileRows, rows - r0)) {
            case 6: tile<6>(a, kb, kb / 2, panel, first, corr, panel_bzp, sums, c, g.ldc, cols); break;
            case 5: tile<5>(a, kb, kb / 2, panel, first, corr, panel_bzp, sums, c, g.ldc, cols); break;
            case 4: tile<4>(a, kb, kb / 2, panel, first, corr, panel_bzp, sums, c, g.ldc, cols); break;
            case 3: tile<3>(a, kb, kb / 2, panel, first, corr, panel_bzp, sums, c, g.ldc, cols); break;
            case 2: tile<2>(a, kb, kb / 2, panel, first, corr, panel_bzp, sums, c, g.ldc, cols); break;
            default: tile<1>(a, kb, kb / 2, panel, first, corr, panel_bzp, sums, c, g.ldc, cols); break;
          }
        }
      }
    }
  }
}

}  // namespace kvant

#endif  // __x86_64__
