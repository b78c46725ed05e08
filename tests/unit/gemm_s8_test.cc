// INT8 GEMM kernels against the plain reference (DESIGN.md §4), bit-exact:
// every ISA this CPU and build can run, odd shapes, zero points, extreme
// values (the vpmaddubsw saturation case), wide strides; the requantize
// epilogue against QuantizeLinear's formula; KVANT_ISA parsing; and the
// reference MatMulInteger operator, which ties the kernels to ONNX.
#include "kernels/gemm_s8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "ir/graph.h"
#include "kernel_walk.h"
#include "kernels/cpu_features.h"
#include "kernels/gemm_s8_kernels.h"
#include "kernels/layout_u8.h"
#include "kvant/status.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

constexpr int32_t kSentinel = -1;  // C is pre-filled with it; padding must keep it

// The table entries these tests run: those KVANT_ISA (or the CPU's best) allows.
std::vector<const QGemmKernel*> runnable_kernels() { return test::runnable_entries(qgemm_kernels(), selected_isa()); }

struct Problem {
  int M, N, K, lda, ldc;
  uint8_t a_zp;
  std::vector<uint8_t> a;
  std::vector<int8_t> b;
  std::vector<int8_t> b_zp;  // empty: none
};

Problem random_problem(std::mt19937& rng, int M, int N, int K, uint8_t a_zp, bool with_b_zp, int pad = 0) {
  std::uniform_int_distribution<int> byte(0, 255);
  Problem p{M, N, K, K + pad, N + pad, a_zp, {}, {}, {}};
  p.a.resize(static_cast<size_t>(M) * p.lda);
  p.b.resize(static_cast<size_t>(K) * N);
  for (auto& v : p.a) v = static_cast<uint8_t>(byte(rng));
  for (auto& v : p.b) v = static_cast<int8_t>(byte(rng) - 128);
  if (with_b_zp) {
    p.b_zp.resize(static_cast<size_t>(N));
    for (auto& v : p.b_zp) v = static_cast<int8_t>(byte(rng) - 128);
  }
  return p;
}

std::vector<int32_t> run_reference(const Problem& p) {
  std::vector<int32_t> c(static_cast<size_t>(p.M) * p.ldc, kSentinel);
  gemm_u8s8_s32_reference(p.a.data(), p.lda, p.b.data(), p.N, p.M, p.N, p.K, p.a_zp,
                          p.b_zp.empty() ? nullptr : p.b_zp.data(), c.data(), p.ldc);
  return c;
}

bool fits_7bit(const Problem& p) {
  for (int8_t v : p.b) {
    if (v < -64 || v > 64) return false;
  }
  return true;
}

// The kernel's result, or the reference's when the entry does not take this
// B (a 7-bit entry on 8-bit weights), so callers compare every entry alike.
std::vector<int32_t> run_kernel(const Problem& p, const QGemmKernel& kernel) {
  if (kernel.needs_7bit && !fits_7bit(p)) return run_reference(p);
  const PackedB packed = pack_b_s8(kernel, p.b.data(), p.K, p.N, p.b_zp.empty() ? nullptr : p.b_zp.data());
  std::vector<int32_t> c(static_cast<size_t>(p.M) * p.ldc, kSentinel);
  gemm_u8s8_s32(p.a.data(), p.lda, p.M, p.a_zp, packed, c.data(), p.ldc);
  return c;
}

// Compares every element, padding included; reports only the first mismatch.
void expect_same(const std::vector<int32_t>& want, const std::vector<int32_t>& got, const Problem& p,
                 const QGemmKernel* kernel) {
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      ADD_FAILURE() << kernel->name << " M=" << p.M << " N=" << p.N << " K=" << p.K << " a_zp=" << int{p.a_zp}
                    << " b_zp=" << (p.b_zp.empty() ? "none" : "per column") << " lda=" << p.lda << " ldc=" << p.ldc
                    << ": C[" << i / static_cast<size_t>(p.ldc) << ", " << i % static_cast<size_t>(p.ldc)
                    << "] = " << got[i] << ", reference " << want[i];
      return;
    }
  }
}

