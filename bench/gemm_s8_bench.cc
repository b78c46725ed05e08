// INT8 GEMM throughput per kernel family: GOPS = 2*M*N*K per iteration.
//   build/release/bench/kvant_bench_gemm_s8 --benchmark_counters_tabular=true
// "w8" cases use full-range int8 weights (the int16-widening AVX2 kernel),
// "w7" cases weights in [-64, 63] (--reduce-range; the vpmaddubsw kernel).
// ISAs this CPU lacks are skipped with a message.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/gemm_s8.h"

namespace kvant {
namespace {

void BM_GemmU8S8(benchmark::State& state, Isa isa, bool seven_bit) {
  const int M = static_cast<int>(state.range(0));
  const int N = static_cast<int>(state.range(1));
  const int K = static_cast<int>(state.range(2));
  if (!cpu_supports(cpu_features(), isa) || !isa_implemented(isa)) {
    state.SkipWithError("ISA not available on this CPU or build");
    return;
  }
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<uint8_t> a(static_cast<size_t>(M) * K);
  std::vector<int8_t> b(static_cast<size_t>(K) * N);
  for (auto& v : a) v = static_cast<uint8_t>(byte(rng));
  for (auto& v : b) v = static_cast<int8_t>(seven_bit ? byte(rng) / 2 - 64 : byte(rng) - 128);
  std::vector<int32_t> c(static_cast<size_t>(M) * N);
  const PackedB packed = pack_b_s8(b.data(), K, N, isa);
  if (isa == Isa::kAvx2 && packed.fits_7bit != seven_bit) {
    state.SkipWithError("weights did not select the intended kernel");
    return;
  }
  for (auto _ : state) {
    gemm_u8s8_s32(a.data(), K, M, 128, packed, c.data(), N, isa);
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
  b->Args({1, 768, 768});     // batch-1 BERT projection
  b->Args({1, 3072, 768});    // batch-1 BERT FFN up
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_GemmU8S8, ref_w8, Isa::kRef, false)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemmU8S8, avx2_w8, Isa::kAvx2, false)->Apply(shapes);
BENCHMARK_CAPTURE(BM_GemmU8S8, avx2_w7, Isa::kAvx2, true)->Apply(shapes);

}  // namespace
}  // namespace kvant

BENCHMARK_MAIN();
