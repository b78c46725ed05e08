// FP32 conv throughput (kernels/sconv.h) on ResNet-50 and MobileNetV2 layers,
// batch 1, once per ISA level that has an entry in the sgemm or depthwise
// kernel tables this CPU runs (BM_sconv/<layer>/<level>; the label names the
// entry). Reports GFLOPS (2 c_out (c_in / group) kh kw h_out w_out per
// iteration); BM_sgemm_packed_peak is the best sgemm entry on a large square
// problem, the kernel's ceiling for scale. threads = 1 runs without a pool,
// threads = 2 with a ThreadPool of 2. BM_sconv_silu/<layer>/fused:0|1: an
// EfficientNet-B0 layer followed by SiLU, as a second pass or in the store.
// BM_sconv_layout/<layer>/nhwc:0|1: SConv (NCHW) against SConvNhwc
// (kernels/sconv_nhwc.h) on the selected level, 1 thread, bias + relu.
// BM_pool_nhwc/<layer>/<entry>: the FP32 NHWC MaxPool / AveragePool table
// (kernels/pool_nhwc.h), every entry this CPU runs, 1 thread; reports the
// input's GB/s read once.
//
//   build/release/bench/kvant_bench_sconv --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernel_table.h"
#include "kernels/pool_nhwc.h"
#include "kernels/sconv.h"
#include "kernels/sconv_nhwc.h"
#include "kernels/sgemm_kernels.h"
#include "kernels/vmath.h"
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

