// Quantized elementwise Add with the QDQ simulation's float arithmetic, so
// results are bit-exact with DequantizeLinear -> Add -> [clamp] ->
// QuantizeLinear evaluated in float:
//   s = float(a - a_zp) * a_scale + float(b - b_zp) * b_scale   (or * for multiply)
//   s = min(max(s, lo), hi)                 (lo/hi: a fused Relu/Clip, or +-inf)
//   y = saturate(nearbyint(s / y_scale) + y_zp)
// The kernels are one table (qadd_kernels.h, best first: qadd_avx512 with 16
// lanes, qadd_avx2 with 8, qadd_generic); the vector ones use the same IEEE
// operations per lane (round-to-nearest-even conversions, true division, no
// FMA), so every entry equals the scalar one exactly.
#pragma once

#include <cstdint>

#include "kernels/cpu_features.h"

namespace kvant {

struct QAddKernel;  // qadd_kernels.h

struct QAddParams {
  bool multiply = false;  // s = a' * b' instead of a' + b' (QDQ Mul)
  float a_scale = 1, b_scale = 1, y_scale = 1;
  int32_t a_zp = 0, b_zp = 0, y_zp = 0;
  float lo = -__builtin_huge_valf(), hi = __builtin_huge_valf();
  int32_t qmin = 0, qmax = 255;
};

// The first entry `allowed`, the CPU and the build accept (a step picks it
// once, when it is compiled).
const QAddKernel& qadd_pick(Isa allowed);
const char* qadd_name(const QAddKernel& kernel);

void qadd_u8(const QAddKernel& kernel, const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p);
void qadd_s8(const QAddKernel& kernel, const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p);

}  // namespace kvant
