// Channel sums of the dequantized values of an NHWC image, the core of the
// compiled DequantizeLinear -> GlobalAveragePool -> QuantizeLinear step:
//
//   sums[c] = sum over pixels p of table[x[p, c]]      (double; table: the
//             256 DQ values, each a float)
//
// Every DQ value is an integer multiple of ulp(x_scale) below 2^33 of them,
// so while an image has at most 2^20 pixels every partial sum is exact in
// double and the result does not depend on the order: the entries may sum
// in any order (the caller keeps the reference's order for larger images).
// A kernel table (kernel_table.h).
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

struct GapU8Kernel {
  Isa isa;
  const char* name;
  // x: pixels x channels bytes; sums: channels doubles (overwritten).
  void (*run)(const uint8_t* x, int64_t pixels, int64_t channels, const float* table, double* sums);
};

std::span<const GapU8Kernel> gap_u8_kernels();
const GapU8Kernel& pick_gap_u8(Isa allowed);

// x86_avx512/gap_u8_avx512.cc: 16 channels per step, vgatherdps then two
// vcvtps2pd into double sums.
void gap_u8_avx512(const uint8_t* x, int64_t pixels, int64_t channels, const float* table, double* sums);

}  // namespace kvant
