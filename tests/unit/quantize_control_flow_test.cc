// Quantization inside control flow and around nodes kvant cannot run
// (design decisions 24, 25): dynamic quantization rewrites the layers inside
// If/Loop bodies whose weights live in the main graph; static calibration
// runs the part of a model it can and leaves a custom operator, and what
// only it feeds, in FP32 with the reason in the summary.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <random>

#include "graph_builders.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

using test_graphs::cosine;
using test_graphs::graph_attr;
using test_graphs::random_tensor;
using test_graphs::typed;
using test_graphs::untyped;

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.op_type == op;
  return n;
}

// y = If(c) { MatMul(x, W1) } else { Relu(MatMul(x, W2)) };
// z = Loop(2, cond, s = x) { s = MatMul(s, W3) }   (all weights main-graph initializers)
Model control_flow_model() {
  Model m;
  m.opset_imports[""] = 13;
  m.graph.name = "control_flow";
  auto then_g = std::make_shared<Graph>();
  then_g->name = "then";
  then_g->nodes = {make_node("mm_then", "MatMul", {"x", "W1"}, {"y_then"})};
  then_g->outputs = {untyped("y_then")};
  auto else_g = std::make_shared<Graph>();
  else_g->name = "else";
  else_g->nodes = {make_node("mm_else", "MatMul", {"x", "W2"}, {"h_else"}),
                   make_node("relu_else", "Relu", {"h_else"}, {"y_else"})};
  else_g->outputs = {untyped("y_else")};
  Node iff = make_node("if", "If", {"c"}, {"y"});
  iff.attributes["then_branch"] = graph_attr(then_g);
  iff.attributes["else_branch"] = graph_attr(else_g);
  auto body = std::make_shared<Graph>();
  body->name = "body";
  body->inputs = {typed("i", DType::kInt64, {}), typed("cond_in", DType::kBool, {}), untyped("s")};
  body->nodes = {make_node("mm_loop", "MatMul", {"s", "W3"}, {"s_next"}),
                 make_node("keep", "Identity", {"cond_in"}, {"cond_out"})};
  body->outputs = {untyped("cond_out"), untyped("s_next")};
  Node loop = make_node("loop", "Loop", {"trips", "cond0", "x"}, {"z"});
  loop.attributes["body"] = graph_attr(body);
  m.graph.nodes = {iff, loop};
  m.graph.inputs = {typed("c", DType::kBool, {}), typed("x", DType::kFloat32, {3, 16})};
  m.graph.outputs = {untyped("y"), untyped("z")};
  m.graph.initializers["W1"] = random_tensor({16, 8}, 1, 0.3f);
  m.graph.initializers["W2"] = random_tensor({16, 8}, 2, 0.3f);
  m.graph.initializers["W3"] = random_tensor({16, 16}, 3, 0.25f);
  m.graph.initializers["trips"] = Tensor::scalar<int64_t>(2);
  m.graph.initializers["cond0"] = Tensor::scalar<bool>(true);
  return m;
}

TEST(QuantizeControlFlow, DynamicRewritesLayersInsideIfAndLoopBodies) {
  const Model fp32 = control_flow_model();
  QuantizeSummary summary;
  const Model q = quantize_dynamic(fp32, QuantizeOptions{}, &summary);
  EXPECT_EQ(summary.quantized_nodes, 3);
  for (const Node& n : q.graph.nodes) {
    for (const char* key : {"then_branch", "else_branch", "body"}) {
      const Graph* body = n.attr_graph(key);
      if (body == nullptr) continue;
      EXPECT_EQ(count_op(*body, "MatMulInteger"), 1) << key << "\n" << print_graph(*body);
      EXPECT_EQ(count_op(*body, "MatMul"), 0) << key;
    }
  }
  // The FP32 weights are gone from the main graph; the original is untouched.
  for (const char* w : {"W1", "W2", "W3"}) EXPECT_EQ(q.graph.initializers.count(w), 0u) << w;
  EXPECT_EQ(count_op(*fp32.graph.nodes[0].attr_graph("then_branch"), "MatMul"), 1);
  for (bool c : {true, false}) {
    const std::map<std::string, Tensor> feeds = {{"c", Tensor::scalar<bool>(c)}, {"x", random_tensor({3, 16}, 9)}};
    const auto want = ReferenceExecutor(fp32).run(feeds);
    const auto got = ReferenceExecutor(q).run(feeds);
    for (const char* out : {"y", "z"}) {
      ASSERT_EQ(want.at(out).shape(), got.at(out).shape()) << out;
      EXPECT_GT(cosine(want.at(out), got.at(out)), 0.999) << out << " with c = " << c;
      EXPECT_LT(cosine(want.at(out), got.at(out)), 1.0 - 1e-9) << out << ": no quantization error at all?";
    }
  }
}

