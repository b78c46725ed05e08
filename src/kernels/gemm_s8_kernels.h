// The INT8 GEMM kernel table's entries (gemm_s8.h has the math): what each
// per-ISA file implements, and the packed layouts they share. Included by
// kernels/gemm_s8.cc and by the per-ISA files, so it holds declarations and
// plain structs only (no inline code: the ISA files are compiled with their
// own -m flags, CMakeLists.txt).
//
// Layouts of packed B (N padded to whole panels with zero columns):
//   pairs  (qgemm_u8s8_avx2_6x16): 16-column panels; per pair of rows (k, k+1)
//          32 bytes = columns n0..n15, each the byte pair (B[k, n], B[k+1, n]);
//          K padded to even with a zero row.
//   quads  (every vpmaddubsw / vpdpbusd / AMX kernel): 16-column panels; per
//          quad of rows 4q..4q+3, 64 bytes = columns n0..n15, each the 4 bytes
//          B[4q..4q+3, n]; K padded with zero rows to a multiple of 4 (of 64
//          for AMX, so that 16 quads make one 16 x 64-byte B tile).
// One quad row of a panel is one zmm, two ymm, or one row of an AMX B tile.
#pragma once

#include <cstdint>

#include "kernels/cpu_features.h"
#include "kernels/dynamic_quant.h"
#include "kernels/gemm_s8.h"

namespace kvant {

// Arguments of every kernel. Computes
//   C[m, n] = sum_k A[m, k] * B[k, n] + K*a_zp*b_zp[n] - a_zp*col_sums[n]
//             - b_zp[n] * sum_k A[m, k]
// in wrapping int32 (exact under gemm_s8.h's bound). b_zp: N values or
// nullptr (all zero: the row sums are skipped).
struct QGemmArgs {
  const uint8_t* a;
  int lda;
  int m, k, n;
  uint8_t a_zp;
  const int8_t* packed;
  const int32_t* col_sums;
  const int32_t* b_zp;
  int32_t* c;
  int ldc;
};

struct QGemmKernel {
  Isa isa;
  const char* name;
  bool needs_7bit;  // only for B whose raw values all lie in [-64, 64]
  int64_t (*packed_bytes)(int K, int N);
  void (*pack)(const int8_t* B, int ldb, int K, int N, int8_t* packed);
  void (*run)(const QGemmArgs& args);
  // The GEMM with a fused requantizing epilogue (gemm_s8.h); null when the
  // entry has none (args.c unused then).
  void (*run_requant)(const QGemmArgs& args, const QGemmRequant& rq);
  // The GEMM with the fused dequantizing epilogue of gemm_u8s8_dequant
  // (dq.acc and dq.rows unused); null when the entry has none.
  void (*run_dequant)(const QGemmArgs& args, const DequantRowsArgs& dq);
};

constexpr int kQGemmPanelCols = 16;

// Packs B into 16-column panels of `group` consecutive rows per column
// (group 2: pairs, 4: quads), K padded with zero rows to a multiple of
// k_align (a multiple of group).
void qgemm_pack_panels(const int8_t* B, int ldb, int K, int N, int group, int k_align, int8_t* packed);
int64_t qgemm_panels_bytes(int K, int N, int k_align);

// The column part of the corrections for the panel of columns n0..n0+cols:
// corr[i] = K*a_zp*b_zp[n] - a_zp*col_sums[n] (wrapping), bzp[i] = b_zp[n];
// zero past `cols` (and bzp zero when b_zp is nullptr). 16 values each.
void qgemm_panel_corrections(const QGemmArgs& g, int n0, int cols, int32_t* corr, int32_t* bzp);
// sum_k a[r * lda + k] for r < rows (wrapping int32).
void qgemm_row_sums(const uint8_t* a, int lda, int rows, int K, int32_t* sums);

// x86_avx2/gemm_s8_avx2.cc: pairs layout, int16-widened A, vpmaddwd.
int64_t qgemm_avx2_packed_bytes(int K, int N);
void qgemm_avx2_pack(const int8_t* B, int ldb, int K, int N, int8_t* packed);
void qgemm_u8s8_avx2(const QGemmArgs& args);
// x86_avx2/gemm_s8_7bit_avx2.cc: quads layout (k_align 4), vpmaddubsw + vpmaddwd.
int64_t qgemm_quads_packed_bytes(int K, int N);
void qgemm_quads_pack(const int8_t* B, int ldb, int K, int N, int8_t* packed);
void qgemm_u8s7_avx2(const QGemmArgs& args);
// The same with gemm_s8.h's requantization (args.c unused) or dequantization
// (dynamic_quant.h's dequant_rows_avx2, bit for bit) fused into each tile.
void qgemm_u8s7_avx2_requant(const QGemmArgs& args, const QGemmRequant& rq);
void qgemm_u8s7_avx2_dequant(const QGemmArgs& args, const DequantRowsArgs& dq);
// The segment form of gemm_u8s8_segments_requant (args.a, lda and c unused;
// no b_zp; a.seg_k a multiple of 4, a.segments * a.seg_k == args.k).
void qgemm_u8s7_avx2_segments_requant(const QGemmArgs& args, const QGemmRowSegments& a, const QGemmRequant& rq);
// x86_avxvnni/gemm_s8_avxvnni.cc: quads layout, VEX vpdpbusd on ymm.
void qgemm_u8s8_avxvnni(const QGemmArgs& args);
// x86_avx512vnni/gemm_s8_avx512vnni.cc: quads layout, vpdpbusd on zmm;
// the _strided form reads panels of panel_quads quads (the AMX layout).
void qgemm_u8s8_avx512vnni(const QGemmArgs& args);
void qgemm_u8s8_avx512vnni_strided(const QGemmArgs& args, int panel_quads);
// x86_amx/gemm_s8_amx.cc: quads layout with k_align 64, tdpbusd on 16 x 16
// tiles (rows that do not fill a tile use a tile configuration with fewer rows).
int64_t qgemm_amx_packed_bytes(int K, int N);
void qgemm_amx_pack(const int8_t* B, int ldb, int K, int N, int8_t* packed);
void qgemm_u8s8_amx(const QGemmArgs& args);
void qgemm_u8s8_amx_requant(const QGemmArgs& args, const QGemmRequant& rq);

}  // namespace kvant
