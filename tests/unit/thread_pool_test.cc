#include "runtime/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>
#include <vector>

#include "kvant/status.h"

namespace kvant {
namespace {

TEST(ThreadPool, CoversEveryIndexOnceForAnySizeAndThreadCount) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 7, 64, 1001}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> calls{0};
      pool.parallel_for(n, [&](int64_t begin, int64_t end) {
        ++calls;
        for (int64_t i = begin; i < end; ++i) ++hits[static_cast<size_t>(i)];
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n=" << n << " i=" << i;
      EXPECT_LE(calls.load(), threads);
      if (n > 0) {
        EXPECT_EQ(calls.load(), std::min<int64_t>(n, threads));
      }
    }
  }
}

TEST(ThreadPool, ManyBackToBackJobs) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int job = 0; job < 2000; ++job) {
    pool.parallel_for(10, [&](int64_t begin, int64_t end) { total += end - begin; });
  }
  EXPECT_EQ(total.load(), 20000);
}

TEST(ThreadPool, ChunkRangeSplitsEvenly) {
  int64_t begin = 0, end = 0;
  chunk_range(10, 3, 0, begin, end);
  EXPECT_EQ(begin, 0);
  EXPECT_EQ(end, 4);
  chunk_range(10, 3, 1, begin, end);
  EXPECT_EQ(begin, 4);
  EXPECT_EQ(end, 7);
  chunk_range(10, 3, 2, begin, end);
  EXPECT_EQ(begin, 7);
  EXPECT_EQ(end, 10);
}

TEST(ThreadPool, RejectsZeroThreads) { EXPECT_THROW(ThreadPool pool(0), Error); }

TEST(ThreadPool, NullPoolRunsInline) {
  int64_t seen = -1;
  parallel_for(nullptr, 5, [&](int64_t begin, int64_t end) { seen = end - begin; });
  EXPECT_EQ(seen, 5);
}

}  // namespace
}  // namespace kvant