TEST(QuantizeControlFlow, ExcludingAnIfKeepsItsBranchesFloat) {
  QuantizeOptions options;
  options.exclude = {"if"};
  QuantizeSummary summary;
  const Model q = quantize_dynamic(control_flow_model(), options, &summary);
  EXPECT_EQ(summary.quantized_nodes, 1) << "only the Loop body's MatMul";
  EXPECT_EQ(count_op(*q.graph.nodes[0].attr_graph("then_branch"), "MatMul"), 1);
  EXPECT_EQ(q.graph.initializers.count("W1"), 1u);
}

// Calibration samples for control_flow_model(): x random, c as given.
class FlagSamples : public SampleSource {
 public:
  explicit FlagSamples(std::vector<bool> flags) : flags_(std::move(flags)) {}
  std::optional<std::map<std::string, Tensor>> next() override {
    if (k_ >= flags_.size()) return std::nullopt;
    const bool c = flags_[k_];
    return std::map<std::string, Tensor>{{"c", Tensor::scalar<bool>(c)},
                                         {"x", random_tensor({3, 16}, 50 + static_cast<uint32_t>(k_++))}};
  }
  void reset() override { k_ = 0; }
  int64_t size() const override { return static_cast<int64_t>(flags_.size()); }

 private:
  std::vector<bool> flags_;
  size_t k_ = 0;
};

int count_in_bodies(const Graph& g, const std::string& op, const char* key) {
  for (const Node& n : g.nodes) {
    if (const Graph* body = n.attr_graph(key)) return count_op(*body, op);
  }
  return -1;
}

// --exclude names nodes inside bodies too (by name or operator type); a
// name that is nowhere is still an error.
TEST(QuantizeControlFlow, ExcludeNamesNodesInsideBodies) {
  QuantizeOptions options;
  options.exclude = {"mm_then"};
  QuantizeSummary summary;
  const Model q = quantize_dynamic(control_flow_model(), options, &summary);
  EXPECT_EQ(summary.quantized_nodes, 2) << "the else branch's and the Loop body's MatMuls";
  EXPECT_EQ(count_op(*q.graph.nodes[0].attr_graph("then_branch"), "MatMul"), 1);
  EXPECT_EQ(count_op(*q.graph.nodes[0].attr_graph("then_branch"), "MatMulInteger"), 0);
  EXPECT_EQ(count_op(*q.graph.nodes[0].attr_graph("else_branch"), "MatMulInteger"), 1);

  options.exclude = {"MatMul"};  // every MatMul, at any depth
  QuantizeSummary all;
  const Model none = quantize_dynamic(control_flow_model(), options, &all);
  EXPECT_EQ(all.quantized_nodes, 0);
  EXPECT_EQ(count_op(*none.graph.nodes[1].attr_graph("body"), "MatMul"), 1);

  options.exclude = {"mm_nowhere"};
  EXPECT_THROW(quantize_dynamic(control_flow_model(), options, nullptr), Error);

  // Static: the excluded body layer keeps no Q/DQ and the report says why.
  options.exclude = {"mm_loop"};
  FlagSamples both({true, false});
  QuantizeSummary s;
  const Model sq = quantize_static(control_flow_model(), both, options, &s);
  EXPECT_EQ(s.quantized_nodes, 2) << "the two If branches";
  EXPECT_EQ(count_in_bodies(sq.graph, "QuantizeLinear", "body"), 0);
  std::map<std::string, std::string> reasons(s.fp32_reasons.begin(), s.fp32_reasons.end());
  ASSERT_TRUE(reasons.count("mm_loop"));
  EXPECT_NE(reasons["mm_loop"].find("--exclude"), std::string::npos) << reasons["mm_loop"];
}

