#include "runtime/memory_plan.h"

#include <algorithm>
#include <numeric>

#include "kvant/status.h"

namespace kvant {

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests, size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument, "plan_memory: alignment must be a power of two");
  }
  auto aligned = [alignment](size_t n) { return (n + alignment - 1) / alignment * alignment; };
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), 0);
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Largest first; ties by earlier start, then by index, so the plan is stable.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (requests[a].bytes != requests[b].bytes) return requests[a].bytes > requests[b].bytes;
    return requests[a].first < requests[b].first;
  });
  struct Placed {
    size_t offset, end;
    int first, last;
  };
  std::vector<Placed> placed;
  placed.reserve(requests.size());
  std::vector<Placed> conflicts;
  for (size_t index : order) {
    const BufferRequest& r = requests[index];
    if (r.last < r.first) throw Error(ErrorCode::kInternal, "plan_memory: a buffer is read before it is written");
    const size_t size = aligned(r.bytes);
    plan.total_bytes += size;
    conflicts.clear();
    for (const Placed& p : placed) {
      if (p.first <= r.last && r.first <= p.last) conflicts.push_back(p);
    }
    std::sort(conflicts.begin(), conflicts.end(), [](const Placed& a, const Placed& b) { return a.offset < b.offset; });
    size_t offset = 0;
    for (const Placed& c : conflicts) {
      if (offset + size <= c.offset) break;  // fits in the gap before c
      offset = std::max(offset, c.end);
    }
    plan.offsets[index] = offset;
    placed.push_back({offset, offset + size, r.first, r.last});
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
  }
  return plan;
}

}  // namespace kvant
