// The reference entry and the table of dynamic_quant.h.
#include "kernels/dynamic_quant.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernel_table.h"

namespace kvant {

namespace {

bool range_ref(const float* x, int64_t n, float* lo, float* hi) {
  float l = 0.0f, h = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return false;
    l = std::min(l, x[i]);
    h = std::max(h, x[i]);
  }
  *lo = l;
  *hi = h;
  return true;
}

void quantize_ref(const float* x, int64_t n, float scale, int32_t zp, uint8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = std::nearbyint(static_cast<double>(x[i] / scale)) + zp;
    q[i] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
  }
}

void dequant_ref(const DequantRowsArgs& a) {
  for (int r = 0; r < a.rows; ++r) {
    const int32_t* acc = a.acc + r * a.acc_stride;
    float* out = a.out + r * a.out_stride;
    for (int j = 0; j < a.n; ++j) {
      const int32_t c = a.ibias != nullptr
                            ? static_cast<int32_t>(static_cast<uint32_t>(acc[j]) + static_cast<uint32_t>(a.ibias[j]))
                            : acc[j];
      float v = static_cast<float>(c) * a.mult[j];
      if (a.fbias != nullptr) v += a.fbias[j];
      out[j] = std::min(std::max(v, a.lo), a.hi);
    }
  }
}

void dequant_t_ref(const DequantRowsArgs& a, float* range) {
  for (int r = 0; r < a.rows; ++r) {
    const int32_t* acc = a.acc + r * a.acc_stride;
    for (int j = 0; j < a.n; ++j) {
      const int32_t c = a.ibias != nullptr
                            ? static_cast<int32_t>(static_cast<uint32_t>(acc[j]) + static_cast<uint32_t>(a.ibias[j]))
                            : acc[j];
      float v = static_cast<float>(c) * a.mult[j];
      if (a.fbias != nullptr) v += a.fbias[j];
      v = std::min(std::max(v, a.lo), a.hi);
      a.out[j * a.out_stride + r] = v;
      if (range == nullptr) continue;
      if (std::isnan(v)) range[2] = 1.0f;
      range[0] = std::min(range[0], v);
      range[1] = std::max(range[1], v);
    }
  }
}

void quantize_centered_ref(const float* x, int64_t n, float scale, int32_t zp, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = std::nearbyint(static_cast<double>(x[i] / scale)) + zp;
    out[i] = static_cast<float>(std::clamp(v, 0.0, 255.0) - zp);
  }
}

constexpr FloatQuantKernel kKernels[] = {
#if defined(__x86_64__)
    // (the transposed epilogue and the centered codes: the AVX2 code at both levels)
    {Isa::kAvx512, "float_quant_avx512", range_f32_avx512, quantize_u8_avx512, dequant_rows_avx512, dequant_t_avx2,
     quantize_centered_avx2},
    {Isa::kAvx2, "float_quant_avx2", range_f32_avx2, quantize_u8_avx2, dequant_rows_avx2, dequant_t_avx2,
     quantize_centered_avx2},
#endif
    {Isa::kRef, "float_quant_ref", range_ref, quantize_ref, dequant_ref, dequant_t_ref, quantize_centered_ref},
};

}  // namespace

std::span<const FloatQuantKernel> float_quant_kernels() { return kKernels; }
const FloatQuantKernel& pick_float_quant(Isa allowed) {
  return *pick_kernel(float_quant_kernels(), allowed, [](const FloatQuantKernel&) { return true; });
}

}  // namespace kvant