TEST(QuantizeControlFlow, StaticCalibratesTheBranchesSamplesTake) {
  const Model fp32 = control_flow_model();
  // Only c = true during calibration: the else branch is never computed.
  FlagSamples only_then({true, true});
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, only_then, QuantizeOptions{}, &summary);
  EXPECT_EQ(summary.quantized_nodes, 2) << "then-branch and Loop-body MatMuls";
  EXPECT_GE(count_in_bodies(q.graph, "QuantizeLinear", "then_branch"), 2);
  EXPECT_GE(count_in_bodies(q.graph, "QuantizeLinear", "body"), 2) << "the loop-carried state is calibrated";
  EXPECT_EQ(count_in_bodies(q.graph, "QuantizeLinear", "else_branch"), 0);
  std::map<std::string, std::string> reasons(summary.fp32_reasons.begin(), summary.fp32_reasons.end());
  ASSERT_TRUE(reasons.count("mm_else"));
  EXPECT_NE(reasons["mm_else"].find("never computed"), std::string::npos) << reasons["mm_else"];
  for (bool c : {true, false}) {
    const std::map<std::string, Tensor> feeds = {{"c", Tensor::scalar<bool>(c)}, {"x", random_tensor({3, 16}, 51)}};
    const auto want = ReferenceExecutor(fp32).run(feeds);
    const auto got = ReferenceExecutor(q).run(feeds);
    for (const char* out : {"y", "z"}) EXPECT_GT(cosine(want.at(out), got.at(out)), 0.999) << out << " c=" << c;
    if (!c) {
      EXPECT_EQ(cosine(want.at("y"), got.at("y")), 1.0) << "the FP32 else branch";
    }
  }
  // Both branches seen: all three layers quantized.
  FlagSamples both({true, false});
  QuantizeSummary summary2;
  const Model q2 = quantize_static(fp32, both, QuantizeOptions{}, &summary2);
  EXPECT_EQ(summary2.quantized_nodes, 3);
  EXPECT_GE(count_in_bodies(q2.graph, "QuantizeLinear", "else_branch"), 2);
  // The main graph's FP32 weights moved into the bodies and left the main graph.
  for (const char* w : {"W1", "W2", "W3"}) EXPECT_EQ(q2.graph.initializers.count(w), 0u) << w;
}

// x -> conv_a -> com.example.Foo -> conv_b -> "after";  conv_a -> conv_c -> "beside"
Model custom_op_model() {
  Model m;
  m.opset_imports[""] = 13;
  m.opset_imports["com.example"] = 1;
  m.graph.name = "custom";
  Node foo = make_node("foo", "Foo", {"a"}, {"f"});
  foo.domain = "com.example";
  m.graph.nodes = {make_node("conv_a", "Conv", {"x", "wa"}, {"a"}), foo,
                   make_node("conv_b", "Conv", {"f", "wb"}, {"after"}),
                   make_node("conv_c", "Conv", {"a", "wc"}, {"beside"})};
  m.graph.inputs = {typed("x", DType::kFloat32, {1, 2, 5, 5})};
  m.graph.outputs = {untyped("after"), untyped("beside")};
  m.graph.initializers["wa"] = random_tensor({3, 2, 1, 1}, 4);
  m.graph.initializers["wb"] = random_tensor({3, 3, 1, 1}, 5);
  m.graph.initializers["wc"] = random_tensor({2, 3, 1, 1}, 6);
  return m;
}

class TwoSamples : public SampleSource {
 public:
  std::optional<std::map<std::string, Tensor>> next() override {
    if (k_ >= 2) return std::nullopt;
    return std::map<std::string, Tensor>{{"x", random_tensor({1, 2, 5, 5}, 100 + static_cast<uint32_t>(k_++))}};
  }
  void reset() override { k_ = 0; }
  int64_t size() const override { return 2; }

 private:
  int64_t k_ = 0;
};

