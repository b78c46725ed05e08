// INT8 GEMM: the reference kernel, packing, dispatch to the ISA kernels, and
// the requantize epilogue. The math is in gemm_s8.h.
#include "kernels/gemm_s8.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kvant/status.h"

#if defined(__x86_64__)
#include "kernels/x86_avx2/gemm_s8_avx2.h"
#endif

namespace kvant {

namespace {

[[noreturn]] void fail(ErrorCode code, const std::string& message) { throw Error(code, "gemm_u8s8_s32: " + message); }

// Wrapping int32 arithmetic (defined behaviour when a huge K overflows).
int32_t wrap_add(int32_t x, int32_t y) {
  return static_cast<int32_t>(static_cast<uint32_t>(x) + static_cast<uint32_t>(y));
}
int32_t wrap_mul(int32_t x, int32_t y) {
  return static_cast<int32_t>(static_cast<uint32_t>(x) * static_cast<uint32_t>(y));
}

}  // namespace

void gemm_u8s8_s32_reference(const uint8_t* A, int lda, const int8_t* B, int ldb, int M, int N, int K, uint8_t a_zp,
                             const int8_t* b_zp, int32_t* C, int ldc) {
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      const int32_t bz = b_zp != nullptr ? b_zp[n] : 0;
      int32_t sum = 0;
      for (int k = 0; k < K; ++k) {
        const int32_t a = static_cast<int32_t>(A[static_cast<int64_t>(m) * lda + k]) - a_zp;
        const int32_t b = static_cast<int32_t>(B[static_cast<int64_t>(k) * ldb + n]) - bz;
        sum += a * b;
      }
      C[static_cast<int64_t>(m) * ldc + n] = sum;
    }
  }
}

PackedB pack_b_s8(const int8_t* B, int K, int N, Isa isa, const int8_t* b_zp, int ldb) {
  if (K < 0 || N < 0) fail(ErrorCode::kInvalidArgument, "negative K or N");
  if (ldb < 0) ldb = N;
  if (ldb < N) fail(ErrorCode::kInvalidArgument, "ldb smaller than N");
  if (!isa_implemented(isa)) fail(ErrorCode::kUnsupported, std::string("no kernels for ") + isa_name(isa));
  PackedB packed;
  packed.isa = isa;
  packed.k = K;
  packed.n = N;
  packed.col_sums.assign(static_cast<size_t>(N), 0);
  for (int k = 0; k < K; ++k) {
    for (int n = 0; n < N; ++n) packed.col_sums[static_cast<size_t>(n)] += B[static_cast<int64_t>(k) * ldb + n];
  }
  if (b_zp != nullptr && std::any_of(b_zp, b_zp + N, [](int8_t z) { return z != 0; })) {
    packed.zero_point.assign(b_zp, b_zp + N);
  }
  switch (isa) {
    case Isa::kRef:
      packed.data.resize(static_cast<size_t>(K) * static_cast<size_t>(N));
      for (int k = 0; k < K; ++k) {
        std::copy(B + static_cast<int64_t>(k) * ldb, B + static_cast<int64_t>(k) * ldb + N,
                  packed.data.begin() + static_cast<int64_t>(k) * N);
      }
      break;
#if defined(__x86_64__)
    case Isa::kAvx2:
      packed.data.resize(static_cast<size_t>(avx2::packed_b_size(K, N)));
      avx2::pack_b(B, ldb, K, N, packed.data.data());
      break;
#endif
    default: fail(ErrorCode::kUnsupported, std::string("no kernels for ") + isa_name(isa));
  }
  return packed;
}

void gemm_u8s8_s32(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, int32_t* C, int ldc, Isa isa) {
  if (b.isa != isa) {
    fail(ErrorCode::kInvalidArgument,
         std::string("B was packed for ") + isa_name(b.isa) + ", called with " + isa_name(isa));
  }
  const int K = b.k;
  const int N = b.n;
  if (M < 0 || lda < K || ldc < N) fail(ErrorCode::kInvalidArgument, "negative M, or lda < K, or ldc < N");
  if (M == 0 || N == 0) return;
  if (isa == Isa::kRef) {
    std::vector<int8_t> zp(b.zero_point.begin(), b.zero_point.end());
    gemm_u8s8_s32_reference(A, lda, b.data.data(), N, M, N, K, a_zp, zp.empty() ? nullptr : zp.data(), C, ldc);
    return;
  }
  // Column part of the zero-point correction: K*azp*bzp[n] - azp*colsum[n].
  // Scratch kept per thread so steady-state calls allocate nothing (DESIGN.md §3).
  thread_local std::vector<int32_t> col_corr;
  col_corr.resize(static_cast<size_t>(N));
  for (int n = 0; n < N; ++n) {
    const int32_t bz = b.zero_point.empty() ? 0 : b.zero_point[static_cast<size_t>(n)];
    col_corr[static_cast<size_t>(n)] = wrap_add(
        wrap_mul(wrap_mul(K, a_zp), bz), wrap_mul(-static_cast<int32_t>(a_zp), b.col_sums[static_cast<size_t>(n)]));
  }
  const int32_t* b_zp = b.zero_point.empty() ? nullptr : b.zero_point.data();
  switch (isa) {
#if defined(__x86_64__)
    case Isa::kAvx2: avx2::gemm(A, lda, M, K, N, b.data.data(), col_corr.data(), b_zp, C, ldc); return;
#endif
    default: fail(ErrorCode::kUnsupported, std::string("no kernels for ") + isa_name(isa));
  }
}

void requantize(const int32_t* acc, int M, int N, const int32_t* bias, const float* multiplier, int32_t y_zp, int qmin,
                int qmax, uint8_t* out) {
  const float lo = static_cast<float>(std::max(qmin, 0));
  const float hi = static_cast<float>(std::min(qmax, 255));
  const float zp = static_cast<float>(y_zp);
  for (int m = 0; m < M; ++m) {
    const int32_t* row = acc + static_cast<int64_t>(m) * N;
    uint8_t* out_row = out + static_cast<int64_t>(m) * N;
    for (int n = 0; n < N; ++n) {
      const int64_t sum = static_cast<int64_t>(row[n]) + (bias != nullptr ? bias[n] : 0);
      // Round first, then add the zero point, as QuantizeLinear does; the
      // clamp happens in float, so huge values cannot overflow an int.
      const float y = std::nearbyint(static_cast<float>(sum) * multiplier[n]) + zp;
      out_row[n] = static_cast<uint8_t>(std::clamp(y, lo, hi));
    }
  }
}

}  // namespace kvant
