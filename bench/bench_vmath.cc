// Throughput of every entry of the vector tables this CPU runs, one thread:
//   BM_vmath/<fn>/<entry>   elements per second over 64 Ki floats (L2)
//   BM_gemv_w8/<entry>      GFLOPS of the LSTM 2x512 recurrence, y[2048] = W8[2048 x 512] x (1 MiB of weights)
//   BM_qadd/<entry>         elements per second, uint8, 64 Ki elements
//   build/release/bench/kvant_bench_vmath
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "kernels/gemv_w8.h"
#include "kernels/gemv_w8_kernels.h"
#include "kernels/qadd.h"
#include "kernels/qadd_kernels.h"
#include "kernels/vmath_kernels.h"

namespace kvant {
namespace {

constexpr int64_t kN = 64 * 1024;

std::vector<float> inputs(float lo, float hi) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> x(kN);
  for (float& v : x) v = dist(rng);
  return x;
}

void BM_vmath(benchmark::State& state, const VMathKernel* k, int fn) {
  const std::vector<float> x = inputs(-8.0f, 8.0f);
  std::vector<float> y(kN);
  for (auto _ : state) {
    switch (fn) {
      case 0: k->exp(x.data(), y.data(), kN); break;
      case 1: k->erf(x.data(), y.data(), kN); break;
      case 2: k->sigmoid(x.data(), y.data(), kN); break;
      case 3: k->tanh(x.data(), y.data(), kN); break;
      case 4: k->silu(x.data(), y.data(), kN); break;
      case 5: k->gelu_erf(x.data(), y.data(), kN, 1.41421354f, 0.5f); break;
      default: benchmark::DoNotOptimize(k->exp_shifted_sum(x.data(), 8.0f, y.data(), kN)); break;
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kN);
}

void BM_gemv_w8(benchmark::State& state, const GemvW8Kernel* k) {
  W8Matrix w;
  w.n = 2048;
  w.k = 512;
  std::mt19937 rng(5);
  for (int i = 0; i < w.n * w.k; ++i) w.w.push_back(static_cast<int8_t>(rng() % 255 - 127));
  w.scale.assign(static_cast<size_t>(w.n), 0.01f);
  std::vector<float> x(static_cast<size_t>(w.k), 0.5f), y(static_cast<size_t>(w.n));
  for (auto _ : state) {
    gemv_w8(*k, w, x.data(), w.k, 1, y.data(), w.n, false);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOPS"] = benchmark::Counter(2.0 * w.n * w.k * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

void BM_qadd(benchmark::State& state, const QAddKernel* k) {
  std::vector<uint8_t> a(kN), b(kN), y(kN);
  std::mt19937 rng(7);
  for (int64_t i = 0; i < kN; ++i) {
    a[static_cast<size_t>(i)] = static_cast<uint8_t>(rng());
    b[static_cast<size_t>(i)] = static_cast<uint8_t>(rng());
  }
  QAddParams p;
  p.a_scale = 0.02f;
  p.b_scale = 0.03f;
  p.y_scale = 0.05f;
  p.a_zp = 120;
  p.b_zp = 130;
  p.y_zp = 128;
  for (auto _ : state) {
    qadd_u8(*k, a.data(), b.data(), y.data(), kN, p);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kN);
}

bool runs(Isa isa) { return isa_allows(best_isa(cpu_features()), isa, cpu_features()); }

const bool registered = [] {
  const char* fns[] = {"exp", "erf", "sigmoid", "tanh", "silu", "gelu_erf", "exp_shifted_sum"};
  for (int fn = 0; fn < 7; ++fn) {
    for (const VMathKernel& k : vmath_kernels()) {
      if (!runs(k.isa)) continue;
      benchmark::RegisterBenchmark((std::string("BM_vmath/") + fns[fn] + "/" + k.name).c_str(), BM_vmath, &k, fn);
    }
  }
  for (const GemvW8Kernel& k : gemv_w8_kernels()) {
    if (runs(k.isa)) benchmark::RegisterBenchmark((std::string("BM_gemv_w8/") + k.name).c_str(), BM_gemv_w8, &k);
  }
  for (const QAddKernel& k : qadd_kernels()) {
    if (runs(k.isa)) benchmark::RegisterBenchmark((std::string("BM_qadd/") + k.name).c_str(), BM_qadd, &k);
  }
  return true;
}();

}  // namespace
}  // namespace kvant

BENCHMARK_MAIN();
