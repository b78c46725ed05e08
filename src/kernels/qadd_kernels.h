// The quantized Add/Mul table's entries (qadd.h has the math). Included by
// kernels/qadd.cc and the per-ISA files: declarations and plain structs only.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

struct QAddParams;  // qadd.h

struct QAddKernel {
  Isa isa;
  const char* name;  // "qadd_<isa>"
  // Elements [0, n): a, b, y are uint8 (u8) or int8 (s8) arrays.
  void (*u8)(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p);
  void (*s8)(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p);
};

std::span<const QAddKernel> qadd_kernels();

// kernels/qadd.cc
void qadd_u8_generic(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p);
void qadd_s8_generic(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p);
// x86_avx2/qadd_avx2.cc (tails through the generic functions)
void qadd_u8_avx2(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p);
void qadd_s8_avx2(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p);
// x86_avx512/qadd_avx512.cc (masked tails)
void qadd_u8_avx512(const uint8_t* a, const uint8_t* b, uint8_t* y, int64_t n, const QAddParams& p);
void qadd_s8_avx512(const int8_t* a, const int8_t* b, int8_t* y, int64_t n, const QAddParams& p);

}  // namespace kvant
