// Walking a kernel table in tests (STYLE.md §6, kernels/kernel_table.h):
// every entry the CPU, the build and KVANT_ISA allow runs against the
// reference; the coverage check prints which entries ran and which were
// skipped (and why), and fails when the CPU could run an entry that the walk
// left out.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <span>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/kernel_table.h"

namespace kvant::test {

// The level the tests may use: KVANT_ISA when set (GTEST_SKIP-worthy when the
// CPU lacks it: see allowed_isa_or_skip), else the CPU's best.
inline bool allowed_isa(Isa& out, std::string& why) {
  try {
    out = selected_isa();
    return true;
  } catch (const std::exception& e) {
    why = e.what();
    return false;
  }
}

#define KVANT_ALLOWED_ISA_OR_SKIP(var)            \
  Isa var = Isa::kRef;                            \
  do {                                            \
    std::string why_;                             \
    if (!::kvant::test::allowed_isa(var, why_)) { \
      GTEST_SKIP() << why_;                       \
    }                                             \
  } while (0)

template <typename Entry>
std::vector<const Entry*> runnable_entries(std::span<const Entry> table, Isa allowed) {
  std::vector<const Entry*> out;
  for (const Entry& e : table) {
    if (entry_runs(e, allowed, cpu_features())) out.push_back(&e);
  }
  return out;
}

// Prints every entry as run or skipped with the reason, and fails when
// KVANT_ISA is unset and an entry the CPU supports is not runnable.
template <typename Entry>
void check_coverage(std::span<const Entry> table, Isa allowed, const char* what) {
  const CpuFeatures& cpu = cpu_features();
  const bool env_set = std::getenv("KVANT_ISA") != nullptr && std::getenv("KVANT_ISA")[0] != '\0';
  std::string ran, skipped;
  for (const Entry& e : table) {
    if (entry_runs(e, allowed, cpu)) {
      ran += std::string(" ") + e.name;
      continue;
    }
    skipped += std::string(" ") + e.name + (entry_supported(e, cpu) ? " (KVANT_ISA)" : " (CPU lacks it)");
    if (!env_set && entry_supported(e, cpu)) {
      ADD_FAILURE() << what << ": this CPU supports " << e.name << " but the walk skipped it";
    }
  }
  std::cout << "[ INFO     ] " << what << " on " << describe(cpu) << "\n  ran:" << ran
            << "\n  skipped:" << (skipped.empty() ? " none" : skipped) << "\n";
}

}  // namespace kvant::test
