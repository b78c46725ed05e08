#include "runtime/memory_plan.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "kvant/status.h"

namespace kvant {

namespace {

// The placed buffers by lifetime, to find those whose lifetime overlaps a
// query [first, last] in O(log T + k) for k answers, where scanning every
// placed buffer made the planner O(buffers^2) (200k steps: 21 s). An interval
// overlapping [first, last] either contains `first` (a stabbing query on a
// segment tree over the steps, each interval stored at O(log T) nodes) or
// starts in (first, last] (a range query on the intervals ordered by start);
// the two sets are disjoint.
class LifetimeIndex {
 public:
  LifetimeIndex(int t_min, int t_max) : t_min_(t_min), n_(t_max - t_min + 1) {
    size_ = 1;
    while (size_ < n_) size_ *= 2;
    tree_.resize(2 * static_cast<size_t>(size_));
  }
  void insert(int first, int last, size_t id) {
    add(1, 0, size_ - 1, first - t_min_, last - t_min_, id);
    by_first_.emplace(first, id);
  }
  void overlapping(int first, int last, std::vector<size_t>& out) const {
    int node = 1, lo = 0, hi = size_ - 1;
    const int at = first - t_min_;
    while (true) {
      const auto& here = tree_[static_cast<size_t>(node)];
      out.insert(out.end(), here.begin(), here.end());
      if (lo == hi) break;
      const int mid = (lo + hi) / 2;
      if (at <= mid) {
        node = 2 * node;
        hi = mid;
      } else {
        node = 2 * node + 1;
        lo = mid + 1;
      }
    }
    for (auto it = by_first_.upper_bound(first); it != by_first_.end() && it->first <= last; ++it) {
      out.push_back(it->second);
    }
  }

 private:
  void add(int node, int lo, int hi, int a, int b, size_t id) {
    if (b < lo || hi < a) return;
    if (a <= lo && hi <= b) {
      tree_[static_cast<size_t>(node)].push_back(id);
      return;
    }
    const int mid = (lo + hi) / 2;
    add(2 * node, lo, mid, a, b, id);
    add(2 * node + 1, mid + 1, hi, a, b, id);
  }

  int t_min_, n_, size_;
  std::vector<std::vector<size_t>> tree_;
  std::multimap<int, size_t> by_first_;
};

}  // namespace

MemoryPlan plan_memory(const std::vector<BufferRequest>& requests, size_t alignment) {
  if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument, "plan_memory: alignment must be a power of two");
  }
  auto aligned = [alignment](size_t n) { return (n + alignment - 1) / alignment * alignment; };
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), 0);
  if (requests.empty()) return plan;
  int t_min = 0, t_max = 0;
  for (const BufferRequest& r : requests) {
    if (r.last < r.first) throw Error(ErrorCode::kInternal, "plan_memory: a buffer is read before it is written");
    t_min = std::min(t_min, r.first);
    t_max = std::max(t_max, r.last);
  }
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Largest first; ties by earlier start, then by index, so the plan is stable.
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (requests[a].bytes != requests[b].bytes) return requests[a].bytes > requests[b].bytes;
    return requests[a].first < requests[b].first;
  });
  struct Placed {
    size_t offset, end;
  };
  std::vector<Placed> placed(requests.size());
  LifetimeIndex index(t_min, t_max);
  std::vector<size_t> ids;
  std::vector<Placed> conflicts;
  for (size_t id : order) {
    const BufferRequest& r = requests[id];
    const size_t size = aligned(r.bytes);
    plan.total_bytes += size;
    ids.clear();
    index.overlapping(r.first, r.last, ids);
    conflicts.clear();
    for (size_t other : ids) conflicts.push_back(placed[other]);
    std::sort(conflicts.begin(), conflicts.end(), [](const Placed& a, const Placed& b) { return a.offset < b.offset; });
    size_t offset = 0;
    for (const Placed& c : conflicts) {
      if (offset + size <= c.offset) break;  // fits in the gap before c
      offset = std::max(offset, c.end);
    }
    plan.offsets[id] = offset;
    placed[id] = {offset, offset + size};
    index.insert(r.first, r.last, id);
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
  }
  return plan;
}

}  // namespace kvant
