// A fixed pool of worker threads for the compiled kernels (DESIGN.md §3).
//
// parallel_for(n, fn) splits [0, n) into at most size() contiguous chunks of
// near-equal length and calls fn(begin, end) once per chunk, the calling
// thread taking the first one. The split depends only on n and size(), and a
// kernel computes each output element the same way whatever chunk holds it,
// so results are identical for any thread count.
//
// Nothing is allocated per call: the job is a function pointer plus a context
// pointer, handed to the workers under a mutex. Calls must not nest (a kernel
// running inside parallel_for runs its own loops serially) and must come from
// one thread at a time.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace kvant {

// The most threads a pool may have: 4 x the hardware threads, at least 4 and
// at most 256. More only adds switching (and, far beyond it, thread creation
// fails, e.g. --threads 1000 under a process limit).
int max_pool_threads();

class ThreadPool {
 public:
  // 1 <= threads <= max_pool_threads(); threads - 1 workers are started.
  // Throws Error outside that range, or when a worker cannot be started (the
  // workers already started are stopped and joined first: nothing waits on
  // a condition variable that is being destroyed).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  template <typename Fn>
  void parallel_for(int64_t n, Fn&& fn) {
    if (n <= 0) return;
    if (workers_.empty() || n == 1) {
      fn(int64_t{0}, n);
      return;
    }
    using F = std::remove_reference_t<Fn>;
    run_chunks(n, &call<F>, const_cast<void*>(static_cast<const void*>(&fn)));
  }

 private:
  using ChunkFn = void (*)(void* context, int64_t begin, int64_t end);
  template <typename Fn>
  static void call(void* context, int64_t begin, int64_t end) {
    (*static_cast<Fn*>(context))(begin, end);  // Fn may be const
  }
  void run_chunks(int64_t n, ChunkFn fn, void* context);
  void worker_loop(int index);
  void stop_workers() noexcept;

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable start_;
  std::condition_variable done_;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  int64_t n_ = 0;
  int chunks_ = 0;
  ChunkFn fn_ = nullptr;
  void* context_ = nullptr;
};

// Runs fn(begin, end) on `pool` when it is not null, else fn(0, n) inline.
template <typename Fn>
void parallel_for(ThreadPool* pool, int64_t n, Fn&& fn) {
  if (pool == nullptr) {
    if (n > 0) fn(int64_t{0}, n);
  } else {
    pool->parallel_for(n, fn);
  }
}

// [begin, end) of chunk `index` when [0, n) is split into `chunks` parts.
inline void chunk_range(int64_t n, int chunks, int index, int64_t& begin, int64_t& end) {
  const int64_t base = n / chunks;
  const int64_t extra = n % chunks;
  begin = index * base + (index < extra ? index : extra);
  end = begin + base + (index < extra ? 1 : 0);
}

}  // namespace kvant
