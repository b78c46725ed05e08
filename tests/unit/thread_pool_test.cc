#include "runtime/thread_pool.h"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
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

// Issue 15, defect 7: --threads 1000 deadlocked. Above the cap is an error
// naming it, not an attempt.
TEST(ThreadPool, RejectsMoreThanTheCap) {
  EXPECT_GE(max_pool_threads(), 4);
  EXPECT_LE(max_pool_threads(), 256);
  try {
    ThreadPool pool(1000);
    ADD_FAILURE() << "1000 threads accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("at most " + std::to_string(max_pool_threads())), std::string::npos)
        << e.what();
  }
}

// Issue 15, defect 7: when a worker could not be started, the constructor
// threw while the started workers waited on the condition variable, and
// destroying it blocked forever. Here thread creation fails for real (an
// address-space limit leaves room for two thread stacks) in a child process
// that an alarm kills if it hangs; the pool must throw a clear Error.
TEST(ThreadPool, ConstructorFailingMidwayThrowsInsteadOfHanging) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto child = [] {
    alarm(20);
    long pages = 0;
    std::ifstream("/proc/self/statm") >> pages;
    const rlim_t used = static_cast<rlim_t>(pages) * static_cast<rlim_t>(sysconf(_SC_PAGESIZE));
    const rlimit limit{used + (rlim_t{20} << 20), used + (rlim_t{20} << 20)};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(3);
    try {
      ThreadPool pool(max_pool_threads());
      _exit(2);  // every thread started: the limit did not bite
    } catch (const Error& e) {
      _exit(std::string(e.what()).find("cannot start thread") != std::string::npos ? 0 : 4);
    } catch (...) {
      _exit(5);
    }
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

TEST(ThreadPool, NullPoolRunsInline) {
  int64_t seen = -1;
  parallel_for(nullptr, 5, [&](int64_t begin, int64_t end) { seen = end - begin; });
  EXPECT_EQ(seen, 5);
}

}  // namespace
}  // namespace kvant
