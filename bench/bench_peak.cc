// The machine's peak for the instruction mixes kvant's kernels are built
// from, one thread, registers only (no memory traffic), so kernel GOPS in the
// other benchmarks can be read against it (docs/kernels.md):
//   fma_f32      vfmadd231ps ymm: 8 multiply-adds = 16 FLOP per instruction
//   madd_s16     vpmaddwd + vpaddd (the exact wide INT8 path): 16 MACs = 32 OP
//   maddubs_u8s8 vpmaddubsw + vpmaddwd (ones) + vpaddd (the 7-bit path): 32 MACs = 64 OP
// Each loop runs 6 (or 8) independent accumulator chains so that latency
// does not limit it. x86-64 with AVX2 only; skipped elsewhere.
//   build/release/bench/kvant_bench_peak
#include <benchmark/benchmark.h>

#include "kernels/cpu_features.h"

namespace kvant {
namespace {

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) void fma_loop(int64_t n) {
  asm volatile(
      "vxorps %%ymm0,%%ymm0,%%ymm0\n\tvxorps %%ymm1,%%ymm1,%%ymm1\n\tvxorps %%ymm2,%%ymm2,%%ymm2\n\t"
      "vxorps %%ymm3,%%ymm3,%%ymm3\n\tvxorps %%ymm4,%%ymm4,%%ymm4\n\tvxorps %%ymm5,%%ymm5,%%ymm5\n\t"
      "vxorps %%ymm6,%%ymm6,%%ymm6\n\tvxorps %%ymm7,%%ymm7,%%ymm7\n\t"
      "vxorps %%ymm8,%%ymm8,%%ymm8\n\tvxorps %%ymm9,%%ymm9,%%ymm9\n\t"
      "1:\n\t"
      "vfmadd231ps %%ymm8,%%ymm9,%%ymm0\n\tvfmadd231ps %%ymm8,%%ymm9,%%ymm1\n\t"
      "vfmadd231ps %%ymm8,%%ymm9,%%ymm2\n\tvfmadd231ps %%ymm8,%%ymm9,%%ymm3\n\t"
      "vfmadd231ps %%ymm8,%%ymm9,%%ymm4\n\tvfmadd231ps %%ymm8,%%ymm9,%%ymm5\n\t"
      "vfmadd231ps %%ymm8,%%ymm9,%%ymm6\n\tvfmadd231ps %%ymm8,%%ymm9,%%ymm7\n\t"
      "dec %0\n\tjnz 1b\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "cc");
}

#define KV_MADD(t, a) "vpmaddwd %%ymm12,%%ymm13,%%ymm" #t "\n\tvpaddd %%ymm" #t ",%%ymm" #a ",%%ymm" #a "\n\t"
__attribute__((target("avx2,fma"))) void madd_loop(int64_t n) {
  asm volatile(
      "vpxor %%xmm0,%%xmm0,%%xmm0\n\tvpxor %%xmm1,%%xmm1,%%xmm1\n\tvpxor %%xmm2,%%xmm2,%%xmm2\n\t"
      "vpxor %%xmm3,%%xmm3,%%xmm3\n\tvpxor %%xmm4,%%xmm4,%%xmm4\n\tvpxor %%xmm5,%%xmm5,%%xmm5\n\t"
      "vpxor %%xmm12,%%xmm12,%%xmm12\n\tvpxor %%xmm13,%%xmm13,%%xmm13\n\t"
      "1:\n\t" KV_MADD(6, 0) KV_MADD(7, 1) KV_MADD(8, 2) KV_MADD(9, 3) KV_MADD(10, 4)
          KV_MADD(11, 5) "dec %0\n\tjnz 1b\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "cc");
}
#undef KV_MADD

#define KV_MADDUBS(t, a)                                                                                              \
  "vpmaddubsw %%ymm13,%%ymm12,%%ymm" #t "\n\tvpmaddwd %%ymm14,%%ymm" #t ",%%ymm" #t "\n\tvpaddd %%ymm" #t ",%%ymm" #a \
  ",%%ymm" #a "\n\t"
__attribute__((target("avx2,fma"))) void maddubs_loop(int64_t n) {
  asm volatile(
      "vpxor %%xmm0,%%xmm0,%%xmm0\n\tvpxor %%xmm1,%%xmm1,%%xmm1\n\tvpxor %%xmm2,%%xmm2,%%xmm2\n\t"
      "vpxor %%xmm3,%%xmm3,%%xmm3\n\tvpxor %%xmm4,%%xmm4,%%xmm4\n\tvpxor %%xmm5,%%xmm5,%%xmm5\n\t"
      "vpxor %%xmm12,%%xmm12,%%xmm12\n\tvpxor %%xmm13,%%xmm13,%%xmm13\n\tvpxor %%xmm14,%%xmm14,%%xmm14\n\t"
      "1:\n\t" KV_MADDUBS(6, 0) KV_MADDUBS(7, 1) KV_MADDUBS(8, 2) KV_MADDUBS(9, 3) KV_MADDUBS(10, 4)
          KV_MADDUBS(11, 5) "dec %0\n\tjnz 1b\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "xmm14", "cc");
}
#undef KV_MADDUBS
#endif

constexpr int64_t kIters = 1 << 20;

// ops: operations counted per loop iteration.
void run_peak(benchmark::State& state, void (*loop)(int64_t), double ops, const char* counter) {
#if defined(__x86_64__)
  if (!avx2_kernels_enabled()) {
    state.SkipWithError("no AVX2+FMA on this CPU");
    return;
  }
  for (auto _ : state) loop(kIters);
  state.counters[counter] = benchmark::Counter(
      ops * static_cast<double>(kIters), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
#else
  (void)loop;
  (void)ops;
  (void)counter;
  state.SkipWithError("x86-64 only");
#endif
}

#if defined(__x86_64__)
void BM_peak_fma_f32(benchmark::State& state) { run_peak(state, fma_loop, 8 * 16, "GFLOPS"); }
void BM_peak_madd_s16(benchmark::State& state) { run_peak(state, madd_loop, 6 * 32, "GOPS"); }
void BM_peak_maddubs_u8s8(benchmark::State& state) { run_peak(state, maddubs_loop, 6 * 64, "GOPS"); }
BENCHMARK(BM_peak_fma_f32);
BENCHMARK(BM_peak_madd_s16);
BENCHMARK(BM_peak_maddubs_u8s8);
#endif

}  // namespace
}  // namespace kvant

BENCHMARK_MAIN();
