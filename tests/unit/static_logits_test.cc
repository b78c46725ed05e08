// Design decision 68: in static mode a Gemm/MatMul writing a graph output
// (logits) leaves it float; 8-bit logits made near-ties exact ties.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

Tensor random_tensor(Shape shape, std::mt19937& rng, float lo, float hi) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

VectorSource samples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < n; ++i) v.push_back({{"x", random_tensor({1, 2, 6, 6}, rng, -1.0f, 1.0f)}});
  return VectorSource(v);
}

const Node* quantize_of(const Graph& g, const std::string& value) {
  for (const Node& n : g.nodes) {
    if (n.name == value + "/QuantizeLinear") return &n;
  }
  return nullptr;
}

// x[1,2,6,6] -> conv1 -> c1 -> HardSigmoid -> h1;  conv2 -> c2 -> HardSwish -> h2;  Mul(h1, h2) -> m
//            -> conv3 -> c3 -> HardSwish -> h3;  Add(m, c3) -> a;  Add(a, h3) -> s
// s -> GlobalAveragePool -> Flatten -> Gemm(4x3) -> y (a graph output)
Model se_like_model() {
  std::mt19937 rng(11);
  Model m;
  m.opset_imports[""] = 17;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {2, ""}, {6, ""}, {6, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {3, ""}}}});
  std::vector<Node> nodes;
  for (const char* k : {"1", "2", "3"}) {
    const std::string w = std::string("W") + k;
    g.initializers[w] = random_tensor({4, 2, 3, 3}, rng, -4.0f, 4.0f);  // outputs about +-20
    Node conv = make_node(std::string("conv") + k, "Conv", {"x", w}, {std::string("c") + k});
    set_attr(conv, "pads", {1, 1, 1, 1});
    nodes.push_back(conv);
  }
  g.initializers["W4"] = random_tensor({4, 3}, rng, -1.0f, 1.0f);
  g.initializers["b4"] = random_tensor({3}, rng, -1.0f, 1.0f);
  Node hsig = make_node("hsig", "HardSigmoid", {"c1"}, {"h1"});
  for (auto [key, value] : {std::pair<const char*, float>{"alpha", 1.0f / 6.0f}, {"beta", 0.5f}}) {
    Attribute& attr = hsig.attributes[key];
    attr.kind = Attribute::Kind::kFloat;
    attr.f = value;
  }
  nodes.push_back(hsig);
  nodes.push_back(make_node("hswish2", "HardSwish", {"c2"}, {"h2"}));
  nodes.push_back(make_node("hswish3", "HardSwish", {"c3"}, {"h3"}));
  nodes.push_back(make_node("mul", "Mul", {"h1", "h2"}, {"m"}));
  nodes.push_back(make_node("add", "Add", {"m", "c3"}, {"a"}));
  nodes.push_back(make_node("add2", "Add", {"a", "h3"}, {"s"}));
  nodes.push_back(make_node("gap", "GlobalAveragePool", {"s"}, {"p"}));
  nodes.push_back(make_node("flatten", "Flatten", {"p"}, {"f"}));
  nodes.push_back(make_node("fc", "Gemm", {"f", "W4", "b4"}, {"y"}));
  g.nodes = nodes;
  return m;
}

TEST(StaticLogits, LogitsOfAGemmStayFloat) {
  const Model fp32 = se_like_model();
  VectorSource calib = samples(16, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
  const Graph& g = q.graph;
  EXPECT_EQ(quantize_of(g, "y"), nullptr) << "8-bit logits turn near-ties into ties\n" << print_graph(g);
  EXPECT_NE(quantize_of(g, "f"), nullptr) << "the Gemm's input is still quantized";
  EXPECT_TRUE(g.initializers.count("W4/q")) << "and its weight";
  EXPECT_EQ(g.outputs[0].name, "y");
  // The layer is still reported (its float output compared with FP32's).
  const bool reported = std::any_of(summary.layer_outputs.begin(), summary.layer_outputs.end(),
                                    [](const auto& l) { return l.first == "fc" && l.second == "y"; });
  EXPECT_TRUE(reported);
  // Float logits: no two outputs collapse onto one code.
  ReferenceExecutor a(fp32), b(q);
  VectorSource test = samples(8, 7);
  while (auto feed = test.next()) {
    const Tensor ya = a.run(*feed).at("y"), yb = b.run(*feed).at("y");
    for (int64_t i = 0; i < ya.numel(); ++i) {
      for (int64_t j = i + 1; j < ya.numel(); ++j) {
        if (ya.data<float>()[i] != ya.data<float>()[j]) {
          EXPECT_NE(yb.data<float>()[i], yb.data<float>()[j]);
        }
      }
    }
  }
}

}  // namespace
}  // namespace kvant
