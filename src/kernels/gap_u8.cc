// The channel-sum table (gap_u8.h) and its reference entry.
#include "kernels/gap_u8.h"

#include <algorithm>

#include "kernels/kernel_table.h"

namespace kvant {

namespace {

void gap_u8_ref(const uint8_t* x, int64_t pixels, int64_t channels, const float* table, double* sums) {
  std::fill(sums, sums + channels, 0.0);
  for (int64_t p = 0; p < pixels; ++p) {
    const uint8_t* xp = x + p * channels;
    for (int64_t c = 0; c < channels; ++c) sums[c] += static_cast<double>(table[xp[c]]);
  }
}

constexpr GapU8Kernel kKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, "gap_u8_avx512", gap_u8_avx512},
#endif
    {Isa::kRef, "gap_u8_ref", gap_u8_ref},
};

}  // namespace

std::span<const GapU8Kernel> gap_u8_kernels() { return kKernels; }
const GapU8Kernel& pick_gap_u8(Isa allowed) {
  return *pick_kernel(gap_u8_kernels(), allowed, [](const GapU8Kernel&) { return true; });
}

}  // namespace kvant
