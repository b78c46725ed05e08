// Kernel tables (STYLE.md §4-5): one table per kind of kernel, best first.
// An entry names its ISA level (cpu_features.h), its name ("op_types_isa_tile",
// printed by `kvant inspect --plan`), a predicate on the problem when it has
// one (7-bit weights, shapes) and its functions. pick_kernel() returns the
// first entry the allowed level, the CPU and the predicate accept; every table
// ends with a kRef entry that accepts everything, so a pick never fails.
//
// The choice is made once, when a weight is packed or a step is compiled; the
// packed data keeps a pointer to its entry and the run never branches on ISA.
// Tests walk each table (every entry the CPU supports runs against the
// reference) and fail when the CPU supports an entry that did not run.
#pragma once

#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

// The first entry e of `table` with isa_allows(allowed, e.isa) and accepts(e);
// nullptr when none (a table with a final kRef entry always has one).
template <typename Entry, typename Accepts>
const Entry* pick_kernel(std::span<const Entry> table, Isa allowed, Accepts&& accepts) {
  const CpuFeatures& cpu = cpu_features();
  for (const Entry& e : table) {
    if (isa_allows(allowed, e.isa, cpu) && accepts(e)) return &e;
  }
  return nullptr;
}

}  // namespace kvant
