// AVX2 INT8 GEMM, 7-bit kernel (every raw B value within [-64, 64]); the
// scheme and its exactness bound are in gemm_s8.h, the layout (quads) in
// gemm_s8_kernels.h.
// Per 4 k values and 8 columns: vpmaddubsw (u8 A x s8 B, pairs into int16,
// never saturating here) then vpmaddwd with ones (pairs into int32) and
// vpaddd. Loop order: chunks of rows of A (read in place, sized to stay in
// L2); for each 16-column panel of B, tiles of up to 4 rows x 16 columns
// keep 8 ymm accumulators while the K loop streams the panel. The 4-row
// tile's K loop is inline assembly (accumulate4): from intrinsics GCC keeps a
// copy of an accumulator on the stack and adds register moves, and the loop
// then issues about half again as many instructions as it needs.
#if defined(__x86_64__)

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/gemm_s8_kernels.h"

#define KVANT_TARGET_AVX2 __attribute__((target("avx2,fma")))

namespace kvant {

namespace {

constexpr int kTileRows = 4;
constexpr int kQuadBytes = 4 * kQGemmPanelCols;  // one k quad of one panel
constexpr int kChunkBytes = 96 * 1024;           // A bytes per row chunk
constexpr int kMaxChunkRows = 256;

int round_up_int(int x, int to) { return (x + to - 1) / to * to; }

// The 4 bytes a[0..len) (len 1..3) as one int32, zero-filled.
inline int32_t load_tail(const uint8_t* a, int len) {
  uint8_t bytes[4] = {0, 0, 0, 0};
  std::memcpy(bytes, a, static_cast<size_t>(len));
  int32_t v;
  std::memcpy(&v, bytes, sizeof(v));
  return v;
}

// acc[r] += 4 k values of row r (quad[r], 4 bytes) times one packed quad.
template <int kRows>
KVANT_TARGET_AVX2 inline __attribute__((always_inline)) void step(__m256i (&acc)[kRows][2], __m256i ones,
                                                                  const int8_t* bq, const int32_t* quad) {
  const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bq));
  const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bq + 32));
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r) {
    const __m256i av = _mm256_set1_epi32(quad[r]);
    acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
    acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
  }
}

// acc[r][h] = 4 rows of A (row stride lda) times `quads` whole k quads of one
// packed panel (columns 8h..8h+7), two quads per loop trip. ymm0-7 the
// accumulators (acc[r][h] in ymm(2r+h)), ymm8/9 the panel's quad row,
// ymm10 the broadcast A quad, ymm11 the product, ymm12 int16 ones.
#define KV7_ROW(src, a, b)                                                    \
  "vpbroadcastd " src                                                         \
  ",%%ymm10\n\t"                                                              \
  "vpmaddubsw %%ymm8,%%ymm10,%%ymm11\n\tvpmaddwd %%ymm12,%%ymm11,%%ymm11\n\t" \
  "vpaddd %%ymm11,%%ymm" #a ",%%ymm" #a                                       \
  "\n\t"                                                                      \
  "vpmaddubsw %%ymm9,%%ymm10,%%ymm10\n\tvpmaddwd %%ymm12,%%ymm10,%%ymm10\n\t" \
  "vpaddd %%ymm10,%%ymm" #b ",%%ymm" #b "\n\t"
