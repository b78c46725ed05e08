// FP32 matrix multiply: C = alpha * op(A) op(B) + beta * C, row-major.
//
//   op(A) is M x K (A^T when trans_a, stored K x M), op(B) is K x N (B^T when
//   trans_b, stored N x K); lda/ldb/ldc are row strides in elements and may
//   exceed the row widths. beta == 0 never reads C, so NaN/garbage there is
//   ignored (BLAS convention).
//
// Kernels (DESIGN.md §4, kernel_table.h): `sgemm_ref` is the plain oracle
// (double accumulation is left to the tests); the fast path is cache-blocked
// as in GotoBLAS around one micro-kernel from a table (sgemm_kernels.h, best
// first: sgemm_f32_avx512_12x32, sgemm_f32_avx2_6x16, sgemm_f32_generic_6x16):
//   for each K block of 256
//     for each M block of kMc rows (A read in place, or packed into 6-row
//       panels when transposed)
//       for each group of nr columns of B (16-column panels, kl x nr in L1),
//         for each group of mr rows: the mr x nr micro-kernel
// B is packed into 16-column panels ([k][16], zero-padded past N), either
// once per weight (`sgemm_pack_b`) or per call; A may be packed once instead
// (`sgemm_pack_a`, conv weights). The packed operand keeps the entry picked
// when it was packed (for CompileOptions' / KVANT_ISA's level), so a run never
// chooses again. Every entry reads the same layouts.
// The K-summation order of every output element depends only on K (blocks of
// 256, each one FMA chain from zero in k order, added to C in block order),
// never on M, N, the tile or the thread count; the FMA entries (AVX2,
// AVX-512) give identical bits.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <span>
#include <vector>

#include "kernels/cpu_features.h"

namespace kvant {

class ThreadPool;  // runtime/thread_pool.h

struct SgemmKernel;  // sgemm_kernels.h: one table entry

// The table, best first (kernel_table.h), and the first entry `allowed`, the
// CPU and the build accept (never null: the last entry is the portable one).
std::span<const SgemmKernel> sgemm_kernels();
const SgemmKernel& sgemm_pick(Isa allowed);
// sgemm_pick(selected_isa()), picked on first use (KVANT_ISA read once).
const SgemmKernel& sgemm_default_kernel();
const char* sgemm_kernel_name(const SgemmKernel& kernel);
Isa sgemm_kernel_isa(const SgemmKernel& kernel);

// Activation fused into the packed path's store: none, max(x, 0), or
// min(max(x, lo), hi).
struct SgemmActivation {
  enum class Kind { kNone, kRelu, kClip };
  Kind kind = Kind::kNone;
  float lo = 0.0f;
  float hi = 0.0f;
  static SgemmActivation none() { return {}; }
  static SgemmActivation relu() { return {Kind::kRelu, 0.0f, 0.0f}; }
  static SgemmActivation clip(float lo, float hi) { return {Kind::kClip, lo, hi}; }
};

// 64-byte aligned storage for packed panels.
template <typename T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <typename U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(size_t n) {
    const size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  template <typename U>
  bool operator==(const AlignedAllocator<U>&) const {
    return true;
  }
};

// B (K x N after the optional transpose) in the micro-kernels' layout:
// for each K block [k0, k0 + kl) (kl = 256 except the last), for each 16-column
// panel p: kl x 16 floats at data[k0 * padded_n + p * kl * 16], columns past
// N zero. `kernel` is the entry the products with it run.
struct PackedSgemmB {
  const SgemmKernel* kernel = nullptr;
  int K = 0;
  int N = 0;
  int padded_n = 0;  // N rounded up to 16
  std::vector<float, AlignedAllocator<float>> data;
  const char* kernel_name() const;
};

constexpr int kSgemmKc = 256;  // K block
constexpr int kSgemmNr = 16;   // B panel width
constexpr int kSgemmMr = 6;    // A panel height

// Plain reference: float accumulation, k ascending.
void sgemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
               int ldb, float beta, float* C, int ldc);

// The blocked GEMM with the default entry, or with `kernel`.
void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);
void sgemm(const SgemmKernel& kernel, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
           int lda, const float* B, int ldb, float beta, float* C, int ldc);