void BM_sconv(benchmark::State& state, ConvShape s, kvant::Isa isa) {
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
  const kvant::SConv op(s, w.data(), b.data(), kvant::SgemmActivation::relu(), isa);
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

void BM_sconv_layout(benchmark::State& state, ConvShape s) {
  const bool nhwc = state.range(0) != 0;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(s.batch) * s.c_in * s.h_in * s.w_in);
  std::vector<float> w(static_cast<size_t>(s.c_out) * (s.c_in / s.group) * s.kh * s.kw);
  std::vector<float> b(static_cast<size_t>(s.c_out));
  std::vector<float> y(static_cast<size_t>(s.batch) * s.c_out * s.h_out * s.w_out);
  for (float& v : x) v = dist(rng);
  for (float& v : w) v = dist(rng) * 0.1f;
  for (float& v : b) v = dist(rng);
  const auto relu = kvant::SgemmActivation::relu();
  std::unique_ptr<kvant::SConv> a;
  std::unique_ptr<kvant::SConvNhwc> c;
  if (nhwc) {
    c = std::make_unique<kvant::SConvNhwc>(s, w.data(), b.data(), relu);
  } else {
    a = std::make_unique<kvant::SConv>(s, w.data(), b.data(), relu);
  }
  const size_t bytes = nhwc ? c->scratch_bytes(1) : a->scratch_bytes(1);
  void* scratch = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  for (auto _ : state) {
    if (nhwc) {
      c->run(x.data(), y.data(), scratch, nullptr);
    } else {
      a->run(x.data(), y.data(), scratch, nullptr);
    }
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  std::free(scratch);
  const double flops = 2.0 * s.batch * s.c_out * (s.c_in / s.group) * s.kh * s.kw * s.h_out * s.w_out;
  state.counters["GFLOPS"] = benchmark::Counter(flops * static_cast<double>(state.iterations()),
                                                benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  state.SetLabel(nhwc ? c->kernel_name() : a->kernel_name());
}

// Conv -> SiLU on the selected level, 1 thread: the SiLU in the conv's
// store (fused = 1) or as a second pass over the output (fused = 0, what
// the conv step and the silu_f32 step did before): the same results.
void BM_sconv_silu(benchmark::State& state, ConvShape s) {
  const bool fused = state.range(0) != 0;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(s.batch) * s.c_in * s.h_in * s.w_in);
  std::vector<float> w(static_cast<size_t>(s.c_out) * (s.c_in / s.group) * s.kh * s.kw);
  std::vector<float> y(static_cast<size_t>(s.batch) * s.c_out * s.h_out * s.w_out);
  for (float& v : x) v = dist(rng);
  for (float& v : w) v = dist(rng) * 0.1f;
  const kvant::SConv op(s, w.data(), nullptr, kvant::SgemmActivation::none(),
                        fused ? kvant::SConvEpilogue::kSilu : kvant::SConvEpilogue::kNone);
  void* scratch = std::aligned_alloc(64, (op.scratch_bytes(1) + 63) / 64 * 64);
  for (auto _ : state) {
    op.run(x.data(), y.data(), scratch, nullptr);
    if (!fused) kvant::silu_f32(y.data(), y.data(), static_cast<int64_t>(y.size()));
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  std::free(scratch);
  state.SetLabel(std::string(op.kernel_name()) + (fused ? "+silu" : " then silu_f32"));
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
const bool registered = [] {
  using kvant::Isa;
  const std::pair<const char*, ConvShape> layers[] = {
      // ResNet-50
      {"r50_stem_7x7s2_3_64_224", conv(3, 64, 224, 7, 2, 1)},
      {"r50_3x3_64_64_56", conv(64, 64, 56, 3, 1, 1)},
      {"r50_3x3s2_128_128_56", conv(128, 128, 56, 3, 2, 1)},
      {"r50_1x1s2_256_512_56", conv(256, 512, 56, 1, 2, 1)},
      {"r50_1x1_64_256_56", conv(64, 256, 56, 1, 1, 1)},
      {"r50_1x1_256_64_56", conv(256, 64, 56, 1, 1, 1)},
      {"r50_3x3_128_128_28", conv(128, 128, 28, 3, 1, 1)},
      {"r50_3x3_256_256_14", conv(256, 256, 14, 3, 1, 1)},
      {"r50_3x3_512_512_7", conv(512, 512, 7, 3, 1, 1)},
      {"r50_1x1_2048_512_7", conv(2048, 512, 7, 1, 1, 1)},
      // MobileNetV2
      {"mbv2_stem_3x3s2_3_32_224", conv(3, 32, 224, 3, 2, 1)},
      {"mbv2_dw3x3_32_112", conv(32, 32, 112, 3, 1, 32)},
      {"mbv2_1x1_16_96_112", conv(16, 96, 112, 1, 1, 1)},
      {"mbv2_dw3x3s2_96_112", conv(96, 96, 112, 3, 2, 96)},
      {"mbv2_dw3x3_144_56", conv(144, 144, 56, 3, 1, 144)},
      {"mbv2_dw3x3_192_28", conv(192, 192, 28, 3, 1, 192)},
      {"mbv2_dw3x3_576_14", conv(576, 576, 14, 3, 1, 576)},
      {"mbv2_dw3x3_960_7", conv(960, 960, 7, 3, 1, 960)},
      // EfficientNet-B0
      {"effb0_dw5x5_240_28", conv(240, 240, 28, 5, 1, 240)},
      {"effb0_dw5x5s2_672_14", conv(672, 672, 14, 5, 2, 672)},
  };
  // The levels of the entries the CPU runs, best first.
  std::vector<Isa> levels;
  auto add = [&](Isa isa) {
    if (!kvant::isa_allows(kvant::best_isa(kvant::cpu_features()), isa, kvant::cpu_features())) return;
    for (Isa l : levels)
      if (l == isa) return;
    levels.push_back(isa);
  };
  for (const kvant::SgemmKernel& k : kvant::sgemm_kernels()) add(k.isa);
  for (const kvant::DwConvKernel& k : kvant::dwconv_kernels()) add(k.isa);
  for (const auto& [name, shape] : layers) {
    for (Isa isa : levels) {
      const std::string full = std::string("BM_sconv/") + name + "/" + kvant::isa_name(isa);
      benchmark::RegisterBenchmark(full.c_str(), BM_sconv, shape, isa)
          ->ArgName("threads")
          ->Arg(1)
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark(full.c_str(), BM_sconv, shape, isa)
          ->ArgName("threads")
          ->Arg(2)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
    }
  }
  // NCHW against NHWC, MobileNetV2's and EfficientNet-B0's 1x1 shapes too.
  const std::pair<const char*, ConvShape> layout_layers[] = {
      {"r50_stem_7x7s2_3_64_224", conv(3, 64, 224, 7, 2, 1)}, {"r50_3x3_64_64_56", conv(64, 64, 56, 3, 1, 1)},
      {"r50_1x1_64_256_56", conv(64, 256, 56, 1, 1, 1)},      {"r50_1x1_256_64_56", conv(256, 64, 56, 1, 1, 1)},
      {"r50_1x1s2_256_512_56", conv(256, 512, 56, 1, 2, 1)},  {"r50_3x3_128_128_28", conv(128, 128, 28, 3, 1, 1)},
      {"r50_3x3_256_256_14", conv(256, 256, 14, 3, 1, 1)},    {"r50_3x3_512_512_7", conv(512, 512, 7, 3, 1, 1)},
      {"r50_1x1_2048_512_7", conv(2048, 512, 7, 1, 1, 1)},    {"mbv2_stem_3x3s2_3_32_224", conv(3, 32, 224, 3, 2, 1)},
      {"mbv2_1x1_32_16_112", conv(32, 16, 112, 1, 1, 1)},     {"mbv2_1x1_16_96_112", conv(16, 96, 112, 1, 1, 1)},
      {"mbv2_1x1_96_24_56", conv(96, 24, 56, 1, 1, 1)},       {"mbv2_1x1_24_144_56", conv(24, 144, 56, 1, 1, 1)},
      {"mbv2_1x1_144_24_56", conv(144, 24, 56, 1, 1, 1)},     {"mbv2_1x1_32_192_28", conv(32, 192, 28, 1, 1, 1)},
      {"mbv2_1x1_192_32_28", conv(192, 32, 28, 1, 1, 1)},     {"mbv2_1x1_64_384_14", conv(64, 384, 14, 1, 1, 1)},
      {"mbv2_1x1_384_64_14", conv(384, 64, 14, 1, 1, 1)},     {"mbv2_1x1_96_576_14", conv(96, 576, 14, 1, 1, 1)},
      {"mbv2_1x1_576_96_14", conv(576, 96, 14, 1, 1, 1)},     {"mbv2_1x1_160_960_7", conv(160, 960, 7, 1, 1, 1)},
      {"mbv2_1x1_960_160_7", conv(960, 160, 7, 1, 1, 1)},     {"mbv2_1x1_320_1280_7", conv(320, 1280, 7, 1, 1, 1)},
      {"mbv2_dw3x3_32_112", conv(32, 32, 112, 3, 1, 32)},     {"mbv2_dw3x3s2_96_112", conv(96, 96, 112, 3, 2, 96)},
      {"mbv2_dw3x3_144_56", conv(144, 144, 56, 3, 1, 144)},   {"mbv2_dw3x3_192_28", conv(192, 192, 28, 3, 1, 192)},
      {"mbv2_dw3x3_576_14", conv(576, 576, 14, 3, 1, 576)},   {"mbv2_dw3x3_960_7", conv(960, 960, 7, 3, 1, 960)},
      {"effb0_dw5x5_240_28", conv(240, 240, 28, 5, 1, 240)},  {"effb0_dw5x5s2_672_14", conv(672, 672, 14, 5, 2, 672)},
  };
  for (const auto& [name, shape] : layout_layers) {
    const std::string full = std::string("BM_sconv_layout/") + name;
    benchmark::RegisterBenchmark(full.c_str(), BM_sconv_layout, shape)
        ->ArgName("nhwc")
        ->Arg(0)
        ->Arg(1)
        ->Unit(benchmark::kMillisecond);
  }
  return true;
}();
BENCHMARK_CAPTURE(BM_sconv_silu, effb0_1x1_16_96_112, conv(16, 96, 112, 1, 1, 1))
    ->ArgName("fused")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_sconv_silu, effb0_dw3x3_32_112, conv(32, 32, 112, 3, 1, 32))
    ->ArgName("fused")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_sconv_silu, effb0_dw5x5_240_28, conv(240, 240, 28, 5, 1, 240))
    ->ArgName("fused")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_sgemm_packed_peak)->Unit(benchmark::kMillisecond);

