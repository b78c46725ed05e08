// The vector float math table's entries (vmath.h has the formulas and their
// accuracy): one entry per ISA level, each a full set of functions over
// arrays of any length (tails included). Included by kernels/vmath.cc and the
// per-ISA files, so declarations and plain structs only (no inline code: the
// ISA files are compiled with their own -m flags, CMakeLists.txt).
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

struct VMathKernel {
  Isa isa;
  const char* name;  // "vmath_f32_<isa>"
  void (*exp)(const float* x, float* y, int64_t n);
  void (*erf)(const float* x, float* y, int64_t n);
  void (*sigmoid)(const float* x, float* y, int64_t n);
  void (*tanh)(const float* x, float* y, int64_t n);
  void (*silu)(const float* x, float* y, int64_t n);
  void (*gelu_erf)(const float* x, float* y, int64_t n, float divisor, float half);
  float (*exp_shifted_sum)(const float* x, float shift, float* y, int64_t n);
  void (*quantize)(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed);
};

std::span<const VMathKernel> vmath_kernels();

// The constants every entry uses (vmath.h has the formulas); namespace-scope
// constexpr, so internal to each file that reads them.
namespace vmath {
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kExpLo = -87.3f, kExpHi = 88.3f;  // 2^n stays a normal float
// 1/k! for the Taylor polynomial of e^r.
constexpr float kC2 = 1.0f / 2, kC3 = 1.0f / 6, kC4 = 1.0f / 24, kC5 = 1.0f / 120, kC6 = 1.0f / 720;
// Abramowitz & Stegun 7.1.26.
constexpr float kErfP = 0.3275911f, kA1 = 0.254829592f, kA2 = -0.284496736f, kA3 = 1.421413741f, kA4 = -1.453152027f,
                kA5 = 1.061405429f;
// tanh: below kTanhSmall in magnitude, x (1 + x^2 (kT3 + x^2 (kT5 + ...))), the
// Taylor series to x^13; above, 1 - 2 / (e^(2|x|) + 1) with the sign of x.
constexpr float kTanhSmall = 0.4f;
constexpr float kT3 = -1.0f / 3, kT5 = 2.0f / 15, kT7 = -17.0f / 315, kT9 = 62.0f / 2835, kT11 = -1382.0f / 155925,
                kT13 = 21844.0f / 6081075;
}  // namespace vmath

// kernels/vmath.cc: scalar.
void vmath_exp_generic(const float* x, float* y, int64_t n);
void vmath_erf_generic(const float* x, float* y, int64_t n);
void vmath_sigmoid_generic(const float* x, float* y, int64_t n);
void vmath_tanh_generic(const float* x, float* y, int64_t n);
void vmath_silu_generic(const float* x, float* y, int64_t n);
void vmath_gelu_erf_generic(const float* x, float* y, int64_t n, float divisor, float half);
float vmath_exp_shifted_sum_generic(const float* x, float shift, float* y, int64_t n);
void vmath_quantize_generic(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed);
// x86_avx2/vmath_avx2.cc: 8 lanes, tails through an 8-float buffer.
void vmath_exp_avx2(const float* x, float* y, int64_t n);
void vmath_erf_avx2(const float* x, float* y, int64_t n);
void vmath_sigmoid_avx2(const float* x, float* y, int64_t n);
void vmath_tanh_avx2(const float* x, float* y, int64_t n);
void vmath_silu_avx2(const float* x, float* y, int64_t n);
void vmath_gelu_erf_avx2(const float* x, float* y, int64_t n, float divisor, float half);
float vmath_exp_shifted_sum_avx2(const float* x, float shift, float* y, int64_t n);
void vmath_quantize_avx2(const float* x, void* y, int64_t n, float scale, int32_t zp, bool is_signed);
// x86_avx512/vmath_avx512.cc: 16 lanes, masked tails.
void vmath_exp_avx512(const float* x, float* y, int64_t n);
void vmath_erf_avx512(const float* x, float* y, int64_t n);
void vmath_sigmoid_avx512(const float* x, float* y, int64_t n);
void vmath_tanh_avx512(const float* x, float* y, int64_t n);
void vmath_silu_avx512(const float* x, float* y, int64_t n);
void vmath_gelu_erf_avx512(const float* x, float* y, int64_t n, float divisor, float half);
float vmath_exp_shifted_sum_avx512(const float* x, float shift, float* y, int64_t n);

}  // namespace kvant
