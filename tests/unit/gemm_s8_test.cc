// INT8 GEMM kernels against the plain reference (DESIGN.md §4), bit-exact:
// every ISA this CPU and build can run, odd shapes, zero points, extreme
// values (the vpmaddubsw saturation case), wide strides; the requantize
// epilogue against QuantizeLinear's formula; KVANT_ISA parsing; and the
// reference MatMulInteger operator, which ties the kernels to ONNX.
#include "kernels/gemm_s8.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kernels/cpu_features.h"
#include "kvant/status.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

constexpr int32_t kSentinel = -1;  // C is pre-filled with it; padding must keep it

std::vector<Isa> runnable_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::kRef, Isa::kAvx2, Isa::kAvx512Vnni, Isa::kAmx}) {
    if (isa_implemented(isa) && cpu_supports(cpu_features(), isa)) isas.push_back(isa);
  }
  return isas;
}

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

std::vector<int32_t> run_kernel(const Problem& p, Isa isa) {
  const PackedB packed = pack_b_s8(p.b.data(), p.K, p.N, isa, p.b_zp.empty() ? nullptr : p.b_zp.data());
  std::vector<int32_t> c(static_cast<size_t>(p.M) * p.ldc, kSentinel);
  gemm_u8s8_s32(p.a.data(), p.lda, p.M, p.a_zp, packed, c.data(), p.ldc, isa);
  return c;
}

// Compares every element, padding included; reports only the first mismatch.
void expect_same(const std::vector<int32_t>& want, const std::vector<int32_t>& got, const Problem& p, Isa isa) {
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      ADD_FAILURE() << isa_name(isa) << " M=" << p.M << " N=" << p.N << " K=" << p.K << " a_zp=" << int{p.a_zp}
                    << " b_zp=" << (p.b_zp.empty() ? "none" : "per column") << " lda=" << p.lda << " ldc=" << p.ldc
                    << ": C[" << i / static_cast<size_t>(p.ldc) << ", " << i % static_cast<size_t>(p.ldc)
                    << "] = " << got[i] << ", reference " << want[i];
      return;
    }
  }
}

TEST(GemmS8, RuntimeIsasIncludeReference) {
  const auto isas = runnable_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.front(), Isa::kRef);
  std::string names;
  for (Isa isa : isas) names += std::string(isa_name(isa)) + " ";
  std::cout << "[ INFO     ] CPU: " << describe(cpu_features()) << "; kernels tested: " << names << "\n";
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
        for (Isa isa : runnable_isas()) {
          expect_same(want, run_kernel(p, isa), p, isa);
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
        for (Isa isa : runnable_isas()) expect_same(want, run_kernel(p, isa), p, isa);
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
      for (Isa isa : runnable_isas()) expect_same(want, run_kernel(p, isa), p, isa);
    }
  }
}

TEST(GemmS8, ZeroRowsIsANoOp) {
  std::mt19937 rng(1);
  const Problem p = random_problem(rng, 0, 8, 8, 0, false);
  for (Isa isa : runnable_isas()) {
    const PackedB packed = pack_b_s8(p.b.data(), p.K, p.N, isa);
    gemm_u8s8_s32(nullptr, p.K, 0, 0, packed, nullptr, p.N, isa);
  }
}

TEST(GemmS8, PackedForAnotherIsaIsAnError) {
  std::vector<int8_t> b(4, 1);
  const PackedB packed = pack_b_s8(b.data(), 2, 2, Isa::kRef);
  std::vector<uint8_t> a(4, 1);
  std::vector<int32_t> c(4);
  for (Isa isa : runnable_isas()) {
    if (isa == Isa::kRef) continue;
    EXPECT_THROW(gemm_u8s8_s32(a.data(), 2, 2, 0, packed, c.data(), 2, isa), Error);
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
  // A CPU with every feature: ISAs without kernels in this build are an error.
  CpuFeatures all{true, true, true, true, true, true, true, true};
  for (Isa isa : {Isa::kAvx512Vnni, Isa::kAmx}) {
    if (!isa_implemented(isa)) {
      EXPECT_THROW(isa_from_name(isa_name(isa), all), Error);
    }
  }
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
  for (Isa isa : {Isa::kAvx2, Isa::kAvx512Vnni, Isa::kAmx}) {
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
  for (Isa isa : runnable_isas()) expect_same(want, run_kernel(p, isa), p, isa);
}

}  // namespace
}  // namespace kvant
