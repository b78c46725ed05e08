// AVX2 INT8 GEMM kernels (declared for kernels/gemm_s8.cc; compiled with
// function-level target attributes so the rest of kvant runs without AVX2).
//
// Exact scheme: vpmaddubsw would add two u8*s8 products into a saturating
// int16 (255*-128*2 = -65280 does not fit), so both operands are widened to
// int16 instead (vpmovzxbw / vpmovsxbw) and multiplied with vpmaddwd, whose
// int16*int16 pair sums land in int32 exactly.
//
// Packed B layout: panels of 16 columns (N padded with zero columns), K
// padded to even with a zero row. Within a panel, for each pair of rows
// (k, k+1): 32 bytes = columns n0..n15, each as the byte pair
// (B[k, n], B[k+1, n]). vpmovsxbw of 16 of those bytes gives 8 int16 pairs
// that vpmaddwd multiplies with a broadcast (A[m, k], A[m, k+1]) pair.
#pragma once

#include <cstdint>

namespace kvant::avx2 {

constexpr int kPanelCols = 16;

// Bytes of packed B for K x N.
int64_t packed_b_size(int K, int N);

// Fills `packed` (packed_b_size bytes) from B [K, N], row stride ldb.
void pack_b(const int8_t* B, int ldb, int K, int N, int8_t* packed);

// C = A x B with the zero-point corrections:
//   C[m, n] = dot + col_corr[n] - b_zp[n] * rowsum(A[m, :])
// col_corr: N values (= K*a_zp*b_zp[n] - a_zp*colsum[n]); b_zp: N values or
// nullptr (all zero, rowsum skipped).
void gemm(const uint8_t* A, int lda, int M, int K, int N, const int8_t* packed, const int32_t* col_corr,
          const int32_t* b_zp, int32_t* C, int ldc);

}  // namespace kvant::avx2
