// y[i] = table[x[i]] over bytes: the kernel of the compiled lookup-table
// steps (any chain of elementwise ops between a DequantizeLinear and a
// QuantizeLinear, tabulated over the 256 codes). A kernel table
// (kernel_table.h); the reference entry defines the result.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

struct LookupU8Kernel {
  Isa isa;
  uint32_t cpu_extra;  // CpuExtra bits the entry needs beyond its level
  const char* name;
  void (*run)(const uint8_t* table, const uint8_t* x, uint8_t* y, int64_t n);
  // `planes` consecutive planes of `inner` codes, plane p through the table
  // at tables + 256 * p (the per-channel tables of a channel_lookup step):
  // one call for many small planes, each entry choosing its path by `inner`.
  void (*run_planes)(const uint8_t* tables, const uint8_t* x, uint8_t* y, int64_t inner, int64_t planes);
};

std::span<const LookupU8Kernel> lookup_u8_kernels();

// The reference entry's loop (portable code, lookup_u8.cc): also the vector
// entries' path for planes too small for vectors.
void lookup_u8_ref(const uint8_t* table, const uint8_t* x, uint8_t* y, int64_t n);
const LookupU8Kernel& pick_lookup_u8(Isa allowed);

// x86_avx512vbmi/lookup_u8_avx512vbmi.cc: 64 bytes per step, two vpermi2b
// (the table's halves) and a select on the index's top bit.
void lookup_u8_avx512vbmi(const uint8_t* table, const uint8_t* x, uint8_t* y, int64_t n);
void lookup_u8_planes_avx512vbmi(const uint8_t* tables, const uint8_t* x, uint8_t* y, int64_t inner, int64_t planes);
// x86_avx2/lookup_u8_avx2.cc: 32 bytes per step, 16 vpshufb over the table's
// 16-byte chunks (XOR-chained, so each index keeps only its own chunk) and a
// blend on the index's top bit.
void lookup_u8_avx2(const uint8_t* table, const uint8_t* x, uint8_t* y, int64_t n);
// Planes under 64 codes take a scalar loop: the 16 table
// vectors cost more to set up than they save there.
void lookup_u8_planes_avx2(const uint8_t* tables, const uint8_t* x, uint8_t* y, int64_t inner, int64_t planes);

}  // namespace kvant
