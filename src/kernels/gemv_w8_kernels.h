// The int8-weight GEMV table's entries (gemv_w8.h has the math). Included by
// kernels/gemv_w8.cc and the per-ISA files: declarations and plain structs
// only (the ISA files are compiled with their own -m flags, CMakeLists.txt).
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

// One row of x against rows [0, n) of w: y[j] (+)= scale[j] * sum_k x[k] w[j * k_len + k];
// blocked (block > 0): y[j] (+)= sum_b scale[j * k_blocks + b] * sum_{k in block b} x[k] w[j * k_len + k].
struct GemvW8Args {
  const int8_t* w = nullptr;  // [n, k_len]
  const float* scale = nullptr;
  int n = 0, k = 0;
  int block = 0;  // 0: one scale per row (row); else a multiple of 8 (row_blocked)
  const float* x = nullptr;
  float* y = nullptr;
  bool accumulate = false;
};

struct GemvW8Kernel {
  Isa isa;
  const char* name;  // "gemv_w8_<isa>"
  void (*row)(const GemvW8Args& args);
  void (*row_blocked)(const GemvW8Args& args);  // null: per-row scales only
};

std::span<const GemvW8Kernel> gemv_w8_kernels();

// kernels/gemv_w8.cc
void gemv_w8_row_generic(const GemvW8Args& args);
void gemv_w8_row_blocked_generic(const GemvW8Args& args);
// x86_avx2/gemv_w8_avx2.cc
void gemv_w8_row_avx2(const GemvW8Args& args);
void gemv_w8_row_blocked_avx2(const GemvW8Args& args);
// x86_avx512/gemv_w8_avx512.cc
void gemv_w8_row_avx512(const GemvW8Args& args);

}  // namespace kvant