kvant::PoolNhwcShape pool(int c, int h, int k, int stride, int pad, bool ceil) {
  kvant::PoolNhwcShape s;
  s.c = c;
  s.h_in = s.w_in = h;
  s.kh = s.kw = k;
  s.stride_h = s.stride_w = stride;
  s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = pad;
  const int span = h + 2 * pad - k;
  s.h_out = s.w_out = (ceil ? (span + stride - 1) / stride : span / stride) + 1;
  return s;
}

void BM_pool_nhwc(benchmark::State& state, kvant::PoolNhwcShape s, bool average, const kvant::PoolNhwcKernel* e) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(s.batch) * s.h_in * s.w_in * s.c);
  std::vector<float> y(static_cast<size_t>(s.batch) * s.h_out * s.w_out * s.c);
  for (float& v : x) v = dist(rng);
  const kvant::PoolNhwc op(s, average, false, e->isa);
  for (auto _ : state) {
    op.run(x.data(), y.data(), nullptr);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(op.kernel_name());
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(x.size() * sizeof(float)) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

const bool kPoolRegistered = [] {
  const std::pair<const char*, std::pair<kvant::PoolNhwcShape, bool>> layers[] = {
      {"r50_maxpool3x3s2_64_112", {pool(64, 112, 3, 2, 1, false), false}},
      {"googlenet_maxpool3x3s2ceil_192_56", {pool(192, 56, 3, 2, 0, true), false}},
      {"googlenet_maxpool3x3s1_480_14", {pool(480, 14, 3, 1, 1, false), false}},
      {"squeezenet_maxpool3x3s2ceil_128_55", {pool(128, 55, 3, 2, 0, true), false}},
      {"avgpool3x3s1_256_28", {pool(256, 28, 3, 1, 1, false), true}},
  };
  for (const auto& [name, spec] : layers) {
    for (const kvant::PoolNhwcKernel& e : kvant::pool_nhwc_kernels()) {
      if (!kvant::entry_runs(e, kvant::selected_isa(), kvant::cpu_features())) continue;
      const std::string full = std::string("BM_pool_nhwc/") + name + "/" + e.name;
      benchmark::RegisterBenchmark(full.c_str(), BM_pool_nhwc, spec.first, spec.second, &e)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
