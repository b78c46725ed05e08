// FP32 GEMM throughput, single thread: C[M x N] = A[M x K] B[K x N].
// Reports GFLOPS (2 M N K per iteration) for kvant's reference, the AVX2 path
// with B packed per call (sgemm) and with B packed once (sgemm_packed, how a
// compiled model runs a weight). oneDNN is not installed here (no
// libdnnl-dev), so there is no oneDNN column.
//
//   build/release/bench/kvant_bench_sgemm --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "kernels/sgemm.h"

namespace {

using kvant::SgemmPath;

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

void BM_sgemm(benchmark::State& state, SgemmPath path) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  if (!kvant::sgemm_path_supported(path)) return state.SkipWithError("path not supported on this CPU");
  Operands op(M, N, K);
  for (auto _ : state) {
    kvant::sgemm(path, false, false, M, N, K, 1.0f, op.a.data(), K, op.b.data(), N, 0.0f, op.c.data(), N);
    benchmark::DoNotOptimize(op.c.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, M, N, K);
}

void BM_sgemm_packed(benchmark::State& state, SgemmPath path) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  if (!kvant::sgemm_path_supported(path)) return state.SkipWithError("path not supported on this CPU");
  Operands op(M, N, K);
  const kvant::PackedSgemmB packed = kvant::sgemm_pack_b(op.b.data(), K, N, false);
  for (auto _ : state) {
    kvant::sgemm_packed(path, M, N, K, op.a.data(), K, packed, op.c.data(), N, nullptr, kvant::SgemmActivation::none());
    benchmark::DoNotOptimize(op.c.data());
    benchmark::ClobberMemory();
  }
  set_gflops(state, M, N, K);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K"});
  b->Args({1, 1024, 1024});
  b->Args({64, 1024, 1024});
  b->Args({256, 256, 2304});
  b->Args({3136, 64, 576});
  b->Args({1024, 1024, 1024});
  b->Unit(benchmark::kMillisecond);
}

BENCHMARK_CAPTURE(BM_sgemm, ref, SgemmPath::kRef)->Apply(shapes)->MinTime(0.2);
BENCHMARK_CAPTURE(BM_sgemm, generic, SgemmPath::kGeneric)->Apply(shapes);
BENCHMARK_CAPTURE(BM_sgemm, avx2, SgemmPath::kAvx2)->Apply(shapes);
BENCHMARK_CAPTURE(BM_sgemm_packed, avx2, SgemmPath::kAvx2)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