TEST(GemmS8, TableCoverage) {
  KVANT_ALLOWED_ISA_OR_SKIP(allowed);
  const auto kernels = test::runnable_entries(qgemm_kernels(), allowed);
  ASSERT_FALSE(kernels.empty());
  EXPECT_EQ(kernels.back()->isa, Isa::kRef);
  test::check_coverage(qgemm_kernels(), allowed, "qgemm table");
  // The pick is the first runnable entry that takes the weights.
  std::vector<int8_t> wide(64, -128), narrow(64, 5);
  const PackedB w = pack_b_s8(wide.data(), 8, 8, allowed);
  const PackedB n = pack_b_s8(narrow.data(), 8, 8, allowed);
  for (const QGemmKernel* k : kernels) {
    if (k->needs_7bit) continue;
    EXPECT_STREQ(w.kernel_name(), k->name);
    break;
  }
  EXPECT_STREQ(n.kernel_name(), kernels.front()->name);
}

TEST(GemmS8, AllIsasMatchReferenceOnOddShapes) {
  const int sizes[] = {1, 2, 3, 7, 16, 17, 31, 63, 64, 100};
  const uint32_t seed = 20240611;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> byte(0, 255);
  int checked = 0;
  for (int M : sizes) {
    for (int N : sizes) {
      for (int K : sizes) {
        // Zero points cycle through 0, 128 and random, with and without b_zp.
        const int variant = (M + 3 * N + 7 * K) % 6;
        const uint8_t a_zp = variant % 3 == 0 ? 0 : variant % 3 == 1 ? 128 : static_cast<uint8_t>(byte(rng));
        const Problem p = random_problem(rng, M, N, K, a_zp, variant >= 3, (M + N + K) % 4 == 0 ? 5 : 0);
        const auto want = run_reference(p);
        for (const QGemmKernel* kernel : runnable_kernels()) {
          expect_same(want, run_kernel(p, *kernel), p, kernel);
          ++checked;
        }
        if (HasFailure()) {
          FAIL() << "seed " << seed;
        }
      }
    }
  }
  EXPECT_GE(checked, 1000);
}

TEST(GemmS8, EveryZeroPointCombinationOnTailShapes) {
  std::mt19937 rng(7);
  for (uint8_t a_zp : {uint8_t{0}, uint8_t{128}, uint8_t{255}, uint8_t{37}}) {
    for (bool with_b_zp : {false, true}) {
      for (auto [M, N, K] : {std::tuple{5, 33, 65}, std::tuple{4, 16, 2}, std::tuple{9, 47, 129}}) {
        const Problem p = random_problem(rng, M, N, K, a_zp, with_b_zp, 3);
        const auto want = run_reference(p);
        for (const QGemmKernel* kernel : runnable_kernels()) expect_same(want, run_kernel(p, *kernel), p, kernel);
      }
    }
  }
}

// A = 255 and B = -128 everywhere: a u8*s8 pair sum is -65280, which
// vpmaddubsw would saturate to -32768. Also the largest positive products.
TEST(GemmS8, ExtremeValuesAreExact) {
  for (int K : {1, 2, 63, 1024, 4099}) {
    for (auto [a_value, b_value, a_zp, b_zp] :
         {std::tuple{255, -128, 0, 0}, std::tuple{255, 127, 0, 0}, std::tuple{0, -128, 255, 127},
          std::tuple{255, -128, 0, 127}, std::tuple{255, 127, 0, -128}}) {
      Problem p{5, 19, K, K, 19, static_cast<uint8_t>(a_zp), {}, {}, {}};
      p.a.assign(static_cast<size_t>(p.M) * K, static_cast<uint8_t>(a_value));
      p.b.assign(static_cast<size_t>(K) * p.N, static_cast<int8_t>(b_value));
      if (b_zp != 0) p.b_zp.assign(static_cast<size_t>(p.N), static_cast<int8_t>(b_zp));
      const auto want = run_reference(p);
      EXPECT_EQ(want[0], K * (a_value - a_zp) * (b_value - b_zp));
      for (const QGemmKernel* kernel : runnable_kernels()) expect_same(want, run_kernel(p, *kernel), p, kernel);
    }
  }
}

