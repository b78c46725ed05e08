// The layout of static QDQ files that ONNX Runtime's QDQ selectors fuse
// (docs/interop.md, decision 27), and that kvant's compiled runtime still
// runs on its fused integer steps, agreeing with the QDQ simulation.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "quant/quantize.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

Tensor uniform(Shape shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

Node conv(const std::string& name, const std::string& x, const std::string& w, const std::string& b,
          const std::string& y) {
  Node n = make_node(name, "Conv", {x, w, b}, {y});
  set_attr(n, "pads", {1, 1, 1, 1});
  return n;
}

// x[1,4,6,6] -> conv a (Wa, b) -> relu -> conv c (Wc, b) -> ra ; x -> conv d (Wd, b) -> rd ;
// Add(c, rd) -> Relu -> r -> GlobalAveragePool -> Flatten -> Gemm(Wf [4,3], bf) -> y.
// One bias initializer "b" is read by all three Convs, as PyTorch writes
// aliased equal initializers.
Model residual_model() {
  std::mt19937 rng(21);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {4, ""}, {6, ""}, {6, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {3, ""}}}});
  for (const char* w : {"Wa", "Wc", "Wd"}) g.initializers[w] = uniform({4, 4, 3, 3}, rng, -0.3f, 0.3f);
  g.initializers["b"] = uniform({4}, rng, -0.1f, 0.1f);
  g.initializers["Wf"] = uniform({4, 3}, rng);
  g.initializers["bf"] = uniform({3}, rng, -0.1f, 0.1f);
  g.nodes = {conv("a", "x", "Wa", "b", "ca"),
             make_node("relu_a", "Relu", {"ca"}, {"ra"}),
             conv("c", "ra", "Wc", "b", "cc"),
             conv("d", "x", "Wd", "b", "rd"),
             make_node("add", "Add", {"cc", "rd"}, {"s"}),
             make_node("relu", "Relu", {"s"}, {"r"}),
             make_node("gap", "GlobalAveragePool", {"r"}, {"p"}),
             make_node("flatten", "Flatten", {"p"}, {"f"}),
             make_node("fc", "Gemm", {"f", "Wf", "bf"}, {"y"})};
  return m;
}

VectorSource samples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < n; ++i) v.push_back({{"x", uniform({1, 4, 6, 6}, rng)}});
  return VectorSource(v);
}

const Node* find_node(const Graph& g, const std::string& name) {
  for (const Node& n : g.nodes) {
    if (n.name == name) return &n;
  }
  return nullptr;
}

const Node* producer(const Graph& g, const std::string& value) {
  for (const Node& n : g.nodes) {
    for (const auto& o : n.outputs) {
      if (o == value) return &n;
    }
  }
  return nullptr;
}

float scalar(const Graph& g, const std::string& name) { return g.initializers.at(name).data<float>()[0]; }

Model quantized_residual() {
  VectorSource calib = samples(16, 1);
  QuantizeOptions options;
  return quantize_static(residual_model(), calib, options, nullptr);
}

TEST(StaticLayout, ABiasReadByThreeConvsIsQuantizedOncePerConvInItsOwnScale) {
  const Model q = quantized_residual();
  const Graph& g = q.graph;
  std::set<std::string> biases;
  for (const char* name : {"a", "c", "d"}) {
    const Node* n = find_node(g, name);
    ASSERT_NE(n, nullptr) << name;
    ASSERT_EQ(n->inputs.size(), 3u);
    biases.insert(n->inputs[2]);
    const Node* dq = producer(g, n->inputs[2]);
    ASSERT_NE(dq, nullptr) << name;
    ASSERT_EQ(dq->op_type, "DequantizeLinear") << name;
    EXPECT_EQ(g.initializers.at(dq->inputs[0]).dtype(), DType::kInt32) << name;
    // bias scale[c] = input scale x weight scale[c] of this node.
    const Node* x_dq = producer(g, n->inputs[0]);
    const Node* w_dq = producer(g, n->inputs[1]);
    ASSERT_TRUE(x_dq && w_dq) << name;
    const float x_scale = scalar(g, x_dq->inputs[1]);
    const Tensor& w_scale = g.initializers.at(w_dq->inputs[1]);
    const Tensor& b_scale = g.initializers.at(dq->inputs[1]);
    ASSERT_EQ(b_scale.numel(), 4) << name;
    for (int k = 0; k < 4; ++k) EXPECT_FLOAT_EQ(b_scale.data<float>()[k], x_scale * w_scale.data<float>()[k]) << name;
  }
  EXPECT_EQ(biases.size(), 3u) << "each Conv reads its own bias DequantizeLinear";
  EXPECT_FALSE(g.initializers.count("b")) << "the shared float bias is not written when nothing reads it";
}

TEST(StaticLayout, WeightDequantizeLinearHasAnExplicitZeroPoint) {
  const Model q = quantized_residual();
  const Graph& g = q.graph;
  for (const char* name : {"a", "fc"}) {
    const Node* w_dq = producer(g, find_node(g, name)->inputs[1]);
    ASSERT_NE(w_dq, nullptr) << name;
    ASSERT_EQ(w_dq->inputs.size(), 3u) << name << ": ONNX Runtime builds QGemm only with a weight zero point";
    const Tensor& zp = g.initializers.at(w_dq->inputs[2]);
    EXPECT_EQ(zp.dtype(), DType::kInt8) << name;
    for (int64_t i = 0; i < zp.numel(); ++i) EXPECT_EQ(zp.data<int8_t>()[i], 0) << name;
  }
}

TEST(StaticLayout, ReluAfterAnAddIsQuantizedAfterTheRelu) {
  const Model q = quantized_residual();
  const Graph& g = q.graph;
  EXPECT_EQ(find_node(g, "s/QuantizeLinear"), nullptr) << "no Q/DQ between the Add and its Relu";
  EXPECT_NE(find_node(g, "r/QuantizeLinear"), nullptr);
  EXPECT_EQ(find_node(g, "relu")->inputs[0], "s") << "the Relu reads the Add's output directly";
}

TEST(StaticLayout, TheCompiledRuntimeRunsItOnFusedStepsAndAgreesWithTheQdqSimulation) {
  const Model q = quantized_residual();
  CompiledModel compiled(q, default_compile_options(1));
  VectorSource test = samples(4, 9);
  ReferenceExecutor reference(q);
  const Model fp32 = residual_model();
  ReferenceExecutor float_ref(fp32);
  while (auto feed = test.next()) {
    const Tensor want = reference.run(*feed).at("y");
    const Tensor got = compiled.run(*feed).at("y");
    const Tensor exact = float_ref.run(*feed).at("y");
    ASSERT_EQ(got.numel(), want.numel());
    for (int64_t i = 0; i < got.numel(); ++i) {
      EXPECT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-4 + 1e-3 * std::abs(want.data<float>()[i]));
      EXPECT_NEAR(got.data<float>()[i], exact.data<float>()[i], 0.1) << "close to FP32 too";
    }
  }
  const std::string plan = compiled.describe_plan();
  EXPECT_EQ(compiled.stats().fallback_steps, 0) << plan;
  EXPECT_NE(plan.find("qadd"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("lookup_table (Relu)"), std::string::npos) << "the Relu is applied by the qadd step\n" << plan;
}

}  // namespace
}  // namespace kvant