#define KV7_QUAD(aoff, boff)                                                                              \
  "vmovdqu " #boff "(%[b]),%%ymm8\n\tvmovdqu " #boff "+32(%[b]),%%ymm9\n\t" KV7_ROW(#aoff "(%[a])", 0, 1) \
      KV7_ROW(#aoff "(%[a],%[s],1)", 2, 3) KV7_ROW(#aoff "(%[a],%[s],2)", 4, 5) KV7_ROW(#aoff "(%[a],%[s3],1)", 6, 7)
#define KV7_ZERO(i) "vpxor %%xmm" #i ",%%xmm" #i ",%%xmm" #i "\n\t"
#define KV7_STORE(i) "vmovdqu %%ymm" #i "," #i "*32(%[acc])\n\t"
KVANT_TARGET_AVX2 void accumulate4(const uint8_t* a, int lda, int quads, const int8_t* b, __m256i (&acc)[4][2]) {
  const int64_t s = lda, s3 = static_cast<int64_t>(3) * lda;
  int64_t pairs = quads / 2;
  const int64_t odd = quads % 2;
  asm volatile(KV7_ZERO(0) KV7_ZERO(1) KV7_ZERO(2) KV7_ZERO(3) KV7_ZERO(4) KV7_ZERO(5) KV7_ZERO(6) KV7_ZERO(7)
               "vpcmpeqw %%ymm12,%%ymm12,%%ymm12\n\t"
               "vpsrlw $15,%%ymm12,%%ymm12\n\t"
               "test %[n],%[n]\n\t"
               "jz 2f\n\t"
               "1:\n\t" KV7_QUAD(0, 0) KV7_QUAD(4, 64)
               "add $8,%[a]\n\t"
               "add $128,%[b]\n\t"
               "dec %[n]\n\t"
               "jnz 1b\n\t"
               "2:\n\t"
               "test %[odd],%[odd]\n\t"
               "jz 3f\n\t" KV7_QUAD(0, 0) "3:\n\t" KV7_STORE(0) KV7_STORE(1) KV7_STORE(2) KV7_STORE(3) KV7_STORE(4)
                   KV7_STORE(5) KV7_STORE(6) KV7_STORE(7)
               : [a] "+r"(a), [b] "+r"(b), [n] "+r"(pairs)
               : [s] "r"(s), [s3] "r"(s3), [odd] "r"(odd), [acc] "r"(&acc[0][0])
               : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
                 "xmm12", "cc", "memory");
}

// The segment form (gemm_u8s8_segments_requant): acc[r][h] (+)= the `quads`
// k quads at rows a[r] (4 pointers, each advanced) times one packed panel.
// init: zero the accumulators first, else add to what acc holds.
#define KV7_QUAD_ROWS(aoff, boff)                                                                          \
  "vmovdqu " #boff "(%[b]),%%ymm8\n\tvmovdqu " #boff "+32(%[b]),%%ymm9\n\t" KV7_ROW(#aoff "(%[a0])", 0, 1) \
      KV7_ROW(#aoff "(%[a1])", 2, 3) KV7_ROW(#aoff "(%[a2])", 4, 5) KV7_ROW(#aoff "(%[a3])", 6, 7)
#define KV7_LOAD(i) "vmovdqu " #i "*32(%[acc]),%%ymm" #i "\n\t"
KVANT_TARGET_AVX2 void accumulate4_rows(const uint8_t* const* rows, int64_t offset, int quads, const int8_t* b,
                                        bool init, __m256i (&acc)[4][2]) {
  const uint8_t* a0 = rows[0] + offset;
  const uint8_t* a1 = rows[1] + offset;
  const uint8_t* a2 = rows[2] + offset;
  const uint8_t* a3 = rows[3] + offset;
  int64_t pairs = quads / 2;
  const int64_t odd = quads % 2;
  const int64_t zero = init ? 1 : 0;
  asm volatile("test %[zero],%[zero]\n\t"
               "jz 4f\n\t" KV7_ZERO(0) KV7_ZERO(1) KV7_ZERO(2) KV7_ZERO(3) KV7_ZERO(4) KV7_ZERO(5) KV7_ZERO(6)
                   KV7_ZERO(7) "jmp 5f\n\t"
                               "4:\n\t" KV7_LOAD(0) KV7_LOAD(1) KV7_LOAD(2) KV7_LOAD(3) KV7_LOAD(4) KV7_LOAD(5)
                                   KV7_LOAD(6) KV7_LOAD(7) "5:\n\t"
                                                           "vpcmpeqw %%ymm12,%%ymm12,%%ymm12\n\t"
                                                           "vpsrlw $15,%%ymm12,%%ymm12\n\t"
                                                           "test %[n],%[n]\n\t"
                                                           "jz 2f\n\t"
                                                           "1:\n\t" KV7_QUAD_ROWS(0, 0) KV7_QUAD_ROWS(4, 64)
                                                               "add $8,%[a0]\n\t"
                                                               "add $8,%[a1]\n\t"
                                                               "add $8,%[a2]\n\t"
                                                               "add $8,%[a3]\n\t"
                                                               "add $128,%[b]\n\t"
                                                               "dec %[n]\n\t"
                                                               "jnz 1b\n\t"
                                                               "2:\n\t"
                                                               "test %[odd],%[odd]\n\t"
                                                               "jz 3f\n\t" KV7_QUAD_ROWS(0, 0) "3:\n\t" KV7_STORE(0)
                                                                   KV7_STORE(1) KV7_STORE(2) KV7_STORE(3) KV7_STORE(4)
                                                                       KV7_STORE(5) KV7_STORE(6) KV7_STORE(7)
               : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [b] "+r"(b), [n] "+r"(pairs)
               : [odd] "r"(odd), [zero] "r"(zero), [acc] "r"(&acc[0][0])
               : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
                 "xmm12", "cc", "memory");
}
#undef KV7_QUAD_ROWS
#undef KV7_LOAD
#undef KV7_ROW
#undef KV7_QUAD
#undef KV7_ZERO
#undef KV7_STORE

// The fused requantizing epilogue of one panel (gemm_s8.h's QGemmRequant,
// the float operations of requant_rows_avx2): bias and mult for the panel's
// 16 columns (zero past N), the bounds less the zero point, and where the
// panel's first output row starts.
struct PanelRequant {
  alignas(32) int32_t bias[kQGemmPanelCols];
  alignas(32) float mult[kQGemmPanelCols];
  float lo, hi;  // lo - y_zp, hi - y_zp
  int32_t y_zp;
  bool y_signed;
  uint8_t* y;
  int64_t ldy;
};

// 16 accumulators (v0 | v1) of one row requantized to 16 bytes, stored to
// `cols` bytes at out: y = clamp(float(acc + bias) * mult, lo, hi) rounded
// (to nearest even, cvtps) plus y_zp; within the output type, so the
// saturating packs keep every value.
KVANT_TARGET_AVX2 inline void requant_row(const PanelRequant& rq, __m256i v0, __m256i v1, uint8_t* out, int cols) {
  const __m256 lo = _mm256_set1_ps(rq.lo), hi = _mm256_set1_ps(rq.hi);
  const __m256i zp = _mm256_set1_epi32(rq.y_zp);
  auto one = [&](__m256i v, int h) {
    const __m256i s = _mm256_add_epi32(v, _mm256_load_si256(reinterpret_cast<const __m256i*>(rq.bias + 8 * h)));
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_load_ps(rq.mult + 8 * h));
    f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
    return _mm256_add_epi32(_mm256_cvtps_epi32(f), zp);
  };
  // int16 lanes i0[0..3] i1[0..3] i0[4..7] i1[4..7], then in column order.
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(one(v0, 0), one(v1, 1)), 0xD8);
  const __m128i lo8 = _mm256_castsi256_si128(w), hi8 = _mm256_extracti128_si256(w, 1);
  const __m128i bytes = rq.y_signed ? _mm_packs_epi16(lo8, hi8) : _mm_packus_epi16(lo8, hi8);
  if (cols == kQGemmPanelCols) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), bytes);
  } else {
    alignas(16) uint8_t tmp[kQGemmPanelCols];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    std::memcpy(out, tmp, static_cast<size_t>(cols));
  }
}