// Packs B (K x N, or N x K stored when trans_b) once, e.g. a layer's weight,
// for the default entry or for `kernel` (throws kUnsupported when this CPU or
// build cannot run it).
PackedSgemmB sgemm_pack_b(const float* B, int K, int N, bool trans_b, int ldb = 0);
PackedSgemmB sgemm_pack_b(const SgemmKernel& kernel, const float* B, int K, int N, bool trans_b, int ldb = 0);

// C[M x N] = act(A[M x K] B + bias), bias one float per column (nullable),
// with B's entry. A is row-major (row stride lda) and read in place.
void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C, int ldc,
                  const float* bias, SgemmActivation act);

// Threaded: splits row groups of M (the entry's tile height) across `pool`
// (or 16-column panels of N when M has too few), each part running the
// single-thread driver above. Every
// C element is computed the same way whatever part holds it, so the result is
// bit-identical for any pool size (and to the overload without a pool).
// pool may be null. With residual (nullable, laid out as C with the same
// ldc): C = act(A B + bias + residual), the residual added after the bias and
// before act (a residual Add fused into an NHWC conv, sconv_nhwc.h;
// bit-identical to adding it after the call).
void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C, int ldc,
                  const float* bias, SgemmActivation act, ThreadPool* pool, const float* residual = nullptr);

// A (M x K row-major, e.g. a conv weight [c_out, c_in kh kw]) packed once as
// the micro-kernels' left operand: for each K block [k0, k0 + kl) (kl = 256
// except the last), 6-row panels of kl x 6 floats, element (r, k) of panel p at
// data[k0 * padded_m + p * 6 * kl + k * 6 + r]; rows past M are zero.
struct PackedSgemmA {
  const SgemmKernel* kernel = nullptr;
  int M = 0;
  int K = 0;
  int padded_m = 0;  // M rounded up to 6
  std::vector<float, AlignedAllocator<float>> data;
  const char* kernel_name() const;
};
PackedSgemmA sgemm_pack_a(const float* A, int M, int K, int lda = 0);
PackedSgemmA sgemm_pack_a(const SgemmKernel& kernel, const float* A, int M, int K, int lda = 0);

// The building block for kernels that pack their own right operand (sconv's
// im2col): one K block k0 (a multiple of 256) of C rows [m0, m1) (m0 a
// multiple of 6), columns [0, nc):
//   k0 == 0: C = A[:, blk] B_tile, else C += A[:, blk] B_tile;
//   last block (k0 + 256 >= K): then C = act(C + row_bias[row]).
// b_tile holds ceil(nc / 16) panels of kl x 16 floats (panel j at
// b_tile + j * 16 * kl, element (k, c) at k * 16 + c), kl = min(256, K - k0);
// columns past nc are read but not stored. Calling it for k0 = 0, 256, ...
// gives every C element the same K-summation order as sgemm_packed.
// With b_rows (kl offsets, for entries with b_row_table; kInvalidArgument
// otherwise), B is read in place instead: element (k, c) at
// b_tile + b_rows[k] + c (the implicit-GEMM conv, sconv.h), the same FMAs.
// Rows go in chunks of 72; an entry with a narrow kernel (sgemm_kernels.h)
// takes the last 1-4 columns of each chunk (same bits as the full tile).
// With residual (laid out as C, same ldc): the last block gives
// C = act(C + row_bias[row] + residual), the residual added after the bias
// and before act (a conv's residual Add fused, bit-identical to adding it
// after the call).
void sgemm_packed_a_block(const PackedSgemmA& A, int m0, int m1, int k0, const float* b_tile, int nc, float* C, int ldc,
                          const float* row_bias, SgemmActivation act, const int64_t* b_rows = nullptr,
                          const float* residual = nullptr);

// C[M x N] = act(A B + row_bias[i]), A prepacked, B row-major K x N (ldb):
// packs B per call (thread-local buffer) and runs sgemm_packed_a_block.
void sgemm_packed_a(int M, int N, int K, const PackedSgemmA& A, const float* B, int ldb, float* C, int ldc,
                    const float* row_bias, SgemmActivation act);

}  // namespace kvant
