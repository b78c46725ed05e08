// Vectorised float math for the compiled FP32 steps (Softmax, GELU's Erf).
//
// exp: x = n ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor
//      polynomial (relative error below 2e-7 on that range), times 2^n built
//      in the exponent bits; x is clamped to [-87.3, 88.3] (results below
//      the smallest normal flush towards 0, above FLT_MAX saturate).
// erf: Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 absolute, odd in x.
// Both have an AVX2+FMA path and a scalar one with the same formulas, so the
// results do not depend on the path beyond FMA contraction.
#pragma once

#include <cstdint>

namespace kvant {

void exp_f32(const float* x, float* y, int64_t n);
void erf_f32(const float* x, float* y, int64_t n);
// y[i] = exp(x[i] - shift), returns the sum of the y (float, in order).
float exp_shifted_sum_f32(const float* x, float shift, float* y, int64_t n);

}  // namespace kvant

namespace kvant {

// y = 1 / (1 + exp(-x)) with the vectorised exp.
void sigmoid_f32(const float* x, float* y, int64_t n);

// QuantizeLinear with one scale and zero point, bit-exact with the reference
// (src/ops/quant.cc): q = saturate(nearbyint(x / scale) + zp), NaN -> 0
// (then saturated). Output bytes: int8 when is_signed, else uint8.
void quantize_f32(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed);
// DequantizeLinear: y = float(q - zp) * scale, bit-exact.
void dequantize_f32(const void* q, float* y, int64_t n, float scale, int32_t zp, bool is_signed);

}  // namespace kvant
