// The byte lookup table (lookup_u8.h) and its reference entry.
#include "kernels/lookup_u8.h"

#include <cstring>

#include "kernels/kernel_table.h"

namespace kvant {

// 8 codes per 64-bit load and store (byte loads and stores cost more than
// the table reads).
void lookup_u8_ref(const uint8_t* table, const uint8_t* x, uint8_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t codes;
    std::memcpy(&codes, x + i, 8);
    uint64_t mapped = 0;
    for (int b = 0; b < 8; ++b) mapped |= uint64_t{table[(codes >> (8 * b)) & 0xff]} << (8 * b);
    std::memcpy(y + i, &mapped, 8);
  }
  for (; i < n; ++i) y[i] = table[x[i]];
}

namespace {

void lookup_u8_planes_ref(const uint8_t* tables, const uint8_t* x, uint8_t* y, int64_t inner, int64_t planes) {
  for (int64_t p = 0; p < planes; ++p) lookup_u8_ref(tables + 256 * p, x + inner * p, y + inner * p, inner);
}

constexpr LookupU8Kernel kKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512, kCpuVbmi, "lookup_u8_avx512vbmi", lookup_u8_avx512vbmi, lookup_u8_planes_avx512vbmi},
    {Isa::kAvx2, kCpuExtraNone, "lookup_u8_avx2", lookup_u8_avx2, lookup_u8_planes_avx2},
#endif
    {Isa::kRef, kCpuExtraNone, "lookup_u8_ref", lookup_u8_ref, lookup_u8_planes_ref},
};

}  // namespace

std::span<const LookupU8Kernel> lookup_u8_kernels() { return kKernels; }
const LookupU8Kernel& pick_lookup_u8(Isa allowed) {
  return *pick_kernel(lookup_u8_kernels(), allowed, [](const LookupU8Kernel&) { return true; });
}

}  // namespace kvant