TEST(QuantizeUnknownOp, StaticCalibratesAroundACustomOperator) {
  const Model fp32 = custom_op_model();
  TwoSamples calib;
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
  std::map<std::string, std::string> reasons(summary.fp32_reasons.begin(), summary.fp32_reasons.end());
  ASSERT_TRUE(reasons.count("foo"));
  EXPECT_NE(reasons["foo"].find("com.example.Foo"), std::string::npos) << reasons["foo"];
  ASSERT_TRUE(reasons.count("conv_b"));
  EXPECT_NE(reasons["conv_b"].find("foo"), std::string::npos) << reasons["conv_b"];
  // conv_a and conv_c read dequantized weights; conv_b keeps its FP32 weight.
  std::map<std::string, const Node*> convs;
  for (const Node& n : q.graph.nodes) {
    if (n.op_type == "Conv") convs[n.name] = &n;
  }
  ASSERT_EQ(convs.size(), 3u);
  EXPECT_EQ(convs["conv_b"]->inputs[1], "wb");
  EXPECT_TRUE(q.graph.initializers.at("wb").dtype() == DType::kFloat32);
  bool a_quantized = false, c_quantized = false;
  for (const Node& n : q.graph.nodes) {
    if (n.op_type != "DequantizeLinear") continue;
    a_quantized = a_quantized || n.outputs[0] == convs["conv_a"]->inputs[1];
    c_quantized = c_quantized || n.outputs[0] == convs["conv_c"]->inputs[1];
  }
  EXPECT_TRUE(a_quantized);
  EXPECT_TRUE(c_quantized);
  EXPECT_EQ(summary.quantized_nodes, 2);
  for (const auto& [node, tensor] : summary.layer_outputs) EXPECT_NE(node, "conv_b");
}

TEST(QuantizeUnknownOp, StaticCalibratesAroundAKernelThatRefusesItsInput) {
  // conv_a -> Cast(to float8, which kvant's kernel refuses) -> Cast(float) -> conv_b; conv_a -> conv_c
  Model m = custom_op_model();
  m.opset_imports.erase("com.example");
  m.opset_imports[""] = 19;
  Node to8 = make_node("c8", "Cast", {"a"}, {"a8"});
  set_attr(to8, "to", int64_t{17});  // float8e4m3fn
  Node back = make_node("c32", "Cast", {"a8"}, {"f"});
  set_attr(back, "to", int64_t{1});
  m.graph.nodes = {m.graph.nodes[0], to8, back, m.graph.nodes[2], m.graph.nodes[3]};
  EXPECT_THROW(ReferenceExecutor(m).run({{"x", random_tensor({1, 2, 5, 5}, 1)}}), Error) << "the premise";
  TwoSamples calib;
  QuantizeSummary summary;
  const Model q = quantize_static(m, calib, QuantizeOptions{}, &summary);
  std::map<std::string, std::string> reasons(summary.fp32_reasons.begin(), summary.fp32_reasons.end());
  ASSERT_TRUE(reasons.count("c8")) << summary.fp32_reasons.size();
  EXPECT_NE(reasons["c8"].find("float8"), std::string::npos) << reasons["c8"];
  EXPECT_TRUE(reasons.count("conv_b"));
  EXPECT_EQ(summary.quantized_nodes, 2);
}

TEST(QuantizeUnknownOp, StaticReasonsForWeightsThatAreNotConstants) {
  Model m;
  m.opset_imports[""] = 13;
  m.graph.nodes = {make_node("conv_const", "Conv", {"x", "w"}, {"a"}),
                   make_node("conv_runtime", "Conv", {"a", "w_in"}, {"y"})};
  m.graph.inputs = {typed("x", DType::kFloat32, {1, 2, 5, 5}), typed("w_in", DType::kFloat32, {2, 3, 1, 1})};
  m.graph.outputs = {untyped("y")};
  m.graph.initializers["w"] = random_tensor({3, 2, 1, 1}, 7);
  struct Feed : SampleSource {
    bool done = false;
    std::optional<std::map<std::string, Tensor>> next() override {
      if (done) return std::nullopt;
      done = true;
      return std::map<std::string, Tensor>{{"x", random_tensor({1, 2, 5, 5}, 8)},
                                           {"w_in", random_tensor({2, 3, 1, 1}, 9)}};
    }
    void reset() override { done = false; }
    int64_t size() const override { return 1; }
  } feed;
  QuantizeSummary summary;
  quantize_static(m, feed, QuantizeOptions{}, &summary);
  ASSERT_EQ(summary.fp32_reasons.size(), 1u);
  EXPECT_EQ(summary.fp32_reasons[0].first, "conv_runtime");
  EXPECT_NE(summary.fp32_reasons[0].second.find("not a constant"), std::string::npos);
}

}  // namespace
}  // namespace kvant
