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

// Whether entry e may run: its level is allowed and supported, and so are
// the extra CPU features it names (an entry with a `cpu_extra` member).
template <typename Entry>
bool entry_runs(const Entry& e, Isa allowed, const CpuFeatures& cpu) {
  if (!isa_allows(allowed, e.isa, cpu)) return false;
  if constexpr (requires { e.cpu_extra; }) return cpu_has_extra(cpu, e.cpu_extra);
  return true;
}
// Whether the CPU could run entry e at all (any allowed level).
template <typename Entry>
bool entry_supported(const Entry& e, const CpuFeatures& cpu) {
  return entry_runs(e, e.isa, cpu);
}

// The first entry e of `table` that entry_runs and accepts(e); nullptr when
// none (a table with a final kRef entry always has one).
template <typename Entry, typename Accepts>
const Entry* pick_kernel(std::span<const Entry> table, Isa allowed, Accepts&& accepts) {
  const CpuFeatures& cpu = cpu_features();
  for (const Entry& e : table) {
    if (entry_runs(e, allowed, cpu) && accepts(e)) return &e;
  }
  return nullptr;
}

}  // namespace kvant
