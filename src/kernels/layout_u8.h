// Byte-plane helpers of the INT8 convolution's GEMM path (qconv.h): a byte
// transpose between NCHW planes and NHWC rows, and the requantization of
// int32 accumulator rows. Each is a small kernel table (kernel_table.h),
// picked once by the caller; the reference entries define the results.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

// dst[c * dst_stride + r] = src[r * src_stride + c] ^ flip, r < rows, c < cols.
// flip 0x80 turns int8 bytes into uint8 ones offset by 128 (and back).
struct TransposeU8Kernel {
  Isa isa;
  const char* name;
  void (*run)(const uint8_t* src, int64_t src_stride, int rows, int cols, uint8_t* dst, int64_t dst_stride,
              uint8_t flip);
};
std::span<const TransposeU8Kernel> transpose_u8_kernels();
const TransposeU8Kernel& pick_transpose_u8(Isa allowed);

// Requantization of accumulator rows, as QLinearConv / QuantizeLinear do:
//   out[r * out_stride + j] = clamp(nearbyint(float(acc[r * acc_stride + j] + bias[j]) * mult[j]) + y_zp, lo, hi)
// stored as uint8, or as int8 when y_signed (lo/hi in the output type's
// range). The int32 sum wraps like the accumulator (exact under the GEMM's
// bound); rounding is half to even.
struct RequantRowsArgs {
  const int32_t* acc;
  int64_t acc_stride;
  int rows, n;
  const int32_t* bias;  // n values
  const float* mult;    // n values
  int32_t y_zp;
  int32_t lo, hi;
  bool y_signed;
  uint8_t* out;
  int64_t out_stride;
};
struct RequantRowsKernel {
  Isa isa;
  const char* name;
  void (*run)(const RequantRowsArgs& args);
};
std::span<const RequantRowsKernel> requant_rows_kernels();
const RequantRowsKernel& pick_requant_rows(Isa allowed);

// Per-ISA entries (x86_avx2/layout_u8_avx2.cc, x86_avx512/layout_u8_avx512.cc).
void transpose_u8_avx2(const uint8_t* src, int64_t src_stride, int rows, int cols, uint8_t* dst, int64_t dst_stride,
                       uint8_t flip);
void requant_rows_avx2(const RequantRowsArgs& args);
void requant_rows_avx512(const RequantRowsArgs& args);

}  // namespace kvant