// The fused dequantizing epilogue of one panel (dynamic_quant.h's dequant,
// the operations of dequant_rows_avx2: its 8-wide vector steps for columns
// below N rounded down to 8, its scalar tail above): the panel's 16 columns
// of ibias / mult / fbias (zero past N), vec_cols of them vector ones.
struct PanelDequant {
  alignas(32) int32_t ibias[kQGemmPanelCols];
  alignas(32) float mult[kQGemmPanelCols];
  alignas(32) float fbias[kQGemmPanelCols];
  bool has_ibias, has_fbias;
  float lo, hi;
  int vec_cols;
  float* y;
  int64_t ldy;
};

// dequant_rows_avx2's scalar tail for one value.
inline float dequant_scalar(const PanelDequant& dq, int32_t acc, int i) {
  const int32_t c =
      dq.has_ibias ? static_cast<int32_t>(static_cast<uint32_t>(acc) + static_cast<uint32_t>(dq.ibias[i])) : acc;
  float v = static_cast<float>(c) * dq.mult[i];
  if (dq.has_fbias) v += dq.fbias[i];
  v = v > dq.lo ? v : (v != v ? v : dq.lo);
  v = v < dq.hi ? v : (v != v ? v : dq.hi);
  return v;
}

// 16 accumulators (v0 | v1) of one row dequantized to `cols` floats at out.
KVANT_TARGET_AVX2 inline void dequant_row(const PanelDequant& dq, __m256i v0, __m256i v1, float* out, int cols) {
  const __m256 lo = _mm256_set1_ps(dq.lo), hi = _mm256_set1_ps(dq.hi);
  auto one = [&](__m256i c, int h) {
    if (dq.has_ibias) c = _mm256_add_epi32(c, _mm256_load_si256(reinterpret_cast<const __m256i*>(dq.ibias + 8 * h)));
    __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(c), _mm256_load_ps(dq.mult + 8 * h));
    if (dq.has_fbias) v = _mm256_add_ps(v, _mm256_load_ps(dq.fbias + 8 * h));
    return _mm256_min_ps(_mm256_max_ps(v, lo), hi);
  };
  const __m256 f0 = one(v0, 0), f1 = one(v1, 1);
  if (cols == kQGemmPanelCols && dq.vec_cols == kQGemmPanelCols) {
    _mm256_storeu_ps(out, f0);
    _mm256_storeu_ps(out + 8, f1);
    return;
  }
  alignas(32) float f[kQGemmPanelCols];
  alignas(32) int32_t c[kQGemmPanelCols];
  _mm256_store_ps(f, f0);
  _mm256_store_ps(f + 8, f1);
  _mm256_store_si256(reinterpret_cast<__m256i*>(c), v0);
  _mm256_store_si256(reinterpret_cast<__m256i*>(c + 8), v1);
  for (int i = 0; i < cols; ++i) out[i] = i < dq.vec_cols ? f[i] : dequant_scalar(dq, c[i], i);
}

