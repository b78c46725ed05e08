// The 4-bit-weight GEMM tables' entries (gemm_w4.h has the math and the
// layout). Included by kernels/gemm_w4.cc and the per-ISA files:
// declarations and plain structs only (the ISA files are compiled with their
// own -m flags, CMakeLists.txt).
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

// The packed weight as the entries see it (W4Matrix's arrays).
struct W4View {
  const uint8_t* codes = nullptr;   // [n, k_padded / 2] (W4A32)
  const uint8_t* codes8 = nullptr;  // [groups, k_padded / 8, 32] (W4A8; gemm_w4.h)
  const float* scale = nullptr;     // [groups, k_blocks, 8]
  const uint8_t* zero = nullptr;    // [groups, k_blocks, 8]
  int n = 0, k_blocks = 0, k_padded = 0, block = 0;
};

// y[m, n] for m < rows, n in [n0, n1): x rows k_padded long (zero past K).
struct W4A32Args {
  W4View w;
  const float* x = nullptr;
  int64_t ldx = 0;
  int m = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  const float* bias = nullptr;  // N floats or null
  int n0 = 0, n1 = 0;
};

struct W4A8Args {
  W4View w;
  const int8_t* xq = nullptr;     // [m, k_padded]
  const float* xs = nullptr;      // [m, k_blocks]
  const int32_t* xsum = nullptr;  // [m, k_blocks]
  int m = 0;
  float* y = nullptr;
  int64_t ldy = 0;
  const float* bias = nullptr;
  int n0 = 0, n1 = 0;  // n0 a multiple of 8
};

struct GemmW4A32Kernel {
  Isa isa;
  const char* name;  // "gemm_w4a32_<isa>"
  void (*run)(const W4A32Args& args);
};

struct GemmW4A8Kernel {
  Isa isa;
  const char* name;  // "gemm_w4a8_<isa>"
  int min_block;     // the smallest block it handles (the SIMD entries work in 32-value chunks)
  void (*run)(const W4A8Args& args);
};

std::span<const GemmW4A32Kernel> gemm_w4a32_kernels();
std::span<const GemmW4A8Kernel> gemm_w4a8_kernels();

// kernels/gemm_w4.cc
void gemm_w4a32_generic(const W4A32Args& args);
void gemm_w4a8_generic(const W4A8Args& args);
// x86_avx2/gemm_w4_avx2.cc
void gemm_w4a32_avx2(const W4A32Args& args);
void gemm_w4a8_avx2(const W4A8Args& args);
// The VNNI entries' body with AVX2 dot products (tests only, not in the table).
void gemm_w4a8_avx2_vnni_body(const W4A8Args& args);
// x86_avx512/gemm_w4a32_avx512.cc
void gemm_w4a32_avx512(const W4A32Args& args);
// x86_avxvnni/gemm_w4a8_avxvnni.cc
void gemm_w4a8_avxvnni(const W4A8Args& args);
// x86_avx512vnni/gemm_w4a8_avx512vnni.cc
void gemm_w4a8_avx512vnni(const W4A8Args& args);

}  // namespace kvant
