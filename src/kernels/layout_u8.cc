// The reference entries and the tables of layout_u8.h.
#include "kernels/layout_u8.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernel_table.h"

namespace kvant {

namespace {

void transpose_u8_ref(const uint8_t* src, int64_t src_stride, int rows, int cols, uint8_t* dst, int64_t dst_stride,
                      uint8_t flip) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) dst[c * dst_stride + r] = static_cast<uint8_t>(src[r * src_stride + c] ^ flip);
  }
}

void requant_rows_ref(const RequantRowsArgs& a) {
  for (int r = 0; r < a.rows; ++r) {
    const int32_t* acc = a.acc + r * a.acc_stride;
    uint8_t* out = a.out + r * a.out_stride;
    for (int j = 0; j < a.n; ++j) {
      const int32_t sum = static_cast<int32_t>(static_cast<uint32_t>(acc[j]) + static_cast<uint32_t>(a.bias[j]));
      const float q = std::nearbyint(static_cast<float>(sum) * a.mult[j]) + static_cast<float>(a.y_zp);
      const int32_t v = static_cast<int32_t>(std::clamp(q, static_cast<float>(a.lo), static_cast<float>(a.hi)));
      out[j] = static_cast<uint8_t>(v);  // int8 results as their two's-complement byte
    }
  }
}

constexpr TransposeU8Kernel kTransposeKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx2, "transpose_u8_avx2_16x16", transpose_u8_avx2},
#endif
    {Isa::kRef, "transpose_u8_ref", transpose_u8_ref},
};

constexpr RequantRowsKernel kRequantKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, "requant_rows_avx512", requant_rows_avx512},
    {Isa::kAvx2, "requant_rows_avx2", requant_rows_avx2},
#endif
    {Isa::kRef, "requant_rows_ref", requant_rows_ref},
};

auto any = [](const auto&) { return true; };

}  // namespace

std::span<const TransposeU8Kernel> transpose_u8_kernels() { return kTransposeKernels; }
const TransposeU8Kernel& pick_transpose_u8(Isa allowed) { return *pick_kernel(transpose_u8_kernels(), allowed, any); }

std::span<const RequantRowsKernel> requant_rows_kernels() { return kRequantKernels; }
const RequantRowsKernel& pick_requant_rows(Isa allowed) { return *pick_kernel(requant_rows_kernels(), allowed, any); }

}  // namespace kvant
