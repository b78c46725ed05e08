// Memory plan: offsets for every intermediate tensor in one arena
// (DESIGN.md §3), as TensorFlow Lite Micro's greedy planner does.
//
// Each buffer is live from the step that writes it to the last step that
// reads it (inclusive). Buffers are placed largest first; each goes to the
// lowest offset (aligned) where it overlaps no already-placed buffer whose
// lifetime overlaps its own. The arena size is the highest end. The result
// depends only on the input list, so a plan is reproducible.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvant {

struct BufferRequest {
  size_t bytes = 0;
  int first = 0;  // step that writes it (-1: before the first step, e.g. a model input)
  int last = 0;   // last step that reads it (inclusive; a model output: the last step)
};

struct MemoryPlan {
  std::vector<size_t> offsets;  // one per request, multiples of `alignment`
  size_t arena_bytes = 0;       // what the arena needs
  size_t total_bytes = 0;       // sum of all requests (each aligned): the memory without reuse
};

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests, size_t alignment = 64);

}  // namespace kvant
