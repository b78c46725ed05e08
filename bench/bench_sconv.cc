// FP32 conv throughput (kernels/sconv.h) on ResNet-50 and MobileNetV2 layers,
// batch 1. Reports GFLOPS (2 c_out (c_in / group) kh kw h_out w_out per
// iteration) and the kernel that ran; BM_sgemm_packed_peak is the AVX2 sgemm
// on a large square problem, the kernel's ceiling for scale. threads = 1 runs
// without a pool, threads = 2 with a ThreadPool of 2.
//
//   build/release/bench/kvant_bench_sconv --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <vector>

#include "kernels/sconv.h"
#include "runtime/thread_pool.h"

namespace {

using kvant::ConvShape;

ConvShape conv(int c_in, int c_out, int h, int k, int stride, int group) {
  ConvShape s;
  s.c_in = c_in;
  s.c_out = c_out;
  s.h_in = s.w_in = h;
  s.kh = s.kw = k;
  s.stride_h = s.stride_w = stride;
  s.pad_top = s.pad_left = k / 2;
  s.h_out = s.w_out = (h + 2 * (k / 2) - k) / stride + 1;
  s.group = group;
  return s;
}

void BM_sconv(benchmark::State& state, ConvShape s) {
  const int threads = static_cast<int>(state.range(0));
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(s.batch) * s.c_in * s.h_in * s.w_in);
  std::vector<float> w(static_cast<size_t>(s.c_out) * (s.c_in / s.group) * s.kh * s.kw);
  std::vector<float> b(static_cast<size_t>(s.c_out));
  std::vector<float> y(static_cast<size_t>(s.batch) * s.c_out * s.h_out * s.w_out);
  for (float& v : x) v = dist(rng);
  for (float& v : w) v = dist(rng) * 0.1f;
  for (float& v : b) v = dist(rng);
  const kvant::SConv op(s, w.data(), b.data(), kvant::SgemmActivation::relu());
  std::unique_ptr<kvant::ThreadPool> pool;
  if (threads > 1) pool = std::make_unique<kvant::ThreadPool>(threads);
  void* scratch = std::aligned_alloc(64, (op.scratch_bytes(threads) + 63) / 64 * 64);
  for (auto _ : state) {
    op.run(x.data(), y.data(), scratch, pool.get());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  std::free(scratch);
  const double flops = 2.0 * s.batch * s.c_out * (s.c_in / s.group) * s.kh * s.kw * s.h_out * s.w_out;
  state.counters["GFLOPS"] = benchmark::Counter(flops * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(op.kernel_name());
}

void BM_sgemm_packed_peak(benchmark::State& state) {
  const int n = 1024;
  std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(static_cast<size_t>(n) * n, 0.25f), c(a.size());
  const kvant::PackedSgemmB packed = kvant::sgemm_pack_b(b.data(), n, n, false);
  for (auto _ : state) {
    kvant::sgemm_packed(n, n, n, a.data(), n, packed, c.data(), n, nullptr, kvant::SgemmActivation::none());
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * n * n * n * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

// One thread: GFLOPS from CPU time (robust on a shared machine); two threads:
// from wall time.
void threads(benchmark::internal::Benchmark* b) { b->ArgName("threads")->Arg(1)->Unit(benchmark::kMillisecond); }
void threads2(benchmark::internal::Benchmark* b) {
  b->ArgName("threads")->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
}
#define SCONV_BENCH(name, shape)                            \
  BENCHMARK_CAPTURE(BM_sconv, name, shape)->Apply(threads); \
  BENCHMARK_CAPTURE(BM_sconv, name, shape)->Apply(threads2)

// ResNet-50
SCONV_BENCH(r50_stem_7x7s2_3_64_224, conv(3, 64, 224, 7, 2, 1));
SCONV_BENCH(r50_3x3_64_64_56, conv(64, 64, 56, 3, 1, 1));
SCONV_BENCH(r50_1x1_64_256_56, conv(64, 256, 56, 1, 1, 1));
SCONV_BENCH(r50_1x1_256_64_56, conv(256, 64, 56, 1, 1, 1));
SCONV_BENCH(r50_3x3_512_512_7, conv(512, 512, 7, 3, 1, 1));
// MobileNetV2
SCONV_BENCH(mbv2_dw3x3_32_112, conv(32, 32, 112, 3, 1, 32));
SCONV_BENCH(mbv2_1x1_16_96_112, conv(16, 96, 112, 1, 1, 1));
SCONV_BENCH(mbv2_dw3x3s2_96_112, conv(96, 96, 112, 3, 2, 96));
SCONV_BENCH(mbv2_dw3x3_576_14, conv(576, 576, 14, 3, 1, 576));
BENCHMARK(BM_sgemm_packed_peak)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