TEST(GemmS8, ZeroRowsIsANoOp) {
  std::mt19937 rng(1);
  const Problem p = random_problem(rng, 0, 8, 8, 0, false);
  for (const QGemmKernel* kernel : runnable_kernels()) {
    if (kernel->needs_7bit) continue;
    const PackedB packed = pack_b_s8(*kernel, p.b.data(), p.K, p.N);
    gemm_u8s8_s32(nullptr, p.K, 0, 0, packed, nullptr, p.N);
  }
}

TEST(GemmS8, UnpackedOrUnfitWeightsAreErrors) {
  std::vector<uint8_t> a(4, 1);
  std::vector<int32_t> c(4);
  EXPECT_THROW(gemm_u8s8_s32(a.data(), 2, 2, 0, PackedB{}, c.data(), 2), Error);
  std::vector<int8_t> b(4, 100);
  for (const QGemmKernel& kernel : qgemm_kernels()) {
    if (kernel.needs_7bit) {
      EXPECT_THROW(pack_b_s8(kernel, b.data(), 2, 2), Error) << kernel.name;
    }
  }
}

// ONNX QuantizeLinear applied to the real value acc * multiplier.
uint8_t quantize_linear(int64_t acc, float multiplier, int32_t y_zp, int qmin, int qmax) {
  const double rounded = std::nearbyint(static_cast<double>(static_cast<float>(acc) * multiplier));
  return static_cast<uint8_t>(std::clamp(rounded + y_zp, static_cast<double>(qmin), static_cast<double>(qmax)));
}

TEST(Requantize, TiesRoundHalfToEven) {
  const std::vector<int32_t> acc = {1, 3, 5, -1, -3, 7, 0, 2};
  const std::vector<float> mult(acc.size(), 0.5f);  // 0.5, 1.5, 2.5, -0.5, -1.5, 3.5, 0, 1
  std::vector<uint8_t> out(acc.size());
  requantize(acc.data(), 1, static_cast<int>(acc.size()), nullptr, mult.data(), 10, 0, 255, out.data());
  EXPECT_EQ(out, (std::vector<uint8_t>{10, 12, 12, 10, 8, 14, 10, 11}));
}

TEST(Requantize, BiasClampAndFusedRelu) {
  const std::vector<int32_t> acc = {1000000, -1000000, 4, -4, 2147483647, -2147483647 - 1};
  const std::vector<int32_t> bias = {0, 0, 1, -1, 1, -1};  // 5 * 0.5 = 2.5 -> 2; -5 * 0.5 = -2.5 -> -2
  const std::vector<float> mult(acc.size(), 0.5f);
  std::vector<uint8_t> out(acc.size());
  requantize(acc.data(), 1, 6, bias.data(), mult.data(), 128, 0, 255, out.data());
  EXPECT_EQ(out, (std::vector<uint8_t>{255, 0, 130, 126, 255, 0}));
  // Relu fused: qmin = y_zp. Clip(0, 6) with scale 0.05, zp 128: qmax = 128 + 120.
  requantize(acc.data(), 1, 6, bias.data(), mult.data(), 128, 128, 248, out.data());
  EXPECT_EQ(out, (std::vector<uint8_t>{248, 128, 130, 128, 248, 128}));
}

TEST(Requantize, MatchesQuantizeLinearOnRandomValues) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int32_t> acc_dist(-200000, 200000);
  std::uniform_real_distribution<float> mult_dist(1e-5f, 2e-3f);
  const int M = 13, N = 37;
  std::vector<int32_t> acc(M * N), bias(N);
  std::vector<float> mult(N);
  for (auto& v : acc) v = acc_dist(rng);
  for (auto& v : bias) v = acc_dist(rng) / 10;
  for (auto& v : mult) v = mult_dist(rng);
  for (auto [zp, qmin, qmax] : {std::tuple{0, 0, 255}, std::tuple{128, 0, 255}, std::tuple{77, 77, 200}}) {
    std::vector<uint8_t> out(acc.size());
    requantize(acc.data(), M, N, bias.data(), mult.data(), zp, qmin, qmax, out.data());
    for (int m = 0; m < M; ++m) {
      for (int n = 0; n < N; ++n) {
        const int64_t sum = static_cast<int64_t>(acc[m * N + n]) + bias[n];
        ASSERT_EQ(out[m * N + n], quantize_linear(sum, mult[n], zp, qmin, qmax)) << m << ", " << n;
      }
    }
  }
}

