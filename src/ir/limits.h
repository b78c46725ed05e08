// Limits on what a model or data file can make kvant do (docs/security.md).
// Models and data come from anywhere: a 135-byte model can ask for 3 GB
// (ConstantOfShape), a 1 MB .npz for 1 GB (deflate), a Loop for forever.
//
// Memory budget: every Tensor's storage (ir/tensor.h), the compiled arena
// and the large buffers the readers fill (IDX, images, model and external
// data bytes) are counted while they live. An allocation that would take the
// total past the budget is refused before it happens, with an Error saying
// how much was asked, what is in use and the budget; the caller adds the
// node or file. Default budget, the smaller of:
//   3/4 of the memory this process can have: physical RAM, or the cgroup's
//       memory.max when lower (a container's limit);
//   1/2 of RLIMIT_AS / RLIMIT_DATA when set (prlimit, ulimit -v): the rest
//       is code, libraries, thread stacks and allocator slack.
// The CLI's --max-memory sets it; 0 restores the default.
//
// Loop iterations: a Loop node runs at most max_loop_iterations times, then
// fails naming the node (default 1,000,000; --max-loop-iterations).
#pragma once

#include <cstdint>
#include <string>

namespace kvant {

int64_t memory_budget_bytes();
int64_t default_memory_budget_bytes();
// bytes <= 0: back to the default.
void set_memory_budget_bytes(int64_t bytes);
// Bytes counted against the budget now.
int64_t memory_in_use_bytes();

// Throws Error(kInvalidArgument) "<what> needs N bytes, more than the memory
// budget allows (M of B in use; --max-memory)" when `bytes` more would exceed
// the budget; counts nothing. For short-lived buffers.
void check_memory(int64_t bytes, const std::string& what);

// The raw pair MemoryReservation uses, for owners that cannot hold one (a
// shared_ptr deleter): reserve throws as check_memory does.
void reserve_memory(int64_t bytes, const std::string& what);
void release_memory(int64_t bytes);

// Counts `bytes` against the budget while it lives (after the same check);
// movable, releases on destruction.
class MemoryReservation {
 public:
  MemoryReservation() = default;
  MemoryReservation(int64_t bytes, const std::string& what);
  ~MemoryReservation();
  MemoryReservation(MemoryReservation&& other) noexcept;
  MemoryReservation& operator=(MemoryReservation&& other) noexcept;
  MemoryReservation(const MemoryReservation&) = delete;
  MemoryReservation& operator=(const MemoryReservation&) = delete;
  int64_t bytes() const { return bytes_; }

 private:
  int64_t bytes_ = 0;
};

inline constexpr int64_t kDefaultMaxLoopIterations = 1'000'000;
int64_t max_loop_iterations();
// n <= 0: back to the default.
void set_max_loop_iterations(int64_t n);

// "1.5 GB", "300.0 MB", "12.0 KB", "100 B" for messages.
std::string describe_bytes(int64_t bytes);

}  // namespace kvant
