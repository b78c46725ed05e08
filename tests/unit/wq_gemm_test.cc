// Weight-only INT4 models compiled to the 4-bit kernels (runtime/steps_wq.h)
// against the reference executor (DESIGN.md §2), for both file formats the
// weight-only mode writes: opset-21 blocked DequantizeLinear -> MatMul/Gemm,
// and com.microsoft.MatMulNBits. M = 1 and M > 1, groups 32 and 128, K not a
// multiple of the group, N odd, symmetric and affine, Gemm with transB and a
// bias. W4A32 agrees with the QDQ simulation to float rounding (2e-5 of
// sum |x w|: the same dequantized weights summed in another order); W4A8
// (MatMulNBits accuracy_level 4) within 1% of sum |x w| (the int8 activation
// step, max|x| / 254 per block, is the error). INT8 weight-only likewise.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "quant/quantize.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

// y = x W (MatMul, W [K, N]) or Gemm(x, W [N, K], bias, transB = 1).
Model linear_model(int64_t K, int64_t N, bool gemm, std::mt19937& rng) {
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  TypeInfo t;
  t.dtype = DType::kFloat32;
  t.has_shape = true;
  t.dims = {Dim{-1, "m"}, Dim{K, ""}};
  g.inputs.push_back({"x", t});
  std::normal_distribution<float> normal(0.0f, 0.5f);
  Tensor w(DType::kFloat32, gemm ? Shape{N, K} : Shape{K, N});
  for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = normal(rng);
  g.initializers["W"] = w;
  if (gemm) {
    Tensor b(DType::kFloat32, {N});
    for (int64_t i = 0; i < N; ++i) b.data<float>()[i] = normal(rng);
    g.initializers["B"] = b;
    Node node = make_node("fc", "Gemm", {"x", "W", "B"}, {"y"});
    node.attributes["transB"] = int_attr(1);
    g.nodes.push_back(node);
  } else {
    g.nodes.push_back(make_node("fc", "MatMul", {"x", "W"}, {"y"}));
  }
  TypeInfo out;
  out.dtype = DType::kFloat32;
  g.outputs.push_back({"y", out});
  return m;
}

void expect_close(const Model& fp32, const Model& q, int64_t M, const std::string& kernel, double rel,
                  const std::string& what, std::mt19937& rng) {
  const Tensor& w = fp32.graph.initializers.at("W");
  const bool gemm = fp32.graph.nodes[0].op_type == "Gemm";
  const int64_t K = gemm ? w.dim(1) : w.dim(0), N = gemm ? w.dim(0) : w.dim(1);
  Tensor x(DType::kFloat32, {M, K});
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = normal(rng);
  ReferenceExecutor reference(q);
  const Tensor want = reference.run({{"x", x}}).at("y");
  for (int threads : {1, 3}) {
    CompiledModel compiled(q, default_compile_options(threads));
    const Tensor got = compiled.run({{"x", x}}).at("y");
    EXPECT_NE(compiled.describe_plan().find(kernel), std::string::npos) << what << "\n" << compiled.describe_plan();
    ASSERT_EQ(got.shape(), want.shape()) << what;
    for (int64_t i = 0; i < M; ++i) {
      for (int64_t j = 0; j < N; ++j) {
        double mag = 0;
        for (int64_t k = 0; k < K; ++k)
          mag += std::abs(double{x.data<float>()[i * K + k]} * w.data<float>()[gemm ? j * K + k : k * N + j]);
        ASSERT_NEAR(got.data<float>()[i * N + j], want.data<float>()[i * N + j], rel * mag + 1e-6)
            << what << " threads " << threads << " at " << i << "," << j;
      }
    }
  }
}

TEST(WqGemm, Int4ModelsOfBothFormatsMatchTheReference) {
  std::mt19937 rng(42);
  for (bool gemm : {false, true}) {
    for (int group : {32, 128}) {
      for (Symmetry sym : {Symmetry::kSymmetric, Symmetry::kAffine}) {
        const int64_t K = 300, N = 37;  // K: 9.4 groups of 32, 2.3 of 128
        const Model fp32 = linear_model(K, N, gemm, rng);
        QuantizeOptions options;
        options.mode = QuantMode::kWeightOnly;
        options.group_size = group;
        options.weight_symmetry = sym;
        const std::string what = std::string(gemm ? "Gemm" : "MatMul") + " g" + std::to_string(group) +
                                 (sym == Symmetry::kSymmetric ? " symmetric" : " affine");
        const Model qdq = quantize_weight_only(fp32, 4, options, nullptr);
        Model ort = quantize_matmul_nbits(fp32, 4, options, nullptr);
        for (int64_t M : {1, 5}) {
          expect_close(fp32, qdq, M, "gemm_w4a32", 2e-5, what + " qdq M " + std::to_string(M), rng);
          expect_close(fp32, ort, M, "gemm_w4a32", 2e-5, what + " MatMulNBits M " + std::to_string(M), rng);
        }
        for (Node& n : ort.graph.nodes) {
          if (n.op_type == "MatMulNBits") n.attributes["accuracy_level"] = int_attr(4);
        }
        for (int64_t M : {1, 5})
          expect_close(fp32, ort, M, "gemm_w4a8", 1e-2, what + " MatMulNBits int8 M " + std::to_string(M), rng);
      }
    }
  }
}

// INT8 weight-only (blocked int8 DQ, MatMulNBits bits 8) runs gemv_w8 on
// int8 rows with block scales: float rounding of the simulation.
TEST(WqGemm, Int8ModelsOfBothFormatsMatchTheReference) {
  std::mt19937 rng(43);
  for (bool gemm : {false, true}) {
    for (int group : {32, 128}) {
      const Model fp32 = linear_model(300, 37, gemm, rng);
      QuantizeOptions options;
      options.mode = QuantMode::kWeightOnly;
      options.group_size = group;
      const std::string what = std::string(gemm ? "Gemm" : "MatMul") + " int8 g" + std::to_string(group);
      const Model qdq = quantize_weight_only(fp32, 8, options, nullptr);
      const Model ort = quantize_matmul_nbits(fp32, 8, options, nullptr);
      for (int64_t M : {1, 5}) {
        expect_close(fp32, qdq, M, "gemv_w8", 2e-5, what + " qdq M " + std::to_string(M), rng);
        expect_close(fp32, ort, M, "gemv_w8", 2e-5, what + " MatMulNBits M " + std::to_string(M), rng);
      }
    }
  }
}

TEST(WqGemm, MalformedMatMulNBitsStaysWithTheReferenceAndReportsIt) {
  std::mt19937 rng(1);
  const Model fp32 = linear_model(64, 8, false, rng);
  QuantizeOptions options;
  options.mode = QuantMode::kWeightOnly;
  options.group_size = 32;
  Model ort = quantize_matmul_nbits(fp32, 4, options, nullptr);
  ort.graph.nodes[0].attributes["K"] = int_attr(65);  // B no longer fits K
  ort.graph.inputs[0].type.dims[1] = Dim{-1, "k"};
  CompiledModel compiled(ort, default_compile_options(1));
  Tensor x(DType::kFloat32, {1, 65});
  try {
    compiled.run({{"x", x}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("B must be uint8"), std::string::npos) << e.what();
  }
  EXPECT_EQ(compiled.describe_plan().find("gemm_w4"), std::string::npos) << compiled.describe_plan();
}

}  // namespace
}  // namespace kvant