// The end of a tile: C = acc + corr - bzp * rowsum stored as int32 to c, or
// requantized (rq) or dequantized (dq) into the output rows from row0.
template <int kRows>
KVANT_TARGET_AVX2 inline __attribute__((always_inline)) void finish(__m256i (&acc)[kRows][2], const int32_t* corr,
                                                                    const int32_t* bzp, const int32_t* rowsum,
                                                                    int32_t* c, int ldc, int cols,
                                                                    const PanelRequant* rq, const PanelDequant* dq,
                                                                    int row0) {
  const __m256i corr0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr));
  const __m256i corr1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 8));
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r) {
    __m256i v0 = _mm256_add_epi32(acc[r][0], corr0);
    __m256i v1 = _mm256_add_epi32(acc[r][1], corr1);
    if (bzp != nullptr) {
      const __m256i sum = _mm256_set1_epi32(rowsum[r]);
      v0 = _mm256_sub_epi32(v0, _mm256_mullo_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bzp))));
      v1 = _mm256_sub_epi32(v1, _mm256_mullo_epi32(sum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bzp + 8))));
    }
    if (rq != nullptr) {
      requant_row(*rq, v0, v1, rq->y + static_cast<int64_t>(row0 + r) * rq->ldy, cols);
      continue;
    }
    if (dq != nullptr) {
      dequant_row(*dq, v0, v1, dq->y + static_cast<int64_t>(row0 + r) * dq->ldy, cols);
      continue;
    }
    int32_t* out = c + static_cast<int64_t>(r) * ldc;
    if (cols == kQGemmPanelCols) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), v0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 8), v1);
    } else {
      alignas(32) int32_t tmp[kQGemmPanelCols];
      _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(tmp + 8), v1);
      std::memcpy(out, tmp, sizeof(int32_t) * static_cast<size_t>(cols));
    }
  }
}

