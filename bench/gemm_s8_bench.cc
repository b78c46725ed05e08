// INT8 GEMM throughput of every entry of the qgemm kernel table that this
// CPU runs (kernels/gemm_s8_kernels.h): GOPS = 2*M*N*K per iteration, to read
// against kvant_bench_peak's instruction-mix peaks.
//   build/release/bench/kvant_bench_gemm_s8 --benchmark_counters_tabular=true
// Weights are full-range int8, except for entries that need 7-bit weights
// (--reduce-range), which get [-64, 63]. Entries the CPU lacks are not listed.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/gemm_s8.h"
#include "kernels/gemm_s8_kernels.h"

namespace kvant {
namespace {

void BM_GemmU8S8(benchmark::State& state, const QGemmKernel* kernel) {
  const int M = static_cast<int>(state.range(0));
  const int N = static_cast<int>(state.range(1));
  const int K = static_cast<int>(state.range(2));
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> a(static_cast<size_t>(M) * K);
  std::vector<int8_t> b(static_cast<size_t>(K) * N);
  for (auto& v : a) v = static_cast<uint8_t>(byte(rng));
  for (auto& v : b) v = static_cast<int8_t>(kernel->needs_7bit ? byte(rng) / 2 - 64 : byte(rng) - 128);
  std::vector<int32_t> c(static_cast<size_t>(M) * N);
  const PackedB packed = pack_b_s8(*kernel, b.data(), K, N);
  for (auto _ : state) {
    gemm_u8s8_s32(a.data(), K, M, 128, packed, c.data(), N);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  state.counters["GOPS"] =
      benchmark::Counter(2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K"});
  b->Args({1, 1024, 1024});   // GEMV: batch-1 linear layer
  b->Args({64, 1024, 1024});  // small-batch linear layer
  b->Args({196, 256, 2304});  // ResNet 3x3 conv (14x14, 256 channels) as GEMM
  b->Args({3136, 64, 576});   // ResNet 3x3 conv (56x56, 64 channels) as GEMM
  b->Args({128, 768, 768});   // BERT-base projection, 128 tokens
  b->Args({128, 3072, 768});  // BERT-base FFN up, 128 tokens
  b->Args({128, 768, 3072});  // BERT-base FFN down, 128 tokens
  b->Args({1, 768, 768});     // batch-1 BERT projection
  b->Args({1, 3072, 768});    // batch-1 BERT FFN up
  b->Unit(benchmark::kMillisecond);
}

// One benchmark per table entry the CPU supports.
const bool registered = [] {
  for (const QGemmKernel& kernel : qgemm_kernels()) {
    if (!isa_allows(best_isa(cpu_features()), kernel.isa, cpu_features())) continue;
    benchmark::RegisterBenchmark((std::string("BM_GemmU8S8/") + kernel.name).c_str(), BM_GemmU8S8, &kernel)
        ->Apply(shapes);
  }
  return true;
}();

}  // namespace
}  // namespace kvant

BENCHMARK_MAIN();
