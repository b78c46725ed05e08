#include "ir/limits.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <limits>

#include "kvant/status.h"

namespace kvant {

namespace {

constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();

std::atomic<int64_t> g_budget{0};  // 0: not set, use the default
std::atomic<int64_t> g_in_use{0};
std::atomic<int64_t> g_max_loop{kDefaultMaxLoopIterations};

int64_t physical_memory() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : kUnlimited;
}

// cgroup v2's memory.max of this process's group ("max" or a number).
int64_t cgroup_memory() {
  std::ifstream in("/sys/fs/cgroup/memory.max");
  std::string text;
  if (!(in >> text) || text == "max" || text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
      text.size() > 18) {
    return kUnlimited;
  }
  return std::stoll(text);
}

int64_t rlimit_bytes(int resource) {
  rlimit r{};
  if (::getrlimit(resource, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return kUnlimited;
  return r.rlim_cur > static_cast<rlim_t>(kUnlimited) ? kUnlimited : static_cast<int64_t>(r.rlim_cur);
}

[[noreturn]] void over_budget(int64_t bytes, const std::string& what) {
  throw Error(ErrorCode::kInvalidArgument,
              what + " needs " + describe_bytes(bytes) + ", more than the memory budget allows (" +
                  describe_bytes(memory_in_use_bytes()) + " of " + describe_bytes(memory_budget_bytes()) +
                  " in use; raise it with --max-memory)");
}

void reserve_impl(int64_t bytes, const std::string& what) {
  if (bytes <= 0) return;
  const int64_t budget = memory_budget_bytes();
  int64_t used = g_in_use.load(std::memory_order_relaxed);
  do {
    if (bytes > budget - std::min(used, budget)) over_budget(bytes, what);
  } while (!g_in_use.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
}

}  // namespace

int64_t default_memory_budget_bytes() {
  const int64_t memory = std::min(physical_memory(), cgroup_memory());
  const int64_t limit = std::min(rlimit_bytes(RLIMIT_AS), rlimit_bytes(RLIMIT_DATA));
  const int64_t from_memory = memory == kUnlimited ? kUnlimited : memory / 4 * 3;
  const int64_t from_limit = limit == kUnlimited ? kUnlimited : limit / 2;
  return std::min(from_memory, from_limit);
}

int64_t memory_budget_bytes() {
  const int64_t set = g_budget.load(std::memory_order_relaxed);
  if (set > 0) return set;
  static const int64_t kDefault = default_memory_budget_bytes();
  return kDefault;
}

void set_memory_budget_bytes(int64_t bytes) { g_budget.store(bytes > 0 ? bytes : 0); }

int64_t memory_in_use_bytes() { return g_in_use.load(std::memory_order_relaxed); }

void check_memory(int64_t bytes, const std::string& what) {
  const int64_t budget = memory_budget_bytes();
  if (bytes > budget - std::min(memory_in_use_bytes(), budget)) over_budget(bytes, what);
}

void reserve_memory(int64_t bytes, const std::string& what) { reserve_impl(bytes, what); }

void release_memory(int64_t bytes) {
  if (bytes > 0) g_in_use.fetch_sub(bytes, std::memory_order_relaxed);
}

MemoryReservation::MemoryReservation(int64_t bytes, const std::string& what) {
  reserve_impl(bytes, what);
  bytes_ = std::max<int64_t>(bytes, 0);
}

MemoryReservation::~MemoryReservation() {
  if (bytes_ > 0) g_in_use.fetch_sub(bytes_, std::memory_order_relaxed);
}

MemoryReservation::MemoryReservation(MemoryReservation&& other) noexcept : bytes_(other.bytes_) { other.bytes_ = 0; }

MemoryReservation& MemoryReservation::operator=(MemoryReservation&& other) noexcept {
  if (this != &other) {
    if (bytes_ > 0) g_in_use.fetch_sub(bytes_, std::memory_order_relaxed);
    bytes_ = other.bytes_;
    other.bytes_ = 0;
  }
  return *this;
}

int64_t max_loop_iterations() { return g_max_loop.load(std::memory_order_relaxed); }

void set_max_loop_iterations(int64_t n) { g_max_loop.store(n > 0 ? n : kDefaultMaxLoopIterations); }

std::string describe_bytes(int64_t bytes) {
  char buf[64];
  const double v = static_cast<double>(bytes);
  if (bytes >= 1000000000) {
    std::snprintf(buf, sizeof buf, "%.2f GB", v / 1e9);
  } else if (bytes >= 1000000) {
    std::snprintf(buf, sizeof buf, "%.1f MB", v / 1e6);
  } else if (bytes >= 1000) {
    std::snprintf(buf, sizeof buf, "%.1f KB", v / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%lld B", static_cast<long long>(bytes));
  }
  return buf;
}

}  // namespace kvant