// One tile: kRows rows of A (row stride lda, K bytes each) times one packed
// panel (ceil(K/4) quads); C = acc + corr - bzp * rowsum (bzp nullptr: no
// rowsum term), `cols` (1..16) columns stored: as int32 to c (row stride
// ldc), or, with rq (dq) non-null, requantized (dequantized) to its output
// rows (c unused).
template <int kRows>
KVANT_TARGET_AVX2 void tile(const uint8_t* a, int lda, int K, const int8_t* b, const int32_t* corr, const int32_t* bzp,
                            const int32_t* rowsum, int32_t* c, int ldc, int cols, const PanelRequant* rq,
                            const PanelDequant* dq, int row0) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[kRows][2];
  const int full = K / 4;
  const int tail = K % 4;
  if constexpr (kRows == 4) {
    accumulate4(a, lda, full, b, acc);
  } else {
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int q = 0; q < full; ++q) {
      int32_t quad[kRows];
#pragma GCC unroll 4
      for (int r = 0; r < kRows; ++r) std::memcpy(&quad[r], a + static_cast<int64_t>(r) * lda + 4 * q, 4);
      step<kRows>(acc, ones, b + static_cast<int64_t>(q) * kQuadBytes, quad);
    }
  }
  if (tail != 0) {
    int32_t quad[kRows];
    for (int r = 0; r < kRows; ++r) quad[r] = load_tail(a + static_cast<int64_t>(r) * lda + 4 * full, tail);
    step<kRows>(acc, ones, b + static_cast<int64_t>(full) * kQuadBytes, quad);
  }
  finish<kRows>(acc, corr, bzp, rowsum, c, ldc, cols, rq, dq, row0);
}

// One tile of the segment form: kRows rows given by pointers, A[r, s * seg_k
// + k] = rows[r][offsets[s] + k], seg_k a multiple of 4; B's segment s starts
// at quad s * seg_k / 4 of the panel.
template <int kRows>
KVANT_TARGET_AVX2 void tile_rows(const uint8_t* const* rows, const int64_t* offsets, int segments, int seg_quads,
                                 const int8_t* b, const int32_t* corr, int cols, const PanelRequant* rq, int row0) {
  __m256i acc[kRows][2];
  if constexpr (kRows == 4) {
    for (int s = 0; s < segments; ++s) {
      accumulate4_rows(rows, offsets[s], seg_quads, b + static_cast<int64_t>(s) * seg_quads * kQuadBytes, s == 0, acc);
    }
  } else {
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int s = 0; s < segments; ++s) {
      const int8_t* bs = b + static_cast<int64_t>(s) * seg_quads * kQuadBytes;
      for (int q = 0; q < seg_quads; ++q) {
        int32_t quad[kRows];
#pragma GCC unroll 4
        for (int r = 0; r < kRows; ++r) std::memcpy(&quad[r], rows[r] + offsets[s] + 4 * q, 4);
        step<kRows>(acc, ones, bs + static_cast<int64_t>(q) * kQuadBytes, quad);
      }
    }
  }
  finish<kRows>(acc, corr, nullptr, nullptr, nullptr, 0, cols, rq, nullptr, row0);
}

}  // namespace

