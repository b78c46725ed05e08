// INT8 GEMM: uint8 activations times int8 weights, int32 accumulators, and the
// requantize epilogue that turns them into uint8 (DESIGN.md §4).
//
//   C[m, n] = sum_k (A[m, k] - a_zp) * (B[k, n] - b_zp[n])                 (int32)
//
// A: uint8 [M, K], row-major with row stride lda (activations).
// B: int8 [K, N], row-major (weights), packed once per weight for one Isa.
// b_zp: one int8 per column of B, or none (all zero, the usual case).
//
// The kernels multiply the raw values and correct for the zero points after
// the K loop (MLAS's expansion):
//   sum_k (a - azp)(b - bzp) = sum_k a*b - azp*colsum(b) - bzp*rowsum(a) + K*azp*bzp
// colsum(b) is computed by pack_b_s8; rowsum(a) only when some b_zp != 0.
// All arithmetic is int32; it is exact (no wrap) while K <= 33025, since one
// term is at most 255 * 255 in magnitude.
//
// The kernels are the entries of one table (kernel_table.h; the list and
// their layouts are in gemm_s8_kernels.h), best first: AMX tiles, AVX-512
// VNNI, AVX-VNNI (vpdpbusd adds four exact u8*s8 products into int32, so
// 8-bit weights need no widening), the AVX2 vpmaddubsw kernel for 7-bit
// weights (every raw B[k, n] within [-64, 64], e.g. `--reduce-range`: its
// int16 pair sums are at most 2 * 255 * 64 = 32640 and cannot saturate), the
// AVX2 int16-widening kernel for any weights, and the reference. pack_b_s8
// picks the entry once, for the allowed ISA level and B's values; the packed
// B keeps it, so a GEMM never chooses again.
//
// gemm_u8s8_s32 allocates nothing (scratch is on the stack, at most ~130 KiB)
// and may run concurrently from several threads on disjoint rows of A / C
// with the same PackedB.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/dynamic_quant.h"

