// Control flow in the compiled runtime (runtime/steps_control.cc): If, Loop
// and Scan nodes run their reference kernels with each body compiled as a
// model of its own; bodies read outer values (captures), may return one
// directly, nest, and use fast kernels inside. Every case equals the
// reference executor.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

Tensor uniform(Shape shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  Tensor t(DType::kFloat32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

ValueInfo info(const std::string& name, DType dtype, Shape shape) {
  ValueInfo v;
  v.name = name;
  v.type.dtype = dtype;
  v.type.has_shape = true;
  for (int64_t d : shape) v.type.dims.push_back(Dim{d, ""});
  return v;
}

Attribute graph_attr(Graph g) {
  Attribute a;
  a.kind = Attribute::Kind::kGraph;
  a.g = std::make_shared<Graph>(std::move(g));
  return a;
}

// Equal to the reference: within float rounding of a sum (the bodies' Convs
// run on the packed FP32 kernels, whose sums are ordered differently), 1e-5
// of the output's largest magnitude.
void expect_same(const std::map<std::string, Tensor>& a, const std::map<std::string, Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    const Tensor& u = b.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    ASSERT_EQ(t.dtype(), u.dtype()) << name;
    double peak = 0;
    for (int64_t i = 0; i < u.numel(); ++i) peak = std::max(peak, std::abs(u.get_as_double(i)));
    for (int64_t i = 0; i < t.numel(); ++i)
      EXPECT_NEAR(t.get_as_double(i), u.get_as_double(i), 1e-5 * peak) << name << "[" << i << "]";
  }
}

// x [1,4,8,8], flag: If(flag) { then: Conv(x, W) + outer bias b -> Relu } else { the outer x itself };
// then y = If output * 2.
Model if_model() {
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs = {info("x", DType::kFloat32, {1, 4, 8, 8}), info("flag", DType::kBool, {})};
  g.outputs = {info("y", DType::kFloat32, {})};
  g.outputs[0].type.has_shape = false;
  g.initializers["W"] = uniform({4, 4, 3, 3}, 1);
  g.initializers["two"] = Tensor::scalar<float>(2.0f);
  g.nodes.push_back(make_node("bias", "Mul", {"x", "two"}, {"b"}));  // a computed outer value
  Graph then_g;
  then_g.name = "then";
  then_g.outputs = {info("t_out", DType::kFloat32, {})};
  then_g.outputs[0].type.has_shape = false;
  Node conv = make_node("conv", "Conv", {"x", "W"}, {"c"});
  set_attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  then_g.nodes = {conv, make_node("add", "Add", {"c", "b"}, {"s"}), make_node("relu", "Relu", {"s"}, {"t_out"})};
  Graph else_g;
  else_g.name = "else";
  else_g.outputs = {info("x", DType::kFloat32, {})};  // an outer value returned as is
  else_g.outputs[0].type.has_shape = false;
  Node if_node = make_node("if", "If", {"flag"}, {"r"});
  if_node.attributes["then_branch"] = graph_attr(then_g);
  if_node.attributes["else_branch"] = graph_attr(else_g);
  g.nodes.push_back(if_node);
  g.nodes.push_back(make_node("double", "Mul", {"r", "two"}, {"y"}));
  return m;
}

TEST(ControlFlowCompiled, IfBranchesReadAndReturnOuterValues) {
  const Model m = if_model();
  CompiledModel compiled(m, default_compile_options(2));
  ReferenceExecutor reference(m);
  for (bool flag : {true, false, true}) {
    std::map<std::string, Tensor> feeds = {{"x", uniform({1, 4, 8, 8}, flag ? 5 : 6)},
                                           {"flag", Tensor::scalar<bool>(flag)}};
    const auto got = compiled.run(feeds);
    expect_same(got, reference.run(feeds));
    if (!flag) {  // the else branch returned x itself: y = 2x
      for (int64_t i = 0; i < 256; ++i) EXPECT_EQ(got.at("y").data<float>()[i], 2 * feeds.at("x").data<float>()[i]);
    }
  }
  EXPECT_NE(compiled.describe_plan().find("control flow If (bodies compiled)"), std::string::npos)
      << compiled.describe_plan();
}

// Loop(M, cond, s0) { s' = s * a + i (a captured), scan out: s' } ; a nested If in the body picks
// Add or Sub of the outer c by the iteration's parity.
Model loop_model() {
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs = {info("s0", DType::kFloat32, {3}), info("a", DType::kFloat32, {3}), info("c", DType::kFloat32, {3})};
  g.outputs = {info("s_final", DType::kFloat32, {}), info("scan", DType::kFloat32, {})};
  for (auto& o : g.outputs) o.type.has_shape = false;
  g.initializers["M"] = Tensor::scalar<int64_t>(5);
  g.initializers["two"] = Tensor::scalar<int64_t>(2);
  g.initializers["zero"] = Tensor::scalar<int64_t>(0);
  Graph body;
  body.name = "body";
  body.inputs = {info("i", DType::kInt64, {}), info("cond", DType::kBool, {}), info("s", DType::kFloat32, {3})};
  body.outputs = {info("cond_out", DType::kBool, {}), info("s_next", DType::kFloat32, {}),
                  info("s_scan", DType::kFloat32, {})};
  for (auto& o : body.outputs) o.type.has_shape = false;
  Node cast = make_node("cast", "Cast", {"i"}, {"fi"});
  set_attr(cast, "to", static_cast<int64_t>(DType::kFloat32));
  Graph add_g, sub_g;
  add_g.name = "even";
  add_g.outputs = {info("e", DType::kFloat32, {})};
  add_g.outputs[0].type.has_shape = false;
  add_g.nodes = {make_node("e_add", "Add", {"m", "c"}, {"e"})};  // m: the body's, c: the outermost graph's
  sub_g.name = "odd";
  sub_g.outputs = {info("o", DType::kFloat32, {})};
  sub_g.outputs[0].type.has_shape = false;
  sub_g.nodes = {make_node("o_sub", "Sub", {"m", "c"}, {"o"})};
  Node parity = make_node("inner_if", "If", {"is_even"}, {"p"});
  parity.attributes["then_branch"] = graph_attr(add_g);
  parity.attributes["else_branch"] = graph_attr(sub_g);
  body.nodes = {make_node("mul", "Mul", {"s", "a"}, {"m"}),
                make_node("mod", "Mod", {"i", "two"}, {"r"}),
                make_node("eq", "Equal", {"r", "zero"}, {"is_even"}),
                parity,
                cast,
                make_node("add_i", "Add", {"p", "fi"}, {"s_next"}),
                make_node("id_cond", "Identity", {"cond"}, {"cond_out"}),
                make_node("id_scan", "Identity", {"s_next"}, {"s_scan"})};
  Node loop = make_node("loop", "Loop", {"M", "", "s0"}, {"s_final", "scan"});
  loop.attributes["body"] = graph_attr(body);
  g.nodes = {loop};
  return m;
}

TEST(ControlFlowCompiled, LoopWithNestedIfReadsOuterScopes) {
  const Model m = loop_model();
  CompiledModel compiled(m);
  ReferenceExecutor reference(m);
  for (uint32_t seed : {1u, 2u}) {
    std::map<std::string, Tensor> feeds = {
        {"s0", uniform({3}, seed)}, {"a", uniform({3}, seed + 10)}, {"c", uniform({3}, seed + 20)}};
    const auto got = compiled.run(feeds);
    expect_same(got, reference.run(feeds));
    EXPECT_EQ(got.at("scan").shape(), (Shape{5, 3}));
  }
}

// Loop(8) { s' = Concat(s, a) }: the state grows every iteration, so the
// body's input shapes never repeat (after a few new plans it runs on the
// reference executor); the result is the same either way.
TEST(ControlFlowCompiled, LoopWithGrowingStateMatchesTheReference) {
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs = {info("s0", DType::kFloat32, {1, 2}), info("a", DType::kFloat32, {1, 2})};
  g.outputs = {info("s_final", DType::kFloat32, {})};
  g.outputs[0].type.has_shape = false;
  g.initializers["M"] = Tensor::scalar<int64_t>(8);
  Graph body;
  body.name = "grow";
  body.inputs = {info("i", DType::kInt64, {}), info("cond", DType::kBool, {}), info("s", DType::kFloat32, {})};
  body.inputs[2].type.has_shape = false;
  body.outputs = {info("cond_out", DType::kBool, {}), info("s_next", DType::kFloat32, {})};
  for (auto& o : body.outputs) o.type.has_shape = false;
  Node concat = make_node("cat", "Concat", {"s", "a_scaled"}, {"s_next"});
  set_attr(concat, "axis", int64_t{1});
  body.nodes = {make_node("scale", "Mul", {"a", "a"}, {"a_scaled"}), concat,
                make_node("id_cond", "Identity", {"cond"}, {"cond_out"})};
  Node loop = make_node("loop", "Loop", {"M", "", "s0"}, {"s_final"});
  loop.attributes["body"] = graph_attr(body);
  g.nodes = {loop};
  CompiledModel compiled(m);
  ReferenceExecutor reference(m);
  for (uint32_t seed : {1u, 2u}) {
    std::map<std::string, Tensor> feeds = {{"s0", uniform({1, 2}, seed)}, {"a", uniform({1, 2}, seed + 7)}};
    const auto got = compiled.run(feeds);
    expect_same(got, reference.run(feeds));
    EXPECT_EQ(got.at("s_final").shape(), (Shape{1, 18}));
  }
}

// A branch whose output is a constant of its own (the ONNX test_if case).
TEST(ControlFlowCompiled, BranchReturningItsOwnConstant) {
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs = {info("flag", DType::kBool, {})};
  g.outputs = {info("y", DType::kFloat32, {})};
  g.outputs[0].type.has_shape = false;
  Graph a, b;
  a.name = "a";
  a.initializers["ca"] = uniform({4}, 3);
  a.outputs = {info("ca", DType::kFloat32, {4})};
  b.name = "b";
  b.initializers["cb"] = uniform({4}, 4);
  b.outputs = {info("cb", DType::kFloat32, {4})};
  Node if_node = make_node("if", "If", {"flag"}, {"y"});
  if_node.attributes["then_branch"] = graph_attr(a);
  if_node.attributes["else_branch"] = graph_attr(b);
  g.nodes = {if_node};
  CompiledModel compiled(m);
  ReferenceExecutor reference(m);
  for (bool flag : {true, false}) {
    std::map<std::string, Tensor> feeds = {{"flag", Tensor::scalar<bool>(flag)}};
    expect_same(compiled.run(feeds), reference.run(feeds));
  }
}

}  // namespace
}  // namespace kvant
