#include "runtime/thread_pool.h"

#include <algorithm>

#include "kvant/status.h"

namespace kvant {

int max_pool_threads() {
  const int hardware = static_cast<int>(std::thread::hardware_concurrency());
  return std::clamp(4 * std::max(hardware, 1), 4, 256);
}

ThreadPool::ThreadPool(int threads) {
  if (threads < 1) {
    throw Error(ErrorCode::kInvalidArgument, "threads must be at least 1, got " + std::to_string(threads));
  }
  if (threads > max_pool_threads()) {
    throw Error(ErrorCode::kInvalidArgument, "threads must be at most " + std::to_string(max_pool_threads()) +
                                                 " (4 x the " + std::to_string(std::thread::hardware_concurrency()) +
                                                 " hardware threads), got " + std::to_string(threads));
  }
  try {
    workers_.reserve(static_cast<size_t>(threads - 1));
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
  } catch (const std::exception& e) {
    const size_t started = workers_.size();
    stop_workers();
    throw Error(ErrorCode::kInvalidArgument, "cannot start thread " + std::to_string(started + 2) + " of " +
                                                 std::to_string(threads) + " (" + e.what() + "); use fewer --threads");
  }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() noexcept {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& worker : workers_) {
    if (worker.joinable()) worker.join();
  }
  workers_.clear();
}

void ThreadPool::run_chunks(int64_t n, ChunkFn fn, void* context) {
  const int chunks = static_cast<int>(std::min<int64_t>(n, size()));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    n_ = n;
    chunks_ = chunks;
    fn_ = fn;
    context_ = context;
    pending_ = chunks - 1;
    ++generation_;
  }
  start_.notify_all();
  int64_t begin = 0, end = 0;
  chunk_range(n, chunks, 0, begin, end);
  fn(context, begin, end);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return pending_ == 0; });
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  for (;;) {
    int64_t n = 0;
    int chunks = 0;
    ChunkFn fn = nullptr;
    void* context = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      start_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      n = n_;
      chunks = chunks_;
      fn = fn_;
      context = context_;
    }
    if (index < chunks) {
      int64_t begin = 0, end = 0;
      chunk_range(n, chunks, index, begin, end);
      fn(context, begin, end);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_one();
    }
  }
}

}  // namespace kvant
