// Counts global operator new calls in the unit-test binary (alloc_counter.cc
// replaces it), so tests can show that a run allocates nothing.
#pragma once

namespace kvant::test {
long allocation_count();
}  // namespace kvant::test
