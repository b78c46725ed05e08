// INT8 convolution (kernels/qconv.h) throughput on ResNet-50 and MobileNetV2
// layers: GOPS = 2 * c_out * h_out * w_out * (c_in / group) * kh * kw per run.
//   build/release/bench/kvant_bench_qconv --benchmark_counters_tabular=true
// Arguments: layer index (see kLayers), threads. One benchmark per ISA level
// this CPU runs (each picks its own path and GEMM entry; the label names it),
// with NCHW activations and, as "<isa>_nhwc", with NHWC ones (what the
// compiled runtime gives quantized conv chains).
// avx2_w7: the same GEMM layers with 7-bit weights (w in [-64, 64], as from
// `kvant quantize --reduce-range`), which take the vpmaddubsw u8s7 path.
// GOPS: from CPU time with one thread, from wall time with two (real_time).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/qconv.h"
#include "runtime/thread_pool.h"

namespace kvant {
namespace {

struct Layer {
  const char* name;
  int c_in, h, w, c_out, k, stride, pad, group;
};

constexpr Layer kLayers[] = {
    {"resnet50_56x56x64_3x3", 64, 56, 56, 64, 3, 1, 1, 1},
    {"resnet50_56x56_1x1_64to256", 64, 56, 56, 256, 1, 1, 0, 1},
    {"resnet50_7x7x512_3x3", 512, 7, 7, 512, 3, 1, 1, 1},
    {"mobilenetv2_112x112x32_dw3x3", 32, 112, 112, 32, 3, 1, 1, 32},
    {"mobilenetv2_14x14x576_dw3x3", 576, 14, 14, 576, 3, 1, 1, 576},
};

void BM_QConv(benchmark::State& state, Isa isa, bool seven_bit, bool nhwc) {
  const Layer& l = kLayers[state.range(0)];
  const int threads = static_cast<int>(state.range(1));
  if (!cpu_supports(cpu_features(), isa)) {
    state.SkipWithError("ISA not available on this CPU");
    return;
  }
  QConvParams p;
  ConvShape& s = p.shape;
  s.c_in = l.c_in;
  s.h_in = l.h;
  s.w_in = l.w;
  s.c_out = l.c_out;
  s.kh = s.kw = l.k;
  s.stride_h = s.stride_w = l.stride;
  s.pad_top = s.pad_left = l.pad;
  s.group = l.group;
  s.h_out = (l.h + 2 * l.pad - l.k) / l.stride + 1;
  s.w_out = (l.w + 2 * l.pad - l.k) / l.stride + 1;
  p.x_scale = 0.02f;
  p.x_zp = 128;
  p.y_scale = 0.5f;
  p.y_zp = 100;
  p.out_min = 100;  // fused Relu
  p.max_threads = threads;
  p.nhwc = nhwc;
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  std::vector<int8_t> w(static_cast<size_t>(l.c_out) * (l.c_in / l.group) * l.k * l.k);
  for (auto& v : w) v = static_cast<int8_t>(seven_bit ? byte(rng) % 129 - 64 : byte(rng) - 128);
  for (int m = 0; m < l.c_out; ++m) {
    p.w_scale.push_back(0.001f * static_cast<float>(1 + m % 7));
    p.bias.push_back(byte(rng) * 10 - 1280);
  }
  std::vector<uint8_t> x(static_cast<size_t>(l.c_in) * l.h * l.w);
  for (auto& v : x) v = static_cast<uint8_t>(byte(rng));
  std::vector<uint8_t> y(static_cast<size_t>(l.c_out) * s.h_out * s.w_out);
  const QConv conv(p, w.data(), isa);
  std::vector<uint8_t> scratch(conv.scratch_bytes() + 64);
  auto* aligned = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(scratch.data()) + 63) / 64 * 64);
  std::unique_ptr<ThreadPool> pool = threads > 1 ? std::make_unique<ThreadPool>(threads) : nullptr;
  for (auto _ : state) {
    conv.run(x.data(), y.data(), aligned, pool.get());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double ops = 2.0 * l.c_out * s.h_out * s.w_out * (l.c_in / l.group) * l.k * l.k;
  state.counters["GOPS"] =
      benchmark::Counter(ops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.SetLabel(std::string(l.name) + " " + conv.kernel_name());
}

// One thread: GOPS from CPU time (steadier on a shared machine). Several
// threads: from wall time, the only meaningful clock there.
void one_thread(benchmark::internal::Benchmark* b) {
  b->ArgNames({"layer", "threads"});
  for (int i = 0; i < static_cast<int>(std::size(kLayers)); ++i) b->Args({i, 1});
  b->Unit(benchmark::kMicrosecond);
}

void two_threads(benchmark::internal::Benchmark* b) {
  b->ArgNames({"layer", "threads"});
  for (int i = 0; i < static_cast<int>(std::size(kLayers)); ++i) b->Args({i, 2});
  b->Unit(benchmark::kMicrosecond);
  b->UseRealTime();
}

// The GEMM layers (not depthwise) only.
void gemm_layers(benchmark::internal::Benchmark* b, int threads) {
  b->ArgNames({"layer", "threads"});
  for (int i = 0; i < 3; ++i) b->Args({i, threads});
  b->Unit(benchmark::kMicrosecond);
  if (threads > 1) b->UseRealTime();
}
void gemm_one_thread(benchmark::internal::Benchmark* b) { gemm_layers(b, 1); }
void gemm_two_threads(benchmark::internal::Benchmark* b) { gemm_layers(b, 2); }

BENCHMARK_CAPTURE(BM_QConv, ref, Isa::kRef, false, false)
    ->ArgNames({"layer", "threads"})
    ->Args({0, 1})
    ->Args({3, 1})
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_QConv, avx2_w7, Isa::kAvx2, true, false)->Apply(gemm_one_thread);
BENCHMARK_CAPTURE(BM_QConv, avx2_w7, Isa::kAvx2, true, false)->Apply(gemm_two_threads);

const bool registered = [] {
  for (Isa isa : kAllIsas) {
    if (isa == Isa::kRef || !isa_implemented(isa) || !cpu_supports(cpu_features(), isa)) continue;
    for (bool nhwc : {false, true}) {
      const std::string name = std::string("BM_QConv/") + isa_name(isa) + (nhwc ? "_nhwc" : "");
      benchmark::RegisterBenchmark(name.c_str(), BM_QConv, isa, false, nhwc)->Apply(one_thread);
      benchmark::RegisterBenchmark(name.c_str(), BM_QConv, isa, false, nhwc)->Apply(two_threads);
    }
  }
  return true;
}();

}  // namespace
}  // namespace kvant

BENCHMARK_MAIN();
