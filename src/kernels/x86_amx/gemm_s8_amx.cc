// AMX INT8 GEMM (kernels/gemm_s8.h has the math, gemm_s8_kernels.h the
// quads layout, here with K padded to a multiple of 64 and N to 32).
//
// tdpbusd tC, tA, tB: C[m][n] += sum_{q<16} sum_{i<4} A[m][4q+i] * B[q][4n+i]
// over a 16-row x 64-byte u8 tile A (16 rows of A, 64 consecutive k), a
// 16-row x 64-byte s8 tile B (16 k quads of one 16-column panel: exactly 16
// consecutive quad rows of the packed panel) into a 16 x 16 int32 tile C.
// Exact, like vpdpbusd.
//
// Blocking: 4 C tiles hold a 32-row x 32-column block (tmm0-3), 2 A tiles
// (tmm4-5) and 2 B tiles (tmm6-7) are loaded per 64 k: 4 loads for 4
// tdpbusd. N is walked in chunks whose packed B stays in L2; per chunk, each
// 32-row block of A against every 32-column block of the chunk. A tiles are
// read in place (stride lda) except the last k chunk when K is not a multiple
// of 64, which is copied zero-padded (a tile load reads 64 bytes per row).
// A last block of fewer than 32 rows runs under a tile configuration whose A
// and C tiles have just those rows, so no row past M is read.
//
// Epilogues: C in int32 with the zero-point corrections (qgemm_u8s8_amx), or
// requantized to bytes while the block is in registers
// (qgemm_u8s8_amx_requant: no int32 C in memory).
//
// Linux gives tile state only to processes that asked (cpu_features.cc does,
// once); each call loads its tile configurations and releases them at the end.
#include <immintrin.h>

#include <cstring>

#include "kernels/gemm_s8_kernels.h"

