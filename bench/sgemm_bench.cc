// FP32 GEMM throughput, single thread: C[M x N] = A[M x K] B[K x N], for every
// entry of the sgemm micro-kernel table this CPU runs (kernels/sgemm_kernels.h),
// to read against kvant_bench_peak's fma_f32 mixes (docs/kernels.md).
// Reports GFLOPS (2 M N K per iteration) with B packed per call (BM_sgemm)
// with B packed once (BM_sgemm_packed, how a compiled model runs a weight,
// A = activations read in place) and with A packed once (BM_sgemm_packed_a,
// an NCHW conv's weight); BM_sgemm_ref is the plain triple loop.
// oneDNN is not installed here (no libdnnl-dev), so there is no oneDNN column.
//
//   build/release/bench/kvant_bench_sgemm --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "kernels/sgemm.h"
#include "kernels/sgemm_kernels.h"

namespace kvant {
namespace {

struct Operands {
  std::vector<float> a, b, c;
  Operands(int M, int N, int K) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
    a.resize(static_cast<size_t>(M) * K);
    b.resize(static_cast<size_t>(K) * N);
    c.resize(static_cast<size_t>(M) * N);
    for (float& x : a) x = dist(rng);
    for (float& x : b) x = dist(rng);
  }
};

void set_gflops(benchmark::State& state, int M, int N, int K) {
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * M * N * K * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void BM_sgemm_ref(benchmark::State& state) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  Operands op(M, N, K);
  for (auto _ : state) {
    sgemm_ref(false, false, M, N, K, 1.0f, op.a.data(), K, op.b.data(), N, 0.0f, op.c.data(), N);
    benchmark::DoNotOptimize(op.c.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, M, N, K);
}

void BM_sgemm(benchmark::State& state, const SgemmKernel* kernel) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  Operands op(M, N, K);
  for (auto _ : state) {
    sgemm(*kernel, false, false, M, N, K, 1.0f, op.a.data(), K, op.b.data(), N, 0.0f, op.c.data(), N);
    benchmark::DoNotOptimize(op.c.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, M, N, K);
}

void BM_sgemm_packed(benchmark::State& state, const SgemmKernel* kernel) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  Operands op(M, N, K);
  const PackedSgemmB packed = sgemm_pack_b(*kernel, op.b.data(), K, N, false);
  for (auto _ : state) {
    sgemm_packed(M, N, K, op.a.data(), K, packed, op.c.data(), N, nullptr, SgemmActivation::none());
    benchmark::DoNotOptimize(op.c.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, M, N, K);
}

// A packed once (a conv weight in NCHW: sgemm_pack_a) and B row-major,
// packed per call in 256-column tiles (sgemm_packed_a): the same product as
// BM_sgemm_packed with the roles of the operands swapped, to compare the two
// ways a conv can run its weight.
void BM_sgemm_packed_a(benchmark::State& state, const SgemmKernel* kernel) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  Operands op(M, N, K);
  const PackedSgemmA packed = sgemm_pack_a(*kernel, op.a.data(), M, K);
  for (auto _ : state) {
    sgemm_packed_a(M, N, K, packed, op.b.data(), N, op.c.data(), N, nullptr, SgemmActivation::none());
    benchmark::DoNotOptimize(op.c.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, M, N, K);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K"});
  b->Args({1, 1024, 1024});     // GEMV: batch-1 linear layer
  b->Args({64, 1024, 1024});    // small-batch linear layer
  b->Args({128, 768, 768});     // BERT-base projection, 128 tokens
  b->Args({128, 3072, 768});    // BERT-base FFN up, 128 tokens
  b->Args({256, 256, 2304});    // ResNet 3x3 conv (16x16, 256 channels) as GEMM
  b->Args({3136, 64, 576});     // ResNet 3x3 conv (56x56, 64 channels), NHWC as GEMM
  b->Args({3136, 256, 64});     // ResNet 1x1 conv 64 -> 256 at 56x56, NHWC
  b->Args({64, 3136, 576});     // the same 3x3 conv with the weight as A (NCHW)
  b->Args({256, 3136, 64});     // the same 1x1 conv with the weight as A (NCHW)
  b->Args({1024, 1024, 1024});  // square
  b->Unit(benchmark::kMillisecond);
}

// One benchmark per table entry the CPU supports.
const bool registered = [] {
  benchmark::RegisterBenchmark("BM_sgemm_ref", BM_sgemm_ref)->Apply(shapes)->MinTime(0.2);
  for (const SgemmKernel& kernel : sgemm_kernels()) {
    if (!isa_allows(best_isa(cpu_features()), kernel.isa, cpu_features())) continue;
    benchmark::RegisterBenchmark((std::string("BM_sgemm/") + kernel.name).c_str(), BM_sgemm, &kernel)->Apply(shapes);
    benchmark::RegisterBenchmark((std::string("BM_sgemm_packed/") + kernel.name).c_str(), BM_sgemm_packed, &kernel)
        ->Apply(shapes);
    benchmark::RegisterBenchmark((std::string("BM_sgemm_packed_a/") + kernel.name).c_str(), BM_sgemm_packed_a, &kernel)
        ->Apply(shapes);
  }
  return true;
}();

}  // namespace
}  // namespace kvant

BENCHMARK_MAIN();
