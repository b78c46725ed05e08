// Quantized elementwise Add with the QDQ simulation's float arithmetic, so
// results are bit-exact with DequantizeLinear -> Add -> [clamp] ->
// QuantizeLinear evaluated in float:
//   s = float(a - a_zp) * a_scale + float(b - b_zp) * b_scale   (or * for multiply)
//   s = min(max(s, lo), hi)                 (lo/hi: a fused Relu/Clip, or +-inf)
//   y = saturate(nearbyint(s / y_scale) + y_zp)
// The AVX2 path uses the same IEEE operations per lane (round-to-nearest-even
// conversions, true division), so it equals the scalar path exactly.
#pragma once

#include <cstdint>

#include "kernels/cpu_features.h"

namespace kvant {

struct QAddParams {
  bool multiply = false;  // s = a' * b' instead of a' + b' (QDQ Mul)
  float a_scale = 1, b_scale = 1, y_scale = 1;
  int32_t a_zp = 0, b_zp = 0, y_zp = 0;
  float lo = -__builtin_huge_valf(), hi = __builtin_huge_valf();
  int32_t qmin = 0, qmax = 255;
};

void qadd_u8(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p, Isa isa);
void qadd_s8(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p, Isa isa);

}  // namespace kvant