int64_t qgemm_quads_packed_bytes(int K, int N) { return qgemm_panels_bytes(K, N, 4); }

void qgemm_quads_pack(const int8_t* B, int ldb, int K, int N, int8_t* packed) {
  qgemm_pack_panels(B, ldb, K, N, 4, 4, packed);
}

namespace {

// The loops of the three entry points; requant and dequant null: int32 C.
KVANT_TARGET_AVX2 void run(const QGemmArgs& g, const QGemmRequant* requant, const DequantRowsArgs* dequant) {
  const int K = g.k;
  const int quads = round_up_int(K, 4) / 4;
  const int panels = round_up_int(g.n, kQGemmPanelCols) / kQGemmPanelCols;
  const int chunk_rows = std::clamp(kChunkBytes / std::max(K, 1) / kTileRows * kTileRows, kTileRows, kMaxChunkRows);
  int32_t rowsum[kMaxChunkRows] = {};

  for (int m0 = 0; m0 < g.m; m0 += chunk_rows) {
    const int rows = std::min(chunk_rows, g.m - m0);
    const uint8_t* a_chunk = g.a + static_cast<int64_t>(m0) * g.lda;
    if (g.b_zp != nullptr) {
      for (int r = 0; r < rows; ++r) {
        const uint8_t* a_row = a_chunk + static_cast<int64_t>(r) * g.lda;
        int32_t sum = 0;
        for (int k = 0; k < K; ++k) sum += a_row[k];
        rowsum[r] = sum;
      }
    }
    for (int j = 0; j < panels; ++j) {
      const int8_t* panel = g.packed + static_cast<int64_t>(j) * quads * kQuadBytes;
      const int n0 = j * kQGemmPanelCols;
      const int cols = std::min(kQGemmPanelCols, g.n - n0);
      alignas(32) int32_t corr[kQGemmPanelCols];
      alignas(32) int32_t bzp[kQGemmPanelCols];
      qgemm_panel_corrections(g, n0, cols, corr, bzp);
      const int32_t* panel_bzp = g.b_zp != nullptr ? bzp : nullptr;
      PanelRequant prq;
      const PanelRequant* rq = nullptr;
      if (requant != nullptr) {
        for (int i = 0; i < kQGemmPanelCols; ++i) {
          prq.bias[i] = i < cols ? requant->bias[n0 + i] : 0;
          prq.mult[i] = i < cols ? requant->mult[n0 + i] : 0.0f;
        }
        prq.lo = static_cast<float>(requant->lo - requant->y_zp);
        prq.hi = static_cast<float>(requant->hi - requant->y_zp);
        prq.y_zp = requant->y_zp;
        prq.y_signed = requant->y_signed;
        prq.y = requant->y + n0;
        prq.ldy = requant->ldy;
        rq = &prq;
      }
      PanelDequant pdq;
      const PanelDequant* dq = nullptr;
      if (dequant != nullptr) {
        pdq.has_ibias = dequant->ibias != nullptr;
        pdq.has_fbias = dequant->fbias != nullptr;
        for (int i = 0; i < kQGemmPanelCols; ++i) {
          const bool inside = i < cols;
          pdq.ibias[i] = inside && pdq.has_ibias ? dequant->ibias[n0 + i] : 0;
          pdq.mult[i] = inside ? dequant->mult[n0 + i] : 0.0f;
          pdq.fbias[i] = inside && pdq.has_fbias ? dequant->fbias[n0 + i] : 0.0f;
        }
        pdq.lo = dequant->lo;
        pdq.hi = dequant->hi;
        pdq.vec_cols = std::clamp(g.n / 8 * 8 - n0, 0, kQGemmPanelCols);
        pdq.y = dequant->out + n0;
        pdq.ldy = dequant->out_stride;
        dq = &pdq;
      }
      for (int r0 = 0; r0 < rows; r0 += kTileRows) {
        const uint8_t* a = a_chunk + static_cast<int64_t>(r0) * g.lda;
        const int32_t* sums = rowsum + r0;
        int32_t* c = rq != nullptr || dq != nullptr ? nullptr : g.c + static_cast<int64_t>(m0 + r0) * g.ldc + n0;
        const int row0 = m0 + r0;
        switch (std::min(kTileRows, rows - r0)) {
          case 4: tile<4>(a, g.lda, K, panel, corr, panel_bzp, sums, c, g.ldc, cols, rq, dq, row0); break;
          case 3: tile<3>(a, g.lda, K, panel, corr, panel_bzp, sums, c, g.ldc, cols, rq, dq, row0); break;
          case 2: tile<2>(a, g.lda, K, panel, corr, panel_bzp, sums, c, g.ldc, cols, rq, dq, row0); break;
          default: tile<1>(a, g.lda, K, panel, corr, panel_bzp, sums, c, g.ldc, cols, rq, dq, row0); break;
        }
      }
    }
  }
}

}  // namespace

