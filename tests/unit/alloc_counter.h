// Counts global operator new calls in the unit-test binary (alloc_counter.cc
// replaces it), so tests can show that a run allocates nothing.
#pragma once

#include <cstddef>

namespace kvant::test {
long allocation_count();
// The largest single allocation (bytes) since the last reset.
size_t largest_allocation();
void reset_largest_allocation();
}  // namespace kvant::test