// Sets KVANT_ISA for one scope, then restores it.
class ScopedIsaEnv {
 public:
  explicit ScopedIsaEnv(const char* value) {
    if (const char* old = std::getenv("KVANT_ISA")) old_ = old;
    if (value != nullptr) {
      setenv("KVANT_ISA", value, 1);
    } else {
      unsetenv("KVANT_ISA");
    }
  }
  ~ScopedIsaEnv() {
    if (old_) {
      setenv("KVANT_ISA", old_->c_str(), 1);
    } else {
      unsetenv("KVANT_ISA");
    }
  }

 private:
  std::optional<std::string> old_;
};

TEST(CpuFeatures, IsaFromName) {
  const CpuFeatures none;
  EXPECT_EQ(isa_from_name(nullptr, none), Isa::kRef);
  EXPECT_EQ(isa_from_name("", none), Isa::kRef);
  EXPECT_EQ(isa_from_name("ref", none), Isa::kRef);
  try {
    isa_from_name("avx2", none);
    ADD_FAILURE() << "avx2 on a CPU without it must throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("does not support avx2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(isa_from_name("sse9", none), Error);
  EXPECT_THROW(isa_from_name("AVX2", none), Error);
  CpuFeatures avx2;
  avx2.avx2 = avx2.fma = true;
  EXPECT_EQ(isa_from_name("avx2", avx2), Isa::kAvx2);
  EXPECT_EQ(isa_from_name(nullptr, avx2), Isa::kAvx2);
  // A CPU with every feature: every level is known by name; levels without
  // kernels in this build are an error.
  CpuFeatures all{true, true, true, true, true, true, true, true, true, true};
  for (Isa isa : kAllIsas) {
    if (isa_implemented(isa)) {
      EXPECT_EQ(isa_from_name(isa_name(isa), all), isa);
    } else {
      EXPECT_THROW(isa_from_name(isa_name(isa), all), Error);
    }
  }
  // Levels are independent: AVX-512 VNNI without AVX-VNNI (Cascade Lake).
  CpuFeatures clx = all;
  clx.avx_vnni = false;
  clx.amx_int8 = false;
  EXPECT_FALSE(cpu_supports(clx, Isa::kAvxVnni));
  EXPECT_TRUE(cpu_supports(clx, Isa::kAvx512Vnni));
  EXPECT_FALSE(isa_allows(Isa::kAvx512Vnni, Isa::kAvxVnni, clx));
  EXPECT_FALSE(isa_allows(Isa::kAvx2, Isa::kAvx512Vnni, all));
}

TEST(CpuFeatures, SelectedIsaReadsEnvironment) {
  {
    ScopedIsaEnv env("ref");
    EXPECT_EQ(selected_isa(), Isa::kRef);
  }
  {
    ScopedIsaEnv env(nullptr);
    EXPECT_EQ(selected_isa(), best_isa(cpu_features()));
  }
  {
    ScopedIsaEnv env("bogus");
    EXPECT_THROW(selected_isa(), Error);
  }
  for (Isa isa : kAllIsas) {
    ScopedIsaEnv env(isa_name(isa));
    if (cpu_supports(cpu_features(), isa) && isa_implemented(isa)) {
      EXPECT_EQ(selected_isa(), isa);
    } else {
      EXPECT_THROW(selected_isa(), Error) << isa_name(isa);
    }
  }
}

TEST(CpuFeatures, ConsistentWithCompiler) {
  const CpuFeatures& cpu = cpu_features();
  if (cpu.avx512_vnni) {
    EXPECT_TRUE(cpu.avx512f);
  }
  if (cpu.avx512bw) {
    EXPECT_TRUE(cpu.avx512f);
  }
#if defined(__x86_64__)
  EXPECT_EQ(cpu.avx2, static_cast<bool>(__builtin_cpu_supports("avx2")));
#endif
}

// The kernels against kvant's reference MatMulInteger operator.
TEST(GemmS8, MatchesMatMulIntegerOperator) {
  const int M = 5, N = 19, K = 37;
  std::mt19937 rng(11);
  const Problem p = random_problem(rng, M, N, K, 131, true);
  Node node;
  node.name = "mm";
  node.op_type = "MatMulInteger";
  node.inputs = {"a", "b", "azp", "bzp"};
  node.outputs = {"y"};
  Model model;
  model.opset_imports[""] = 10;
  for (const auto& name : node.inputs) model.graph.inputs.push_back(ValueInfo{name, {}});
  model.graph.outputs.push_back(ValueInfo{"y", {}});
  model.graph.nodes.push_back(node);
  ReferenceExecutor exec(model);
  const auto out = exec.run({{"a", Tensor::from_vector<uint8_t>(p.a, {M, K})},
                             {"b", Tensor::from_vector<int8_t>(p.b, {K, N})},
                             {"azp", Tensor::from_vector<uint8_t>({p.a_zp}, {})},
                             {"bzp", Tensor::from_vector<int8_t>(p.b_zp, {N})}});
  const Tensor& y = out.at("y");
  ASSERT_EQ(y.dtype(), DType::kInt32);
  ASSERT_EQ(y.numel(), M * N);
  const std::vector<int32_t> want(y.data<int32_t>(), y.data<int32_t>() + M * N);
  for (const QGemmKernel* kernel : runnable_kernels()) expect_same(want, run_kernel(p, *kernel), p, kernel);
}

}  // namespace
}  // namespace kvant

