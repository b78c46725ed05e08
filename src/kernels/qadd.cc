// Quantized Add/Mul: the scalar entry, the table (qadd.h has the math).
#include "kernels/qadd.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernel_table.h"
#include "kernels/qadd_kernels.h"

namespace kvant {

namespace {

template <typename T>
void qadd_scalar(const T* a, const T* b, T* y, int64_t n, const QAddParams& p) {
  for (int64_t i = 0; i < n; ++i) {
    const float fa = static_cast<float>(a[i] - p.a_zp) * p.a_scale, fb = static_cast<float>(b[i] - p.b_zp) * p.b_scale;
    float s = p.multiply ? fa * fb : fa + fb;
    s = std::min(std::max(s, p.lo), p.hi);
    const float q = std::nearbyint(s / p.y_scale) + static_cast<float>(p.y_zp);
    y[i] = static_cast<T>(std::clamp(q, static_cast<float>(p.qmin), static_cast<float>(p.qmax)));
  }
}

}  // namespace

void qadd_u8_generic(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p) {
  qadd_scalar(a, b, y, n, p);
}
void qadd_s8_generic(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p) {
  qadd_scalar(a, b, y, n, p);
}

namespace {

// Best first (kernel_table.h).
constexpr QAddKernel kQAddKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, "qadd_avx512", qadd_u8_avx512, qadd_s8_avx512},
    {Isa::kAvx2, "qadd_avx2", qadd_u8_avx2, qadd_s8_avx2},
#endif
    {Isa::kRef, "qadd_generic", qadd_u8_generic, qadd_s8_generic},
};

}  // namespace

std::span<const QAddKernel> qadd_kernels() { return kQAddKernels; }

const QAddKernel& qadd_pick(Isa allowed) {
  return *pick_kernel(qadd_kernels(), allowed, [](const QAddKernel&) { return true; });
}

const char* qadd_name(const QAddKernel& kernel) { return kernel.name; }

void qadd_u8(const QAddKernel& kernel, const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p) {
  kernel.u8(a, b, y, n, p);
}

void qadd_s8(const QAddKernel& kernel, const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p) {
  kernel.s8(a, b, y, n, p);
}

}  // namespace kvant
