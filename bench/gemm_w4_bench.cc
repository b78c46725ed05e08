// 4-bit-weight GEMM (kernels/gemm_w4.h) at LLM shapes, one thread, against
// the FP32 path a compiled model takes for the same layer (sgemm_packed, B
// packed once) and the int8-weight GEMV (gemv_w8, one call per row of x):
//   BM_w4a32/<entry>/M/N/K   W4A32 (FP32 activations)
//   BM_w4a8/<entry>/M/N/K    W4A8 (activations quantized per call, included)
//   BM_sgemm/M/N/K           FP32 weights, the default sgemm entry
//   BM_gemv_w8/M/N/K         int8 weights, the default gemv_w8 entry
// Group size 32 (the setting of `kvant quantize --group-size 32`). Counter
// "wGB/s": weight bytes streamed per second (4-bit codes + scales).
//   build/release/bench/kvant_bench_gemm_w4 --benchmark_filter='M:1/N:4096/K:4096'
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "kernels/gemm_w4.h"
#include "kernels/gemm_w4_kernels.h"
#include "kernels/gemv_w8.h"
#include "kernels/sgemm.h"

namespace kvant {
namespace {

constexpr int kBlock = 32;

W4Matrix random_w4(int n, int k) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> code(0, 15);
  return w4_pack(
      n, k, kBlock, [&](int, int) { return code(rng); }, [](int, int) { return 0.01f; }, [](int, int) { return 8; });
}

std::vector<float> random_x(size_t count) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(count);
  for (float& v : x) v = normal(rng);
  return x;
}

void BM_w4a32(benchmark::State& state, const GemmW4A32Kernel* kernel) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  const W4Matrix w = random_w4(N, K);
  const std::vector<float> x = random_x(static_cast<size_t>(M) * K);
  std::vector<float> y(static_cast<size_t>(M) * N);
  for (auto _ : state) {
    gemm_w4a32(*kernel, w, x.data(), K, M, y.data(), N, nullptr, 0, N);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["wGB/s"] = benchmark::Counter(static_cast<double>(w.bytes()) * static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate);
}

void BM_w4a8(benchmark::State& state, const GemmW4A8Kernel* kernel) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  W4Matrix w = random_w4(N, K);
  w4_interleave(w, false);  // the layout a compiled W4A8 step holds
  const std::vector<float> x = random_x(static_cast<size_t>(M) * K);
  std::vector<float> y(static_cast<size_t>(M) * N);
  std::vector<int8_t> xq(static_cast<size_t>(M) * static_cast<size_t>(w.k_padded));
  std::vector<float> xs(static_cast<size_t>(M) * static_cast<size_t>(w.k_blocks));
  std::vector<int32_t> xsum(xs.size());
  for (auto _ : state) {
    w4_quantize_x(w, x.data(), K, M, xq.data(), xs.data(), xsum.data());
    gemm_w4a8(*kernel, w, xq.data(), xs.data(), xsum.data(), M, y.data(), N, nullptr, 0, N);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["wGB/s"] = benchmark::Counter(static_cast<double>(w.bytes()) * static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate);
}

void BM_sgemm(benchmark::State& state) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  const std::vector<float> b = random_x(static_cast<size_t>(K) * N);
  const PackedSgemmB packed = sgemm_pack_b(b.data(), K, N, false);
  const std::vector<float> x = random_x(static_cast<size_t>(M) * K);
  std::vector<float> y(static_cast<size_t>(M) * N);
  for (auto _ : state) {
    sgemm_packed(M, N, K, x.data(), K, packed, y.data(), N, nullptr, SgemmActivation::none());
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["wGB/s"] =
      benchmark::Counter(4.0 * K * N * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_gemv_w8(benchmark::State& state) {
  const int M = static_cast<int>(state.range(0)), N = static_cast<int>(state.range(1)),
            K = static_cast<int>(state.range(2));
  W8Matrix w;
  w.n = N;
  w.k = K;
  std::mt19937 rng(9);
  std::uniform_int_distribution<int> code(-127, 127);
  w.w.resize(static_cast<size_t>(N) * K);
  for (int8_t& v : w.w) v = static_cast<int8_t>(code(rng));
  w.scale.assign(static_cast<size_t>(N), 0.01f);
  const std::vector<float> x = random_x(static_cast<size_t>(M) * K);
  std::vector<float> y(static_cast<size_t>(M) * N);
  for (auto _ : state) {
    gemv_w8(w, x.data(), K, M, y.data(), N, false);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["wGB/s"] = benchmark::Counter(static_cast<double>(K) * N * static_cast<double>(state.iterations()),
                                               benchmark::Counter::kIsRate);
}

void shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"M", "N", "K"});
  for (int m : {1, 32}) {
    b->Args({m, 4096, 4096});   // LLaMA-7B attention projection
    b->Args({m, 11008, 4096});  // LLaMA-7B FFN up / gate
    b->Args({m, 4096, 11008});  // LLaMA-7B FFN down
  }
  b->Unit(benchmark::kMillisecond);
}

// The generic entries (the references) are left out: minutes per shape.
bool runs(Isa isa) { return isa != Isa::kRef && isa_allows(best_isa(cpu_features()), isa, cpu_features()); }

const bool registered = [] {
  for (const GemmW4A32Kernel& k : gemm_w4a32_kernels()) {
    if (runs(k.isa)) shapes(benchmark::RegisterBenchmark((std::string("BM_w4a32/") + k.name).c_str(), BM_w4a32, &k));
  }
  for (const GemmW4A8Kernel& k : gemm_w4a8_kernels()) {
    if (runs(k.isa)) shapes(benchmark::RegisterBenchmark((std::string("BM_w4a8/") + k.name).c_str(), BM_w4a8, &k));
  }
  shapes(benchmark::RegisterBenchmark("BM_sgemm", BM_sgemm));
  shapes(benchmark::RegisterBenchmark("BM_gemv_w8", BM_gemv_w8));
  return true;
}();

}  // namespace
}  // namespace kvant

BENCHMARK_MAIN();