KVANT_TARGET_AVX2 void qgemm_u8s7_avx2(const QGemmArgs& g) { run(g, nullptr, nullptr); }

KVANT_TARGET_AVX2 void qgemm_u8s7_avx2_requant(const QGemmArgs& g, const QGemmRequant& rq) { run(g, &rq, nullptr); }

KVANT_TARGET_AVX2 void qgemm_u8s7_avx2_dequant(const QGemmArgs& g, const DequantRowsArgs& dq) { run(g, nullptr, &dq); }

KVANT_TARGET_AVX2 void qgemm_u8s7_avx2_segments_requant(const QGemmArgs& g, const QGemmRowSegments& a,
                                                        const QGemmRequant& requant) {
  const int seg_quads = a.seg_k / 4;
  const int quads = seg_quads * a.segments;
  const int panels = round_up_int(g.n, kQGemmPanelCols) / kQGemmPanelCols;
  for (int j = 0; j < panels; ++j) {
    const int8_t* panel = g.packed + static_cast<int64_t>(j) * quads * kQuadBytes;
    const int n0 = j * kQGemmPanelCols;
    const int cols = std::min(kQGemmPanelCols, g.n - n0);
    alignas(32) int32_t corr[kQGemmPanelCols];
    alignas(32) int32_t bzp[kQGemmPanelCols];
    qgemm_panel_corrections(g, n0, cols, corr, bzp);
    PanelRequant prq;
    for (int i = 0; i < kQGemmPanelCols; ++i) {
      prq.bias[i] = i < cols ? requant.bias[n0 + i] : 0;
      prq.mult[i] = i < cols ? requant.mult[n0 + i] : 0.0f;
    }
    prq.lo = static_cast<float>(requant.lo - requant.y_zp);
    prq.hi = static_cast<float>(requant.hi - requant.y_zp);
    prq.y_zp = requant.y_zp;
    prq.y_signed = requant.y_signed;
    prq.y = requant.y + n0;
    prq.ldy = requant.ldy;
    for (int r0 = 0; r0 < a.m; r0 += kTileRows) {
      const uint8_t* const* rows = a.rows + r0;
      switch (std::min(kTileRows, a.m - r0)) {
        case 4: tile_rows<4>(rows, a.offsets, a.segments, seg_quads, panel, corr, cols, &prq, r0); break;
        case 3: tile_rows<3>(rows, a.offsets, a.segments, seg_quads, panel, corr, cols, &prq, r0); break;
        case 2: tile_rows<2>(rows, a.offsets, a.segments, seg_quads, panel, corr, cols, &prq, r0); break;
        default: tile_rows<1>(rows, a.offsets, a.segments, seg_quads, panel, corr, cols, &prq, r0); break;
      }
    }
  }
}

}  // namespace kvant

#endif  // __x86_64__
