// The FP32 GEMM micro-kernel table's entries (sgemm.h has the math and the
// blocking): what each per-ISA file implements. Included by kernels/sgemm.cc
// and by the per-ISA files, so it holds declarations and plain structs only
// (no inline code: the ISA files are compiled with their own -m flags,
// CMakeLists.txt).
//
// Every entry reads the same layouts, so a packed weight serves any entry:
//   A  packed: 6-row panels of one K block, element (r, k) of panel p at
//         a + p * a_panel + k * 6 + r % 6 (sgemm_pack_a, pack_a);
//      direct: row-major, element (r, k) at a + r * a_ld + k (op(A) not
//         transposed: A is read in place, no packing pass);
//   B  16-column panels, element (k, j) at b + (j / 16) * b_panel +
//      k * b_stride + j % 16 (packed: b_stride 16, b_panel 16 * kl; B read in
//      place: b_stride ldb, b_panel 16);
//      row table (entries with b_row_table only): element (k, j) at
//         b + (j / 16) * b_panel + b_rows[k] + j % 16 (the implicit-GEMM
//         convolution, sconv.h: row k is a shifted window of the zero-padded
//         input, so rows are not a constant stride apart).
// A micro-kernel computes one tile of at most mr x nr (the entry's tile)
// over one K block, each element as one chain of fused multiply-adds from
// zero in k order (the generic entry: multiply then add), then the epilogue
//   v = alpha * acc;  if load_c: v = fma(beta, C, v);  v += bias[j];
//   v += row_bias[r];  v += residual[r, j];  v = act(v)
// (max, then min for clip). Element (r, j)'s result therefore does not depend
// on the tile, tile size or position that holds it, and every FMA entry
// (AVX2, AVX-512) gives the same bits.
#pragma once

#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/sgemm.h"

namespace kvant {

struct SgemmEpilogue {
  float alpha = 1.0f;
  float beta = 0.0f;  // read only when load_c
  bool load_c = false;
  const float* bias = nullptr;      // the tile's first column; nr values
  const float* row_bias = nullptr;  // the tile's first row; mr values (one per row)
  // Optional: an operand added last, before act (a residual Add fused into a
  // conv, sconv.h): element (r, j) at residual[r * residual_ld + j].
  const float* residual = nullptr;
  int64_t residual_ld = 0;
  SgemmActivation::Kind act = SgemmActivation::Kind::kNone;
  float lo = 0.0f;  // kRelu: 0
  float hi = 0.0f;
};

struct SgemmTile {
  int mr = 0, nr = 0, kl = 0;  // rows, columns (<= the entry's tile), K block length
  const float* a = nullptr;
  int64_t a_ld = 0;     // > 0: A direct with this row stride; 0: A packed
  int64_t a_panel = 0;  // packed: floats from one 6-row panel to the next
  const float* b = nullptr;
  int64_t b_stride = 0;             // floats from row k to k + 1 of a panel
  int64_t b_panel = 0;              // floats from one 16-column panel to the next
  const int64_t* b_rows = nullptr;  // set: row k of B at b + b_rows[k] (b_stride unused)
  float* c = nullptr;
  int64_t ldc = 0;
  // Optional: 64-byte lines to bring into L2 while the tile runs (the part of
  // the next column group of packed B that this row group fetches, so that
  // weights streaming from memory overlap the FMAs); one per k step, from the
  // first. Ignored by entries without prefetch.
  const float* prefetch = nullptr;
  int prefetch_lines = 0;
};

// The narrow-tail contract: a tile of at most kSgemmNarrowCols columns and
// any number of rows (t.mr: every row of packed A from t.a, 6-row panels
// t.a_panel apart; A packed only), vectorised over each panel's 6 rows
// instead of over columns, so that the last 1-4 columns of a plane (7² = 3 x
// 16 + 1, 14² tiles) do not cost a half-width tile per 6 rows. Each element
// is the same FMA chain from zero in k order and the same epilogue as in the
// entry's tile, so its bits do not change.
constexpr int kSgemmNarrowCols = 4;

struct SgemmKernel {
  Isa isa;
  const char* name;  // "sgemm_f32_<isa>_<mr>x<nr>"
  int mr;            // tile rows, a multiple of 6
  int nr;            // tile columns, a multiple of 16
  void (*tile)(const SgemmTile& tile, const SgemmEpilogue& ep);
  bool b_row_table;  // reads B through SgemmTile::b_rows
  // Optional (nullptr: tails go through `tile`): the narrow-tail kernel.
  void (*narrow)(const SgemmTile& tile, const SgemmEpilogue& ep) = nullptr;
};

// kernels/sgemm.cc: the portable entry (6 x 16).
void sgemm_tile_generic(const SgemmTile& tile, const SgemmEpilogue& ep);
// x86_avx2/sgemm_avx2.cc: 6 x 16, 12 ymm accumulators.
void sgemm_tile_avx2(const SgemmTile& tile, const SgemmEpilogue& ep);
// x86_avx2/sgemm_avx2.cc: the narrow tail (up to 4 columns, any rows).
void sgemm_narrow_avx2(const SgemmTile& tile, const SgemmEpilogue& ep);
// x86_avx512/sgemm_avx512.cc: 12 x 32, 24 zmm accumulators, masked tails.
void sgemm_tile_avx512(const SgemmTile& tile, const SgemmEpilogue& ep);

}  // namespace kvant
