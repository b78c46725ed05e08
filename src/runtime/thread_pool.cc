#include "runtime/thread_pool.h"

#include <algorithm>

#include "kvant/status.h"

namespace kvant {

ThreadPool::ThreadPool(int threads) {
  if (threads < 1)
    throw Error(ErrorCode::kInvalidArgument, "ThreadPool: threads must be >= 1, got " + std::to_string(threads));
  workers_.reserve(static_cast<size_t>(threads - 1));
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  start_.notify_all();
  for (auto& worker : workers_) worker.join();
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
