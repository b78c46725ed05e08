// FP32 matrix multiply: C = alpha * op(A) op(B) + beta * C, row-major.
//
//   op(A) is M x K (A^T when trans_a, stored K x M), op(B) is K x N (B^T when
//   trans_b, stored N x K); lda/ldb/ldc are row strides in elements and may
//   exceed the row widths. beta == 0 never reads C, so NaN/garbage there is
//   ignored (BLAS convention).
//
// Paths (DESIGN.md §4): `sgemm_ref` is the plain oracle (double accumulation
// is left to the tests); the fast path is cache-blocked as in GotoBLAS:
//   for each K block of 256 (B panel 256 x 16 = 16 KiB stays in L1)
//     for each M block of kMc rows: pack A into 6-row panels ([k][6], L2)
//       for each 16-column B panel, for each 6-row A panel: 6x16 micro-kernel
// B is packed into 16-column panels ([k][16], zero-padded past N), either
// once per weight (`sgemm_pack_b`) or per call. The micro-kernel is AVX2+FMA
// (compiled per function with target attributes, so the library still runs on
// CPUs without AVX2) or a portable C++ one with the same packing.
// The K-summation order of every output element depends only on K (blocks of
// 256, then k ascending), never on M, N or tile position.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <new>
#include <vector>

namespace kvant {

class ThreadPool;  // runtime/thread_pool.h

// Which implementation runs. kGeneric and kAvx2 share the packing and the
// blocking; kRef is the triple loop.
enum class SgemmPath { kRef, kGeneric, kAvx2 };

// kAvx2 when the CPU has AVX2 and FMA and KVANT_ISA is not "ref"/"generic";
// else kRef (KVANT_ISA=ref or no AVX2) or kGeneric (KVANT_ISA=generic).
// Probed once.
SgemmPath sgemm_default_path();
bool sgemm_path_supported(SgemmPath path);
const char* sgemm_path_name(SgemmPath path);

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

// B (K x N after the optional transpose) in the micro-kernel's layout:
// for each K block [k0, k0 + kl) (kl = 256 except the last), for each 16-column
// panel p: kl x 16 floats at data[k0 * padded_n + p * kl * 16], columns past
// N zero.
struct PackedSgemmB {
  int K = 0;
  int N = 0;
  int padded_n = 0;  // N rounded up to 16
  std::vector<float, AlignedAllocator<float>> data;
};

constexpr int kSgemmKc = 256;  // K block
constexpr int kSgemmNr = 16;   // B panel width (two __m256)
constexpr int kSgemmMr = 6;    // A panel height

// Plain reference: float accumulation, k ascending.
void sgemm_ref(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
               int ldb, float beta, float* C, int ldc);

void sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
           int ldb, float beta, float* C, int ldc);
void sgemm(SgemmPath path, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc);

// Packs B (K x N, or N x K stored when trans_b) once, e.g. a layer's weight.
PackedSgemmB sgemm_pack_b(const float* B, int K, int N, bool trans_b, int ldb = 0);

// C[M x N] = act(A[M x K] B + bias), bias one float per column (nullable).
// Runs the generic kernel where the default path is kRef.
void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C, int ldc,
                  const float* bias, SgemmActivation act);
void sgemm_packed(SgemmPath path, int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C,
                  int ldc, const float* bias, SgemmActivation act);

// Threaded: splits 6-row panels of M across `pool` (or 16-column panels of N
// when M has too few), each part running the single-thread driver above. Every
// C element is computed the same way whatever part holds it, so the result is
// bit-identical for any pool size (and to the overloads without a pool).
// pool may be null.
void sgemm_packed(int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C, int ldc,
                  const float* bias, SgemmActivation act, ThreadPool* pool);
void sgemm_packed(SgemmPath path, int M, int N, int K, const float* A, int lda, const PackedSgemmB& B, float* C,
                  int ldc, const float* bias, SgemmActivation act, ThreadPool* pool);

// A (M x K row-major, e.g. a conv weight [c_out, c_in kh kw]) packed once as
// the micro-kernel's left operand: for each K block [k0, k0 + kl) (kl = 256
// except the last), 6-row panels of kl x 6 floats, element (r, k) of panel p at
// data[k0 * padded_m + p * 6 * kl + k * 6 + r]; rows past M are zero.
struct PackedSgemmA {
  int M = 0;
  int K = 0;
  int padded_m = 0;  // M rounded up to 6
  std::vector<float, AlignedAllocator<float>> data;
};
PackedSgemmA sgemm_pack_a(const float* A, int M, int K, int lda = 0);

// The building block for kernels that pack their own right operand (sconv's
// im2col): one K block k0 (a multiple of 256) of C rows [m0, m1) (m0 a
// multiple of 6), columns [0, nc):
//   k0 == 0: C = A[:, blk] B_tile, else C += A[:, blk] B_tile;
//   last block (k0 + 256 >= K): then C = act(C + row_bias[row]).
// b_tile holds ceil(nc / 16) panels of kl x 16 floats (panel j at
// b_tile + j * 16 * kl, element (k, c) at k * 16 + c), kl = min(256, K - k0);
// columns past nc are read but not stored. Calling it for k0 = 0, 256, ...
// gives every C element the same K-summation order as sgemm_packed.
void sgemm_packed_a_block(SgemmPath path, const PackedSgemmA& A, int m0, int m1, int k0, const float* b_tile, int nc,
                          float* C, int ldc, const float* row_bias, SgemmActivation act);

// C[M x N] = act(A B + row_bias[i]), A prepacked, B row-major K x N (ldb):
// packs B per call (thread-local buffer) and runs sgemm_packed_a_block.
void sgemm_packed_a(SgemmPath path, int M, int N, int K, const PackedSgemmA& A, const float* B, int ldb, float* C,
                    int ldc, const float* row_bias, SgemmActivation act);

}  // namespace kvant
