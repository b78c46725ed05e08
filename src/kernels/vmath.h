// Vectorised float math for the compiled FP32 steps (Softmax, GELU's Erf,
// SiLU, Sigmoid, Tanh, LSTM gates) and QuantizeLinear.
//
// exp: x = n ln2 + r with |r| <= ln2/2, e^r by its degree-6 Taylor
//      polynomial (relative error below 2e-7 on that range), times 2^n built
//      in the exponent bits; x is clamped to [-87.3, 88.3] (results below
//      the smallest normal flush towards 0, above FLT_MAX saturate).
// erf: Abramowitz & Stegun 7.1.26, |error| <= 1.5e-7 absolute, odd in x.
// sigmoid: 1 / (1 + exp(-x)); silu: x * sigmoid(x).
// tanh: |x| < 0.4: the odd Taylor series to x^13 (truncation below 1e-7
//      relative); else 1 - 2 / (exp(2|x|) + 1) with x's sign (error below
//      3e-7 relative).
// gelu_erf: (x * (erf(x / divisor) + 1)) * half, GELU as exporters write it.
//
// The functions are the entries of one table (vmath_kernels.h, best first:
// vmath_f32_avx512, vmath_f32_avx2, vmath_f32_generic), each with the same
// formulas; they differ by FMA contraction and, for AVX-512, a reciprocal
// (vrcp14ps and one Newton step, below 2 ulp) instead of a division in
// sigmoid, tanh and erf. The free functions use the entry picked on first use for
// KVANT_ISA (or the CPU's best); quantize_f32 is bit-exact on every entry.
#pragma once

#include <cstdint>

#include "kernels/cpu_features.h"

namespace kvant {

struct VMathKernel;  // vmath_kernels.h

// The first entry `allowed`, the CPU and the build accept; and the default,
// vmath_pick(selected_isa()) picked once.
const VMathKernel& vmath_pick(Isa allowed);
const VMathKernel& vmath_default();
const char* vmath_name(const VMathKernel& kernel);

void exp_f32(const float* x, float* y, int64_t n);
void erf_f32(const float* x, float* y, int64_t n);
void sigmoid_f32(const float* x, float* y, int64_t n);
void tanh_f32(const float* x, float* y, int64_t n);
void silu_f32(const float* x, float* y, int64_t n);
void gelu_erf_f32(const float* x, float* y, int64_t n, float divisor, float half);
// y[i] = exp(x[i] - shift), returns the sum of the y.
float exp_shifted_sum_f32(const float* x, float shift, float* y, int64_t n);

// QuantizeLinear with one scale and zero point, bit-exact with the reference
// (src/ops/quant.cc): q = saturate(nearbyint(x / scale) + zp), NaN -> 0
// (then saturated). Output bytes: int8 when is_signed, else uint8.
void quantize_f32(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed);
// DequantizeLinear: y = float(q - zp) * scale, bit-exact.
void dequantize_f32(const void* q, float* y, int64_t n, float scale, int32_t zp, bool is_signed);

}  // namespace kvant