namespace kvant {

struct QGemmKernel;  // gemm_s8_kernels.h

// B rearranged for one kernel table entry; build it with pack_b_s8.
struct PackedB {
  const QGemmKernel* kernel = nullptr;  // the entry it was packed for
  int k = 0;
  int n = 0;
  std::vector<int8_t> data;         // layout private to the entry
  std::vector<int32_t> col_sums;    // sum_k B[k, n], N values
  std::vector<int32_t> zero_point;  // b_zp per column; empty when all zero
  bool fits_7bit = false;           // every raw B value in [-64, 64]
  const char* kernel_name() const;
  Isa isa() const;
};

// Packs B [K, N] (row stride ldb; ldb < 0 means N) for the best entry of the
// table that the ISA level `allowed` (and the CPU) permits. b_zp: N values
// or nullptr.
PackedB pack_b_s8(const int8_t* B, int K, int N, Isa allowed, const int8_t* b_zp = nullptr, int ldb = -1);
// The same for one given entry (tests and benchmarks walk the table). Throws
// kvant::Error when the CPU cannot run it or B does not meet its predicate.
PackedB pack_b_s8(const QGemmKernel& kernel, const int8_t* B, int K, int N, const int8_t* b_zp = nullptr, int ldb = -1);

// Packs B [K, N] (row stride ldb) again into `packed` for `kernel`: B that
// changes every call (the second operand of an activation x activation
// MatMul, steps_qmatmul.cc). Allocates nothing once packed's vectors have
// held this K and N. b_zp: N values or nullptr. The entry must not need
// 7-bit B unless B fits (checked: kvant::Error).
void repack_b_s8(PackedB& packed, const QGemmKernel& kernel, const int8_t* B, int K, int N, const int8_t* b_zp,
                 int ldb);

// The table, best first (the last entry is the reference); entries are named
// "qgemm_<types>_<isa>_<tile>".
std::span<const QGemmKernel> qgemm_kernels();
const char* qgemm_kernel_name(const QGemmKernel& kernel);
// The entry pack_b_s8 would take at level `allowed` for weights that do (or
// do not) all fit 7 bits.
const QGemmKernel& pick_qgemm(Isa allowed, bool fits_7bit);
Isa qgemm_kernel_isa(const QGemmKernel& kernel);

// C [M, N] (row stride ldc) = (A - a_zp) x (B - b_zp) with b's kernel.
// K = b.k, N = b.n.
void gemm_u8s8_s32(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, int32_t* C, int ldc);

// The same GEMM with the requantization of layout_u8.h's requant_rows:
//   y[m * ldy + n] = clamp(nearbyint(float(C[m, n] + bias[n]) * mult[n]) + y_zp, lo, hi)
// as uint8 (int8 when y_signed; lo/hi in the output type). Entries with a
// fused epilogue (AMX, qgemm_u8s7_avx2) requantize each block while it is in registers;
// others compute C into `acc` (M * N int32, contiguous) first.
struct QGemmRequant {
  const int32_t* bias;  // N values
  const float* mult;    // N values
  int32_t y_zp, lo, hi;
  bool y_signed;
  uint8_t* y;
  int64_t ldy;
};
void gemm_u8s8_requant(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, const QGemmRequant& rq,
                       int32_t* acc);

// A given as rows of segments, read in place (the implicit-GEMM convolution
// of qconv_gemm.h, which would otherwise copy every row out by im2col):
//   A[m, s * seg_k + k] = rows[m][offsets[s] + k]   (s < segments, k < seg_k)
// so b.k == segments * seg_k. gemm_u8s8_has_segments says whether b's entry
// has this form (qgemm_u8s7_avx2 with seg_k a multiple of 4 and no b_zp);
// gemm_u8s8_segments_requant then computes what gemm_u8s8_requant computes
// on that A, bit for bit, and throws kvant::Error when b has no such form.
struct QGemmRowSegments {
  const uint8_t* const* rows;  // m row pointers
  int m;
  const int64_t* offsets;  // `segments` byte offsets from each row pointer
  int segments;
  int seg_k;
};
bool gemm_u8s8_has_segments(const PackedB& b, int seg_k);
void gemm_u8s8_segments_requant(const QGemmRowSegments& a, uint8_t a_zp, const PackedB& b, const QGemmRequant& rq);

// The GEMM followed by dynamic_quant.h's dequantizing epilogue (the float
// end of a dynamic MatMul):
//   y[m * out_stride + n] = clamp(float(C[m, n] + ibias[n]) * mult[n] + fbias[n], lo, hi)
// from dq's ibias, mult, fbias, lo, hi, out and out_stride (its acc,
// acc_stride, rows and n are set here). Entries with a fused epilogue (the
// 7-bit AVX2 one, bit-identical to dequant_rows_avx2) dequantize each tile
// from registers; others compute C into `acc` (M * N int32, contiguous) and
// run fq.dequant over it.
void gemm_u8s8_dequant(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, const DequantRowsArgs& dq,
                       int32_t* acc, const FloatQuantKernel& fq);

// The plain reference: three loops over unpacked B, the oracle for the tests.
void gemm_u8s8_s32_reference(const uint8_t* A, int lda, const int8_t* B, int ldb, int M, int N, int K, uint8_t a_zp,
                             const int8_t* b_zp, int32_t* C, int ldc);

// Requantize int32 accumulators [M, N] (contiguous) to uint8 [M, N], as ONNX
// QLinearMatMul / QuantizeLinear do:
//   out[m, n] = clamp(nearbyint(float(acc[m, n] + bias[n]) * multiplier[n]) + y_zp, qmin, qmax)
// multiplier[n] = a_scale * w_scale[n] / y_scale (float); nearbyint rounds
// half to even. bias: N values or nullptr. qmin/qmax within [0, 255]: 0/255
// plain, y_zp/255 for a fused Relu, the quantized bounds for a fused Clip.
void requantize(const int32_t* acc, int M, int N, const int32_t* bias, const float* multiplier, int32_t y_zp, int qmin,
                int qmax, uint8_t* out);

}  // namespace kvant
