// AVX2 INT8 GEMM kernels (declared for kernels/gemm_s8.cc; compiled with
// function-level target attributes so the rest of kvant runs without AVX2).
//
// Two kernels, both exact (bit-identical to gemm_u8s8_s32_reference):
//
// 1. Any int8 B ("wide"): vpmaddubsw would add two u8*s8 products into a
//    saturating int16 (255*-128*2 = -65280 does not fit), so both operands
//    are widened to int16 (vpmovzxbw / vpmovsxbw) and multiplied with
//    vpmaddwd, whose int16 pair sums land in int32 exactly.
//    Packed layout: panels of 16 columns (N padded with zero columns), K
//    padded to even with a zero row. Within a panel, for each pair of rows
//    (k, k+1): 32 bytes = columns n0..n15, each as the byte pair
//    (B[k, n], B[k+1, n]).
//
// 2. Raw B within [-64, 64] ("7-bit", e.g. --reduce-range weights):
//    vpmaddubsw's pair sum is at most 2 * 255 * 64 = 32640 in magnitude, so
//    it cannot saturate; vpmaddwd with ones then adds pairs of those into
//    int32 (4 k values per int32 lane, 32 MACs per 2 instructions, twice the
//    wide kernel's rate). A is read in place (4 bytes broadcast per row).
//    Packed layout: panels of 16 columns (N padded with zero columns), K
//    padded to a multiple of 4 with zero rows. Within a panel, for each quad
//    of rows (4q..4q+3): 64 bytes = columns n0..n15, each as the 4 bytes
//    B[4q..4q+3, n].
//
// Neither kernel allocates: scratch lives on the stack (at most ~130 KiB for
// the wide kernel), so concurrent calls on disjoint rows are thread-safe.
#pragma once

#include <cstdint>

namespace kvant::avx2 {

constexpr int kPanelCols = 16;

// Arguments shared by both kernels. Computes
//   C[m, n] = sum_k A[m, k] * B[k, n] + K*a_zp*b_zp[n] - a_zp*col_sums[n]
//             - b_zp[n] * sum_k A[m, k]
// in wrapping int32. b_zp: N values or nullptr (all zero, rowsum skipped).
struct GemmArgs {
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

// Wide kernel: bytes of packed B, packing, and the GEMM.
int64_t packed_b_size(int K, int N);
void pack_b(const int8_t* B, int ldb, int K, int N, int8_t* packed);
void gemm(const GemmArgs& args);

// 7-bit kernel (every raw B value within [-64, 64]): same three.
int64_t packed_b_size_7bit(int K, int N);
void pack_b_7bit(const int8_t* B, int ldb, int K, int N, int8_t* packed);
void gemm_7bit(const GemmArgs& args);

// Both layouts: 16-column panels (N padded with zero columns), K padded to a
// multiple of `group` with zero rows; within a panel, for each group of
// `group` consecutive k, the columns in order, each as its `group` bytes
// B[k..k+group-1, n] (group 2: the wide kernel's pairs, 4: the 7-bit quads).
inline void pack_b_groups(const int8_t* B, int ldb, int K, int N, int group, int8_t* packed) {
  const int groups = (K + group - 1) / group;
  const int panels = (N + kPanelCols - 1) / kPanelCols;
  const int64_t group_bytes = static_cast<int64_t>(group) * kPanelCols;
  for (int j = 0; j < panels; ++j) {
    int8_t* panel = packed + static_cast<int64_t>(j) * groups * group_bytes;
    for (int q = 0; q < groups; ++q) {
      for (int col = 0; col < kPanelCols; ++col) {
        const int n = j * kPanelCols + col;
        for (int i = 0; i < group; ++i) {
          const int k = group * q + i;
          const bool inside = n < N && k < K;
          panel[q * group_bytes + group * col + i] = inside ? B[static_cast<int64_t>(k) * ldb + n] : int8_t{0};
        }
      }
    }
  }
}

// The column part of the corrections for the panel of columns n0..n0+cols:
// corr[i] = K*a_zp*b_zp[n] - a_zp*col_sums[n] (wrapping), bzp[i] = b_zp[n];
// zero past `cols` (and bzp zero when b_zp is nullptr).
inline void panel_corrections(const GemmArgs& g, int n0, int cols, int32_t* corr, int32_t* bzp) {
  for (int i = 0; i < kPanelCols; ++i) {
    const bool inside = i < cols;
    const uint32_t z = inside && g.b_zp != nullptr ? static_cast<uint32_t>(g.b_zp[n0 + i]) : 0u;
    const uint32_t s = inside ? static_cast<uint32_t>(g.col_sums[n0 + i]) : 0u;
    const uint32_t azp = g.a_zp;
    corr[i] = inside ? static_cast<int32_t>(static_cast<uint32_t>(g.k) * azp * z - azp * s) : 0;
    bzp[i] = static_cast<int32_t>(z);
  }
}

}  // namespace kvant::avx2
