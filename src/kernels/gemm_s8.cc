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

// The reference on a kRef PackedB (b_zp as int32, nullptr when all zero).
void reference_packed(const uint8_t* A, int lda, int M, uint8_t a_zp, const PackedB& b, int32_t* C, int ldc) {
  const int N = b.n;
  const int K = b.k;
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < N; ++n) {
      const int32_t bz = b.zero_point.empty() ? 0 : b.zero_point[static_cast<size_t>(n)];
      int32_t sum = 0;
      for (int k = 0; k < K; ++k) {
        const int32_t a = static_cast<int32_t>(A[static_cast<int64_t>(m) * lda + k]) - a_zp;
        sum += a * (static_cast<int32_t>(b.data[static_cast<size_t>(k) * static_cast<size_t>(N) + n]) - bz);
      }
      C[static_cast<int64_t>(m) * ldc + n] = sum;
    }
  }
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
    case Isa::kAvx2: {
      bool fits = true;
      for (int k = 0; k < K && fits; ++k) {
        const int8_t* row = B + static_cast<int64_t>(k) * ldb;
        fits = std::all_of(row, row + N, [](int8_t v) { return v >= -64 && v <= 64; });
      }
      packed.fits_7bit = fits;
      if (fits) {
        packed.data.resize(static_cast<size_t>(avx2::packed_b_size_7bit(K, N)));
        avx2::pack_b_7bit(B, ldb, K, N, packed.data.data());
      } else {
        packed.data.resize(static_cast<size_t>(avx2::packed_b_size(K, N)));
        avx2::pack_b(B, ldb, K, N, packed.data.data());
      }
      break;
    }
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
    reference_packed(A, lda, M, a_zp, b, C, ldc);
    return;
  }
  switch (isa) {
#if defined(__x86_64__)
    case Isa::kAvx2: {
      const avx2::GemmArgs args{
          A, lda, M, K, N, a_zp, b.data.data(), b.col_sums.data(), b.zero_point.empty() ? nullptr : b.zero_point.data(),
          C, ldc};
      if (b.fits_7bit) {
        avx2::gemm_7bit(args);
      } else {
        avx2::gemm(args);
      }
      return;
    }
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