namespace kvant {

namespace {

constexpr int kQuadBytes = 4 * kQGemmPanelCols;
constexpr int kKChunk = 64;                   // k per tile
constexpr int kTileQuads = kKChunk / 4;       // quad rows per B tile
constexpr int64_t kChunkBBytes = 512 * 1024;  // packed B per N chunk

inline int min_int(int a, int b) { return a < b ? a : b; }
inline int round_up_int(int x, int to) { return (x + to - 1) / to * to; }

struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// A and C tiles of the first 16 rows get rows0 rows, those of the second
// rows1 (1..16 each); B tiles always hold 16 k quads.
void load_config(int rows0, int rows1) {
  TileConfig cfg;
  for (int t = 0; t < 8; ++t) cfg.colsb[t] = 64;
  for (int t : {0, 1, 4}) cfg.rows[t] = static_cast<uint8_t>(rows0);
  for (int t : {2, 3, 5}) cfg.rows[t] = static_cast<uint8_t>(rows1);
  cfg.rows[6] = cfg.rows[7] = 16;
  _tile_loadconfig(&cfg);
}

// One block of `rows_a` (16 or 32) rows x 32 columns (two panels starting at
// `b`), over `kchunks` chunks of 64 k, into acc[32][32]. a: the block's first
// row; tail: the last chunk's A bytes copied zero-padded ([32][64]) or null
// when K is a multiple of 64.
template <int kRowTiles>
void block(const uint8_t* a, int lda, const int8_t* b, int64_t panel_bytes, int kchunks, const uint8_t* tail,
           int32_t (*acc)[32]) {
  _tile_zero(0);
  _tile_zero(1);
  if (kRowTiles == 2) {
    _tile_zero(2);
    _tile_zero(3);
  }
  const int full = tail != nullptr ? kchunks - 1 : kchunks;
  for (int kc = 0; kc < full; ++kc) {
    const int8_t* bk = b + static_cast<int64_t>(kc) * kTileQuads * kQuadBytes;
    _tile_loadd(6, bk, kQuadBytes);
    _tile_loadd(7, bk + panel_bytes, kQuadBytes);
    _tile_loadd(4, a + kc * kKChunk, lda);
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
    if (kRowTiles == 2) {
      _tile_loadd(5, a + static_cast<int64_t>(16) * lda + kc * kKChunk, lda);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
  }
  if (tail != nullptr) {
    const int8_t* bk = b + static_cast<int64_t>(full) * kTileQuads * kQuadBytes;
    _tile_loadd(6, bk, kQuadBytes);
    _tile_loadd(7, bk + panel_bytes, kQuadBytes);
    _tile_loadd(4, tail, kKChunk);
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(1, 4, 7);
    if (kRowTiles == 2) {
      _tile_loadd(5, tail + 16 * kKChunk, kKChunk);
      _tile_dpbusd(2, 5, 6);
      _tile_dpbusd(3, 5, 7);
    }
  }
  _tile_stored(0, &acc[0][0], 32 * 4);
  _tile_stored(1, &acc[0][16], 32 * 4);
  if (kRowTiles == 2) {
    _tile_stored(2, &acc[16][0], 32 * 4);
    _tile_stored(3, &acc[16][16], 32 * 4);
  }
}

// The epilogue of one block: acc rows [0, rows) x columns [n0, n0 + cols)
// plus the zero-point corrections, handed to `out(r, v0, v1, k0, k1)` per
// row as two vectors of 16 with their column masks.
template <typename Out>
void finish_block(const QGemmArgs& g, const int32_t (*acc)[32], int rows, int n0, int cols, const int32_t* rowsum,
                  Out&& out) {
  alignas(64) int32_t corr[32];
  alignas(64) int32_t bzp[32];
  qgemm_panel_corrections(g, n0, min_int(16, cols), corr, bzp);
  qgemm_panel_corrections(g, n0 + 16, cols > 16 ? cols - 16 : 0, corr + 16, bzp + 16);
  const __m512i c0 = _mm512_load_si512(corr), c1 = _mm512_load_si512(corr + 16);
  const __m512i z0 = _mm512_load_si512(bzp), z1 = _mm512_load_si512(bzp + 16);
  const __mmask16 k0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
  const __mmask16 k1 = static_cast<__mmask16>(cols >= 32 ? 0xFFFFu : cols > 16 ? (1u << (cols - 16)) - 1u : 0u);
  for (int r = 0; r < rows; ++r) {
    __m512i v0 = _mm512_add_epi32(_mm512_load_si512(&acc[r][0]), c0);
    __m512i v1 = _mm512_add_epi32(_mm512_load_si512(&acc[r][16]), c1);
    if (g.b_zp != nullptr) {
      const __m512i s = _mm512_set1_epi32(rowsum[r]);
      v0 = _mm512_sub_epi32(v0, _mm512_mullo_epi32(s, z0));
      v1 = _mm512_sub_epi32(v1, _mm512_mullo_epi32(s, z1));
    }
    out(r, v0, v1, k0, k1);
  }
}

// The GEMM over all blocks; `epilogue(acc, m0, rows, n0, cols, rowsum)` takes
// each finished block.
template <typename Epilogue>
void amx_gemm(const QGemmArgs& g, Epilogue&& epilogue) {
  const int K = g.k;
  const int kpad = round_up_int(K > 0 ? K : 1, kKChunk);
  const int kchunks = kpad / kKChunk;
  const int64_t panel_bytes = static_cast<int64_t>(kpad / 4) * kQuadBytes;
  const int blocks_n = (g.n + 31) / 32;
  const int64_t fit = kChunkBBytes / (2 * panel_bytes);  // 32-column blocks per N chunk
  const int chunk_blocks = fit < 1 ? 1 : (fit < blocks_n ? static_cast<int>(fit) : blocks_n);
  const bool k_tail = K % kKChunk != 0 || K == 0;
  alignas(64) int32_t acc[32][32];
  alignas(64) uint8_t tail[32 * kKChunk];
  int32_t rowsum[32] = {};
  int config = 0;  // rows of the loaded configuration's first and second tile rows, as 100 * r0 + r1
  for (int jb0 = 0; jb0 < blocks_n; jb0 += chunk_blocks) {
    const int jb1 = min_int(blocks_n, jb0 + chunk_blocks);
    for (int m0 = 0; m0 < g.m; m0 += 32) {
      const int rows = min_int(32, g.m - m0);
      const int r0 = min_int(16, rows), r1 = rows > 16 ? rows - 16 : 16;
      if (config != 100 * r0 + r1) {
        load_config(r0, r1);
        config = 100 * r0 + r1;
      }
      const uint8_t* a = g.a + static_cast<int64_t>(m0) * g.lda;
      if (g.b_zp != nullptr) qgemm_row_sums(a, g.lda, rows, K, rowsum);
      if (k_tail) {
        const int k0 = (kchunks - 1) * kKChunk;
        std::memset(tail, 0, sizeof(tail));
        for (int r = 0; r < rows; ++r) {
          std::memcpy(tail + r * kKChunk, a + static_cast<int64_t>(r) * g.lda + k0, static_cast<size_t>(K - k0));
        }
      }
      for (int jb = jb0; jb < jb1; ++jb) {
        const int8_t* b = g.packed + static_cast<int64_t>(2 * jb) * panel_bytes;
        if (rows > 16) {
          block<2>(a, g.lda, b, panel_bytes, kchunks, k_tail ? tail : nullptr, acc);
        } else {
          block<1>(a, g.lda, b, panel_bytes, kchunks, k_tail ? tail : nullptr, acc);
        }
        const int n0 = 32 * jb;
        epilogue(acc, m0, rows, n0, min_int(32, g.n - n0), rowsum);
      }
    }
  }
  _tile_release();
}

}  // namespace

int64_t qgemm_amx_packed_bytes(int K, int N) { return qgemm_panels_bytes(K, round_up_int(N, 32), kKChunk); }

void qgemm_amx_pack(const int8_t* B, int ldb, int K, int N, int8_t* packed) {
  // Panels past N (to an even count) are zero columns.
  std::memset(packed, 0, static_cast<size_t>(qgemm_amx_packed_bytes(K, N)));
  qgemm_pack_panels(B, ldb, K, N, 4, kKChunk, packed);
}

void qgemm_u8s8_amx(const QGemmArgs& g) {
  amx_gemm(g, [&](const int32_t(*acc)[32], int m0, int rows, int n0, int cols, const int32_t* rowsum) {
    finish_block(g, acc, rows, n0, cols, rowsum, [&](int r, __m512i v0, __m512i v1, __mmask16 k0, __mmask16 k1) {
      int32_t* out = g.c + static_cast<int64_t>(m0 + r) * g.ldc + n0;
      _mm512_mask_storeu_epi32(out, k0, v0);
      _mm512_mask_storeu_epi32(out + 16, k1, v1);
    });
  });
}

// requant_rows's formula per vector: float(v + bias) * mult clamped to the
// integer bounds minus y_zp (the same as clamping after rounding), rounded
// half to even, plus y_zp, the low byte stored.
void qgemm_u8s8_amx_requant(const QGemmArgs& g, const QGemmRequant& rq) {
  const __m512 lo = _mm512_set1_ps(static_cast<float>(rq.lo - rq.y_zp));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(rq.hi - rq.y_zp));
  const __m512i zp = _mm512_set1_epi32(rq.y_zp);
  amx_gemm(g, [&](const int32_t(*acc)[32], int m0, int rows, int n0, int cols, const int32_t* rowsum) {
    const __mmask16 k0 = static_cast<__mmask16>(cols >= 16 ? 0xFFFFu : (1u << cols) - 1u);
    const __mmask16 k1 = static_cast<__mmask16>(cols >= 32 ? 0xFFFFu : cols > 16 ? (1u << (cols - 16)) - 1u : 0u);
    const __m512i b0 = _mm512_maskz_loadu_epi32(k0, rq.bias + n0), b1 = _mm512_maskz_loadu_epi32(k1, rq.bias + n0 + 16);
    const __m512 m0v = _mm512_maskz_loadu_ps(k0, rq.mult + n0), m1v = _mm512_maskz_loadu_ps(k1, rq.mult + n0 + 16);
    finish_block(g, acc, rows, n0, cols, rowsum, [&](int r, __m512i v0, __m512i v1, __mmask16 c0, __mmask16 c1) {
      __m512 f0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(v0, b0)), m0v);
      __m512 f1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(v1, b1)), m1v);
      f0 = _mm512_min_ps(_mm512_max_ps(f0, lo), hi);
      f1 = _mm512_min_ps(_mm512_max_ps(f1, lo), hi);
      uint8_t* out = rq.y + static_cast<int64_t>(m0 + r) * rq.ldy + n0;
      _mm512_mask_cvtepi32_storeu_epi8(out, c0, _mm512_add_epi32(_mm512_cvtps_epi32(f0), zp));
      _mm512_mask_cvtepi32_storeu_epi8(out + 16, c1, _mm512_add_epi32(_mm512_cvtps_epi32(f1), zp));
    });
  });
}

}  // namespace kvant