namespace kvant {
namespace {

// gemm_u8s8_requant, fused (AMX, the 7-bit AVX2 entry) or not, equals the reference GEMM followed
// by the reference row requantization, bit for bit, on tails of M (rows that
// do not fill a tile), N and K, with and without weight zero points, for
// uint8 and int8 outputs.
TEST(GemmS8, RequantizingGemmMatchesGemmThenRequant) {
  std::mt19937 rng(77);
  std::uniform_int_distribution<int> byte(0, 255);
  const RequantRowsKernel& ref_requant = requant_rows_kernels().back();
  for (const QGemmKernel* kernel : runnable_kernels()) {
    for (auto [M, N, K] :
         {std::tuple{1, 5, 3}, std::tuple{17, 33, 64}, std::tuple{49, 64, 147}, std::tuple{32, 32, 128},
          std::tuple{70, 100, 300}, std::tuple{15, 16, 65}, std::tuple{300, 40, 9}}) {
      for (bool with_b_zp : {false, true}) {
        Problem p = random_problem(rng, M, N, K, static_cast<uint8_t>(byte(rng)), with_b_zp);
        // 7-bit entries (--reduce-range weights): B within [-64, 64], with
        // the extremes present.
        if (kernel->needs_7bit) {
          for (auto& v : p.b) v = static_cast<int8_t>(v / 2);
          p.b[0] = -64;
          p.b.back() = 64;
        }
        const auto acc = run_reference(p);  // ldc == N here
        std::vector<int32_t> bias(static_cast<size_t>(N));
        std::vector<float> mult(static_cast<size_t>(N));
        for (int j = 0; j < N; ++j) {
          bias[static_cast<size_t>(j)] = byte(rng) * 50 - 6400;
          mult[static_cast<size_t>(j)] = 1e-5f * static_cast<float>(1 + byte(rng));
        }
        for (bool y_signed : {false, true}) {
          const int32_t zp = y_signed ? -3 : 121, lo = y_signed ? -128 : 5, hi = y_signed ? 100 : 255;
          const int64_t ldy = N + 3;
          std::vector<uint8_t> want(static_cast<size_t>(M) * ldy, 0xA5), got = want;
          ref_requant.run(
              RequantRowsArgs{acc.data(), N, M, N, bias.data(), mult.data(), zp, lo, hi, y_signed, want.data(), ldy});
          const PackedB packed = pack_b_s8(*kernel, p.b.data(), K, N, p.b_zp.empty() ? nullptr : p.b_zp.data());
          std::vector<int32_t> scratch(static_cast<size_t>(M) * N);
          gemm_u8s8_requant(p.a.data(), p.lda, M, p.a_zp, packed,
                            QGemmRequant{bias.data(), mult.data(), zp, lo, hi, y_signed, got.data(), ldy},
                            scratch.data());
          ASSERT_EQ(got, want) << kernel->name << " M=" << M << " N=" << N << " K=" << K << " b_zp " << with_b_zp
                               << " signed " << y_signed;
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvant

namespace kvant {
namespace {

// gemm_u8s8_dequant, fused (the 7-bit AVX2 entry) or not, equals the
// reference GEMM followed by the float-quant entry's dequant of the same
// ISA, bit for bit: N off multiples of 8 and 16 (the vector steps and the
// scalar tail), with and without ibias / fbias, a NaN and a -0 in fbias,
// finite and infinite clamps, M past one row chunk.
TEST(GemmS8, DequantizingGemmMatchesGemmThenDequant) {
  std::mt19937 rng(78);
  std::uniform_int_distribution<int> byte(0, 255);
  for (const QGemmKernel* kernel : runnable_kernels()) {
    const Isa isa = qgemm_kernel_isa(*kernel) >= Isa::kAvx2 ? Isa::kAvx2 : Isa::kRef;
    const FloatQuantKernel& fq = pick_float_quant(isa);
    for (auto [M, N, K] : {std::tuple{1, 5, 3}, std::tuple{17, 33, 64}, std::tuple{7, 8, 5}, std::tuple{9, 23, 19},
                           std::tuple{70, 100, 300}, std::tuple{300, 40, 9}}) {
      for (int variant = 0; variant < 3; ++variant) {
        Problem p = random_problem(rng, M, N, K, static_cast<uint8_t>(byte(rng)), variant == 2);
        if (kernel->needs_7bit) {
          for (auto& v : p.b) v = static_cast<int8_t>(v / 2);
          p.b[0] = -64;
          p.b.back() = 64;
        }
        const auto acc = run_reference(p);  // ldc == N here
        std::vector<int32_t> ibias(static_cast<size_t>(N));
        std::vector<float> mult(static_cast<size_t>(N)), fbias(static_cast<size_t>(N));
        for (int j = 0; j < N; ++j) {
          ibias[static_cast<size_t>(j)] = byte(rng) * 50 - 6400;
          mult[static_cast<size_t>(j)] = 1e-4f * static_cast<float>(byte(rng) - 100);
          fbias[static_cast<size_t>(j)] = 0.01f * static_cast<float>(byte(rng) - 128);
        }
        fbias[0] = -0.0f;
        if (N > 3) fbias[3] = std::nanf("");
        fbias.back() = std::nanf("");
        const bool with_ibias = variant == 1, with_fbias = variant != 0;
        const float lo = variant == 1 ? -0.5f : -INFINITY, hi = variant == 1 ? 0.75f : INFINITY;
        const int64_t ldy = N + 2;
        std::vector<float> want(static_cast<size_t>(M) * ldy, 7.0f), got = want;
        const DequantRowsArgs dq{acc.data(),
                                 N,
                                 M,
                                 N,
                                 with_ibias ? ibias.data() : nullptr,
                                 mult.data(),
                                 with_fbias ? fbias.data() : nullptr,
                                 lo,
                                 hi,
                                 want.data(),
                                 ldy};
        fq.dequant(dq);
        const PackedB packed = pack_b_s8(*kernel, p.b.data(), K, N, p.b_zp.empty() ? nullptr : p.b_zp.data());
        std::vector<int32_t> scratch(static_cast<size_t>(M) * N);
        DequantRowsArgs into = dq;
        into.acc = nullptr;
        into.out = got.data();
        gemm_u8s8_dequant(p.a.data(), p.lda, M, p.a_zp, packed, into, scratch.data(), fq);
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), got.size() * sizeof(float)))
            << kernel->name << " with " << fq.name << " M=" << M << " N=" << N << " K=" << K << " variant " << variant;
      }
    }
  }
}

}  // namespace
}  // namespace kvant
