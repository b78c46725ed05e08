// Vector float math: the scalar (generic) entry, the table and the free
// functions (vmath.h has the formulas, vmath_kernels.h the entries).
#include "kernels/vmath.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/kernel_table.h"
#include "kernels/vmath_kernels.h"

namespace kvant {

namespace {

using namespace vmath;

float exp_scalar(float x) {
  x = std::min(std::max(x, kExpLo), kExpHi);
  const float n = std::nearbyint(x * kLog2e);
  const float r = (x - n * kLn2Hi) - n * kLn2Lo;
  const float p = 1.0f + r * (1.0f + r * (kC2 + r * (kC3 + r * (kC4 + r * (kC5 + r * kC6)))));
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

float erf_scalar(float x) {
  const float ax = std::abs(x);
  const float t = 1.0f / (1.0f + kErfP * ax);
  const float poly = t * (kA1 + t * (kA2 + t * (kA3 + t * (kA4 + t * kA5))));
  const float v = 1.0f - poly * exp_scalar(-ax * ax);
  return x < 0 ? -v : v;
}

float sigmoid_scalar(float x) { return 1.0f / (1.0f + exp_scalar(-x)); }

float tanh_scalar(float x) {
  const float ax = std::abs(x);
  float v;
  if (ax < kTanhSmall) {
    const float z = ax * ax;
    v = ax + ax * z * (kT3 + z * (kT5 + z * (kT7 + z * (kT9 + z * (kT11 + z * kT13)))));
  } else {
    v = 1.0f - 2.0f / (exp_scalar(2.0f * ax) + 1.0f);
  }
  return x < 0 ? -v : v;
}

}  // namespace

void vmath_exp_generic(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_scalar(x[i]);
}

void vmath_erf_generic(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = erf_scalar(x[i]);
}

void vmath_sigmoid_generic(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = sigmoid_scalar(x[i]);
}

void vmath_tanh_generic(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = tanh_scalar(x[i]);
}

void vmath_silu_generic(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid_scalar(x[i]);
}

void vmath_gelu_erf_generic(const float* x, float* y, int64_t n, float divisor, float half) {
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] * (erf_scalar(x[i] / divisor) + 1.0f)) * half;
}

float vmath_exp_shifted_sum_generic(const float* x, float shift, float* y, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    y[i] = exp_scalar(x[i] - shift);
    sum += y[i];
  }
  return sum;
}

void vmath_quantize_generic(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed) {
  auto* out = static_cast<uint8_t*>(y);
  const double lo = is_signed ? -128.0 : 0.0, hi = is_signed ? 127.0 : 255.0;
  for (int64_t i = 0; i < n; ++i) {
    const float r = x[i] / scale;
    const double v = std::isnan(r) ? 0.0 : std::nearbyint(static_cast<double>(r)) + zp;
    const auto q = static_cast<int32_t>(std::clamp(v, lo, hi));
    out[i] = static_cast<uint8_t>(q & 0xff);
  }
}

namespace {

// Best first (kernel_table.h).
constexpr VMathKernel kVMathKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, "vmath_f32_avx512", vmath_exp_avx512, vmath_erf_avx512, vmath_sigmoid_avx512, vmath_tanh_avx512,
     vmath_silu_avx512, vmath_gelu_erf_avx512, vmath_exp_shifted_sum_avx512, vmath_quantize_avx2},
    {Isa::kAvx2, "vmath_f32_avx2", vmath_exp_avx2, vmath_erf_avx2, vmath_sigmoid_avx2, vmath_tanh_avx2, vmath_silu_avx2,
     vmath_gelu_erf_avx2, vmath_exp_shifted_sum_avx2, vmath_quantize_avx2},
#endif
    {Isa::kRef, "vmath_f32_generic", vmath_exp_generic, vmath_erf_generic, vmath_sigmoid_generic, vmath_tanh_generic,
     vmath_silu_generic, vmath_gelu_erf_generic, vmath_exp_shifted_sum_generic, vmath_quantize_generic},
};

}  // namespace

std::span<const VMathKernel> vmath_kernels() { return kVMathKernels; }

const VMathKernel& vmath_pick(Isa allowed) {
  return *pick_kernel(vmath_kernels(), allowed, [](const VMathKernel&) { return true; });
}

const VMathKernel& vmath_default() {
  static const VMathKernel& kernel = vmath_pick(selected_isa());
  return kernel;
}

const char* vmath_name(const VMathKernel& kernel) { return kernel.name; }

void exp_f32(const float* x, float* y, int64_t n) { vmath_default().exp(x, y, n); }
void erf_f32(const float* x, float* y, int64_t n) { vmath_default().erf(x, y, n); }
void sigmoid_f32(const float* x, float* y, int64_t n) { vmath_default().sigmoid(x, y, n); }
void tanh_f32(const float* x, float* y, int64_t n) { vmath_default().tanh(x, y, n); }
void silu_f32(const float* x, float* y, int64_t n) { vmath_default().silu(x, y, n); }
void gelu_erf_f32(const float* x, float* y, int64_t n, float divisor, float half) {
  vmath_default().gelu_erf(x, y, n, divisor, half);
}
float exp_shifted_sum_f32(const float* x, float shift, float* y, int64_t n) {
  return vmath_default().exp_shifted_sum(x, shift, y, n);
}
void quantize_f32(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed) {
  vmath_default().quantize(x, y, n, scale, zp, is_signed);
}

void dequantize_f32(const void* q, float* y, int64_t n, float scale, int32_t zp, bool is_signed) {
  if (is_signed) {
    const auto* in = static_cast<const int8_t*>(q);
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(in[i] - zp) * scale;
  } else {
    const auto* in = static_cast<const uint8_t*>(q);
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(in[i] - zp) * scale;
  }
}

}  // namespace kvant
