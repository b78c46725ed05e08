// The machine's peak for the instruction mixes kvant's kernels are built
// from, one thread, registers only (no memory traffic), so kernel GOPS in the
// other benchmarks can be read against it (docs/kernels.md):
//   fma_f32      vfmadd231ps ymm: 8 multiply-adds = 16 FLOP per instruction
//   fma_f32_zmm  vfmadd231ps zmm (AVX-512): 16 multiply-adds = 32 FLOP
//   fma_f32_zmm_bcst  the sgemm_f32_avx512_12x32 mix: per 2 FMAs one
//                vbroadcastss from memory (L1), 12 chains
//   madd_s16     vpmaddwd + vpaddd (the exact wide INT8 path): 16 MACs = 32 OP
//   maddubs_u8s8 vpmaddubsw + vpmaddwd (ones) + vpaddd (the 7-bit path): 32 MACs = 64 OP
// Each loop runs 6 (or 8) independent accumulator chains so that latency
// does not limit it. x86-64 only; each mix is skipped where the CPU lacks it.
//   build/release/bench/kvant_bench_peak
#include <benchmark/benchmark.h>

#include <string>

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

// 12 accumulators (FMA latency 4 x 2 ports needs at least 8 in flight).
__attribute__((target("avx512f"))) void fma_zmm_loop(int64_t n) {
  asm volatile(
      "vxorps %%xmm0,%%xmm0,%%xmm0\n\tvxorps %%xmm1,%%xmm1,%%xmm1\n\tvxorps %%xmm2,%%xmm2,%%xmm2\n\t"
      "vxorps %%xmm3,%%xmm3,%%xmm3\n\tvxorps %%xmm4,%%xmm4,%%xmm4\n\tvxorps %%xmm5,%%xmm5,%%xmm5\n\t"
      "vxorps %%xmm6,%%xmm6,%%xmm6\n\tvxorps %%xmm7,%%xmm7,%%xmm7\n\tvxorps %%xmm8,%%xmm8,%%xmm8\n\t"
      "vxorps %%xmm9,%%xmm9,%%xmm9\n\tvxorps %%xmm10,%%xmm10,%%xmm10\n\tvxorps %%xmm11,%%xmm11,%%xmm11\n\t"
      "vxorps %%xmm12,%%xmm12,%%xmm12\n\tvxorps %%xmm13,%%xmm13,%%xmm13\n\t"
      "1:\n\t"
      "vfmadd231ps %%zmm12,%%zmm13,%%zmm0\n\tvfmadd231ps %%zmm12,%%zmm13,%%zmm1\n\t"
      "vfmadd231ps %%zmm12,%%zmm13,%%zmm2\n\tvfmadd231ps %%zmm12,%%zmm13,%%zmm3\n\t"
      "vfmadd231ps %%zmm12,%%zmm13,%%zmm4\n\tvfmadd231ps %%zmm12,%%zmm13,%%zmm5\n\t"
      "vfmadd231ps %%zmm12,%%zmm13,%%zmm6\n\tvfmadd231ps %%zmm12,%%zmm13,%%zmm7\n\t"
      "vfmadd231ps %%zmm12,%%zmm13,%%zmm8\n\tvfmadd231ps %%zmm12,%%zmm13,%%zmm9\n\t"
      "vfmadd231ps %%zmm12,%%zmm13,%%zmm10\n\tvfmadd231ps %%zmm12,%%zmm13,%%zmm11\n\t"
      "dec %0\n\tjnz 1b\n\t"
      : "+r"(n)
      :
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "cc");
}

// The GEMM micro-kernel's mix: 6 broadcasts from memory, each feeding 2 FMAs
// (12 chains), per iteration.
#define KV_BCST(off, a, b)                                                    \
  "vbroadcastss " #off "(%1),%%zmm14\n\tvfmadd231ps %%zmm12,%%zmm14,%%zmm" #a \
  "\n\tvfmadd231ps %%zmm13,%%zmm14,%%zmm" #b "\n\t"
__attribute__((target("avx512f"))) void fma_zmm_bcst_loop(int64_t n) {
  alignas(64) static const float a[16] = {};
  asm volatile(
      "vxorps %%xmm0,%%xmm0,%%xmm0\n\tvxorps %%xmm1,%%xmm1,%%xmm1\n\tvxorps %%xmm2,%%xmm2,%%xmm2\n\t"
      "vxorps %%xmm3,%%xmm3,%%xmm3\n\tvxorps %%xmm4,%%xmm4,%%xmm4\n\tvxorps %%xmm5,%%xmm5,%%xmm5\n\t"
      "vxorps %%xmm6,%%xmm6,%%xmm6\n\tvxorps %%xmm7,%%xmm7,%%xmm7\n\tvxorps %%xmm8,%%xmm8,%%xmm8\n\t"
      "vxorps %%xmm9,%%xmm9,%%xmm9\n\tvxorps %%xmm10,%%xmm10,%%xmm10\n\tvxorps %%xmm11,%%xmm11,%%xmm11\n\t"
      "vxorps %%xmm12,%%xmm12,%%xmm12\n\tvxorps %%xmm13,%%xmm13,%%xmm13\n\t"
      "1:\n\t" KV_BCST(0, 0, 1) KV_BCST(4, 2, 3) KV_BCST(8, 4, 5) KV_BCST(12, 6, 7) KV_BCST(16, 8, 9)
          KV_BCST(20, 10, 11) "dec %0\n\tjnz 1b\n\t"
      : "+r"(n)
      : "r"(a)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
        "xmm13", "xmm14", "cc", "memory");
}
#undef KV_BCST

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

// ops: operations counted per loop iteration; isa: the level the mix needs.
void run_peak(benchmark::State& state, void (*loop)(int64_t), double ops, const char* counter, Isa isa) {
#if defined(__x86_64__)
  if (!cpu_supports(cpu_features(), isa)) {
    state.SkipWithError((std::string("this CPU lacks ") + isa_name(isa)).c_str());
    return;
  }
  for (auto _ : state) loop(kIters);
  state.counters[counter] = benchmark::Counter(
      ops * static_cast<double>(kIters), benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
#else
  (void)loop;
  (void)ops;
  (void)counter;
  (void)isa;
  state.SkipWithError("x86-64 only");
#endif
}

#if defined(__x86_64__)
void BM_peak_fma_f32(benchmark::State& state) { run_peak(state, fma_loop, 8 * 16, "GFLOPS", Isa::kAvx2); }
void BM_peak_fma_f32_zmm(benchmark::State& state) { run_peak(state, fma_zmm_loop, 12 * 32, "GFLOPS", Isa::kAvx512); }
void BM_peak_fma_f32_zmm_bcst(benchmark::State& state) {
  run_peak(state, fma_zmm_bcst_loop, 12 * 32, "GFLOPS", Isa::kAvx512);
}
void BM_peak_madd_s16(benchmark::State& state) { run_peak(state, madd_loop, 6 * 32, "GOPS", Isa::kAvx2); }
void BM_peak_maddubs_u8s8(benchmark::State& state) { run_peak(state, maddubs_loop, 6 * 64, "GOPS", Isa::kAvx2); }
BENCHMARK(BM_peak_fma_f32);
BENCHMARK(BM_peak_fma_f32_zmm);
BENCHMARK(BM_peak_fma_f32_zmm_bcst);
BENCHMARK(BM_peak_madd_s16);
BENCHMARK(BM_peak_maddubs_u8s8);
#endif

}  // namespace
}  // namespace kvant

BENCHMARK_MAIN();
