// Opset upgrade 7..12 -> 13 (passes/upgrade_opset13.cc): each rewrite on a
// small model at the old opset; the reference executor (which follows each
// opset's rules) must give the same outputs before and after, and the
// upgraded graph must use the opset-13 form.
#include "onnx/opset_upgrade.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvant/status.h"
#include "passes/pass.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

ValueInfo f32(const std::string& name, const Shape& shape, bool with_shape = true) {
  ValueInfo v;
  v.name = name;
  v.type.dtype = DType::kFloat32;
  v.type.has_shape = with_shape;
  if (with_shape) {
    for (int64_t d : shape) v.type.dims.push_back(Dim{d, ""});
  }
  return v;
}

ValueInfo untyped(const std::string& name) {
  ValueInfo v;
  v.name = name;
  return v;
}

Model model_at(int64_t opset, std::vector<ValueInfo> inputs, std::vector<Node> nodes, std::vector<ValueInfo> outputs) {
  Model m;
  m.opset_imports[""] = opset;
  m.ir_version = 4;
  m.graph.name = "upgrade_test";
  m.graph.inputs = std::move(inputs);
  m.graph.nodes = std::move(nodes);
  m.graph.outputs = std::move(outputs);
  return m;
}

Tensor random_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  Tensor t(DType::kFloat32, shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

int count_op(const Graph& g, const std::string& op) {
  int n = 0;
  for (const auto& node : g.nodes) n += node.op_type == op;
  return n;
}

// Upgrades a copy of `m`; the outputs on `feeds` must agree before and after
// (1e-6 relative), and the copy must be at opset 13 with IR version >= 7.
Model upgrade_and_compare(const Model& m, const std::map<std::string, Tensor>& feeds) {
  Model after = m;
  upgrade_to_opset13(after);
  EXPECT_EQ(after.opset(), 13);
  EXPECT_GE(after.ir_version, 7);
  const auto want = ReferenceExecutor(m).run(feeds);
  const auto got = ReferenceExecutor(after).run(feeds);
  EXPECT_EQ(want.size(), got.size());
  for (const auto& [name, w] : want) {
    auto it = got.find(name);
    if (it == got.end()) {
      ADD_FAILURE() << "output " << name << " missing after the upgrade\n" << print_graph(after.graph);
      continue;
    }
    const Tensor& g = it->second;
    EXPECT_EQ(w.dtype(), g.dtype()) << name;
    EXPECT_EQ(w.shape(), g.shape()) << name << "\n" << print_graph(after.graph);
    if (w.shape() != g.shape() || w.dtype() != g.dtype()) continue;
    int bad = 0;
    for (int64_t i = 0; i < w.numel() && bad < 5; ++i) {
      const double a = w.get_as_double(i), b = g.get_as_double(i);
      if (std::abs(a - b) > 1e-6 * std::max(std::abs(a), std::abs(b)) + 1e-7) {
        ADD_FAILURE() << name << "[" << i << "]: " << a << " before, " << b << " after\n" << print_graph(after.graph);
        ++bad;
      }
    }
  }
  return after;
}

Model softmax_model(const std::string& op, int64_t axis, const Shape& shape, bool known_shape) {
  Node n = make_node("sm", op, {"x"}, {"y"});
  set_attr(n, "axis", axis);
  return model_at(12, {f32("x", shape, known_shape)}, {n}, {untyped("y")});
}

TEST(UpgradeOpset13, SoftmaxFamilyNotLastAxisFlattens) {
  for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"}) {
    for (bool known : {true, false}) {
      const Model m = softmax_model(op, 1, {2, 3, 4}, known);
      const Model after = upgrade_and_compare(m, {{"x", random_tensor({2, 3, 4}, 1)}});
      EXPECT_EQ(count_op(after.graph, "Flatten"), 1) << op;
      EXPECT_EQ(count_op(after.graph, "Reshape"), 1) << op;
    }
  }
}

TEST(UpgradeOpset13, SoftmaxLastAxisOnlySetsAxis) {
  // axis 2 of rank 3 is the last; axis 1 of [2, 5, 1, 1] has only unit dims after it.
  const Model last = softmax_model("Softmax", 2, {2, 3, 4}, true);
  Model after = upgrade_and_compare(last, {{"x", random_tensor({2, 3, 4}, 2)}});
  ASSERT_EQ(after.graph.nodes.size(), 1u);
  EXPECT_EQ(after.graph.nodes[0].attr_int("axis", 0), 2);
  const Model units = softmax_model("LogSoftmax", 1, {2, 5, 1, 1}, true);
  after = upgrade_and_compare(units, {{"x", random_tensor({2, 5, 1, 1}, 3)}});
  EXPECT_EQ(after.graph.nodes.size(), 1u);
  // Default axis (1) on rank 2 at opset 11.
  Model def = model_at(11, {f32("x", {3, 7})}, {make_node("sm", "Softmax", {"x"}, {"y"})}, {untyped("y")});
  after = upgrade_and_compare(def, {{"x", random_tensor({3, 7}, 4)}});
  EXPECT_EQ(after.graph.nodes.size(), 1u);
  EXPECT_EQ(after.graph.nodes[0].attr_int("axis", 0), 1);
}

TEST(UpgradeOpset13, UpsampleBecomesResize) {
  // Opset 7: scales attribute, nearest.
  Node up7 = make_node("up", "Upsample", {"x"}, {"y"});
  up7.attributes["scales"] = floats_attr({1, 1, 2, 3});
  Model m7 = model_at(7, {f32("x", {1, 2, 3, 4})}, {up7}, {untyped("y")});
  Model after = upgrade_and_compare(m7, {{"x", random_tensor({1, 2, 3, 4}, 5)}});
  EXPECT_EQ(count_op(after.graph, "Upsample"), 0);
  EXPECT_EQ(count_op(after.graph, "Resize"), 1);
  // Opset 9: scales input, linear.
  Node up9 = make_node("up", "Upsample", {"x", "scales"}, {"y"});
  up9.attributes["mode"] = string_attr("linear");
  Model m9 = model_at(9, {f32("x", {1, 2, 3, 4})}, {up9}, {untyped("y")});
  m9.graph.initializers["scales"] = Tensor::from_vector(std::vector<float>{1, 1, 2, 2}, {4});
  after = upgrade_and_compare(m9, {{"x", random_tensor({1, 2, 3, 4}, 6)}});
  EXPECT_EQ(count_op(after.graph, "Resize"), 1);
}

TEST(UpgradeOpset13, Resize10KeepsAsymmetricFloor) {
  for (const char* mode : {"nearest", "linear"}) {
    Node r = make_node("rs", "Resize", {"x", "scales"}, {"y"});
    r.attributes["mode"] = string_attr(mode);
    Model m = model_at(10, {f32("x", {1, 1, 3, 5})}, {r}, {untyped("y")});
    m.graph.initializers["scales"] = Tensor::from_vector(std::vector<float>{1, 1, 2.5f, 1.5f}, {4});
    const Model after = upgrade_and_compare(m, {{"x", random_tensor({1, 1, 3, 5}, 7)}});
    EXPECT_EQ(after.graph.nodes[0].inputs.size(), 3u);
  }
}

TEST(UpgradeOpset13, Resize11TfHalfPixelForNearestBecomesHalfPixel) {
  for (const char* nearest : {"floor", "round_prefer_floor"}) {
    for (float s : {2.0f, 1.5f, 0.6f, 3.0f}) {
      Node r = make_node("rs", "Resize", {"x", "roi", "scales"}, {"y"});
      r.attributes["mode"] = string_attr("nearest");
      r.attributes["coordinate_transformation_mode"] = string_attr("tf_half_pixel_for_nn");
      r.attributes["nearest_mode"] = string_attr(nearest);
      Model m = model_at(11, {f32("x", {1, 1, 5, 7})}, {r}, {untyped("y")});
      m.graph.initializers["roi"] = Tensor(DType::kFloat32, {0});
      m.graph.initializers["scales"] = Tensor::from_vector(std::vector<float>{1, 1, s, s}, {4});
      const Model after = upgrade_and_compare(m, {{"x", random_tensor({1, 1, 5, 7}, 19)}});
      EXPECT_EQ(after.graph.nodes[0].attr_string("coordinate_transformation_mode", ""), "half_pixel");
    }
  }
  Node r = make_node("rs_ceil", "Resize", {"x", "roi", "scales"}, {"y"});
  r.attributes["coordinate_transformation_mode"] = string_attr("tf_half_pixel_for_nn");
  r.attributes["nearest_mode"] = string_attr("ceil");
  Model m = model_at(11, {f32("x", {1, 1, 5, 7})}, {r}, {untyped("y")});
  EXPECT_THROW(upgrade_to_opset13(m), Error) << "no opset-13 equivalent: named error";
}

TEST(UpgradeOpset13, SliceAndTopKAttributesBecomeInputs) {
  Node s = make_node("sl", "Slice", {"x"}, {"y"});
  set_attr(s, "starts", std::vector<int64_t>{1, 0});
  set_attr(s, "ends", std::vector<int64_t>{3, -1});
  set_attr(s, "axes", std::vector<int64_t>{0, 2});
  Node k = make_node("tk", "TopK", {"x"}, {"v", "i"});
  set_attr(k, "k", int64_t{2});
  Model m = model_at(9, {f32("x", {4, 3, 5})}, {s, k}, {untyped("y"), untyped("v"), untyped("i")});
  const Model after = upgrade_and_compare(m, {{"x", random_tensor({4, 3, 5}, 8)}});
  EXPECT_EQ(after.graph.nodes[0].inputs.size(), 4u);
  EXPECT_TRUE(after.graph.nodes[0].attributes.empty());
  EXPECT_EQ(after.graph.nodes[1].inputs.size(), 2u);
}

TEST(UpgradeOpset13, ClipAndPadAttributesBecomeInputs) {
  Node c1 = make_node("c1", "Clip", {"x"}, {"a"});
  c1.attributes["min"] = float_attr(-0.5f);
  c1.attributes["max"] = float_attr(0.75f);
  Node c2 = make_node("c2", "Clip", {"x"}, {"b"});
  c2.attributes["max"] = float_attr(0.25f);  // only max: min stays omitted
  Node p1 = make_node("p1", "Pad", {"x"}, {"c"});
  set_attr(p1, "pads", std::vector<int64_t>{0, 1, 2, 0, 2, 1});
  p1.attributes["value"] = float_attr(1.5f);
  Node p2 = make_node("p2", "Pad", {"x"}, {"d"});
  set_attr(p2, "pads", std::vector<int64_t>{0, 0, 2, 0, 0, 1});
  p2.attributes["mode"] = string_attr("reflect");
  Model m =
      model_at(9, {f32("x", {2, 3, 4})}, {c1, c2, p1, p2}, {untyped("a"), untyped("b"), untyped("c"), untyped("d")});
  const Model after = upgrade_and_compare(m, {{"x", random_tensor({2, 3, 4}, 9)}});
  EXPECT_EQ(after.graph.nodes[0].inputs.size(), 3u);
  ASSERT_EQ(after.graph.nodes[1].inputs.size(), 3u);
  EXPECT_EQ(after.graph.nodes[1].inputs[1], "");
  EXPECT_EQ(after.graph.nodes[2].inputs.size(), 3u);
}

TEST(UpgradeOpset13, AxesAndSplitAttributesBecomeInputs) {
  Node sp = make_node("sp", "Split", {"x"}, {"s0", "s1"});
  set_attr(sp, "axis", int64_t{2});
  set_attr(sp, "split", std::vector<int64_t>{1, 3});
  Node sq = make_node("sq", "Squeeze", {"s0"}, {"q"});
  set_attr(sq, "axes", std::vector<int64_t>{-1});
  Node un = make_node("un", "Unsqueeze", {"q"}, {"u"});
  set_attr(un, "axes", std::vector<int64_t>{0, 3});
  Node rs = make_node("rs", "ReduceSum", {"s1"}, {"r"});
  set_attr(rs, "axes", std::vector<int64_t>{1});
  set_attr(rs, "keepdims", int64_t{0});
  Node all = make_node("all", "ReduceSum", {"x"}, {"t"});  // no axes: every axis, at 11 and 13
  Model m = model_at(11, {f32("x", {2, 3, 4})}, {sp, sq, un, rs, all}, {untyped("u"), untyped("r"), untyped("t")});
  const Model after = upgrade_and_compare(m, {{"x", random_tensor({2, 3, 4}, 10)}});
  for (const Node& n : after.graph.nodes) {
    EXPECT_FALSE(n.has_attr("axes")) << n.name;
    EXPECT_FALSE(n.has_attr("split")) << n.name;
  }
  EXPECT_EQ(after.graph.nodes[4].inputs.size(), 1u);
}

TEST(UpgradeOpset13, BatchNormSpatialZeroAndUnreadTrainingOutputs) {
  const Shape per_element = {3, 2, 2};
  auto bn_model = [&](int64_t spatial, bool training_outputs) {
    std::vector<std::string> outs = {"y"};
    if (training_outputs) outs = {"y", "m", "v", "sm", "sv"};
    Node bn = make_node("bn", "BatchNormalization", {"x", "scale", "B", "mean", "var"}, outs);
    set_attr(bn, "spatial", spatial);
    bn.attributes["epsilon"] = float_attr(1e-3f);
    Model m = model_at(7, {f32("x", {2, 3, 2, 2})}, {bn}, {untyped("y")});
    const Shape p = spatial ? Shape{3} : per_element;
    uint32_t seed = 20;
    for (const char* name : {"scale", "B", "mean"}) m.graph.initializers[name] = random_tensor(p, seed++);
    Tensor var = random_tensor(p, seed);
    for (int64_t i = 0; i < var.numel(); ++i) var.data<float>()[i] = std::abs(var.data<float>()[i]) + 0.1f;
    m.graph.initializers["var"] = var;
    return m;
  };
  const std::map<std::string, Tensor> feeds = {{"x", random_tensor({2, 3, 2, 2}, 11)}};
  Model after = upgrade_and_compare(bn_model(1, false), feeds);
  ASSERT_EQ(after.graph.nodes.size(), 1u);
  EXPECT_FALSE(after.graph.nodes[0].has_attr("spatial"));
  after = upgrade_and_compare(bn_model(0, false), feeds);
  EXPECT_EQ(count_op(after.graph, "BatchNormalization"), 0);
  // Training outputs nobody reads are dropped (kvant's opset-7 kernel refuses
  // to compute them, so the model runs only after the upgrade).
  Model unread = bn_model(1, true);
  upgrade_to_opset13(unread);
  ASSERT_EQ(unread.graph.nodes.size(), 1u);
  EXPECT_EQ(unread.graph.nodes[0].outputs.size(), 1u);
  const Tensor want = ReferenceExecutor(bn_model(1, false)).run(feeds).at("y");
  const Tensor got = ReferenceExecutor(unread).run(feeds).at("y");
  ASSERT_EQ(want.shape(), got.shape());
  for (int64_t i = 0; i < want.numel(); ++i) EXPECT_FLOAT_EQ(want.data<float>()[i], got.data<float>()[i]);
  // A training statistic that is read cannot be carried: named error.
  Model read = bn_model(1, true);
  read.graph.outputs.push_back(untyped("m"));
  try {
    upgrade_to_opset13(read);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"bn\""), std::string::npos) << e.what();
  }
}

TEST(UpgradeOpset13, DropoutRatioInputAndFloatMask) {
  Node d = make_node("drop", "Dropout", {"x"}, {"y", "mask"});
  d.attributes["ratio"] = float_attr(0.3f);
  Node mul = make_node("mul", "Mul", {"y", "mask"}, {"z"});
  Model m = model_at(9, {f32("x", {2, 5})}, {d, mul}, {untyped("z")});
  const Model after = upgrade_and_compare(m, {{"x", random_tensor({2, 5}, 13)}});
  EXPECT_EQ(count_op(after.graph, "Cast"), 1);
  EXPECT_EQ(after.graph.nodes[0].inputs.size(), 2u);
  EXPECT_FALSE(after.graph.nodes[0].has_attr("ratio"));
}

TEST(UpgradeOpset13, ScatterBecomesScatterElements) {
  Node s = make_node("sc", "Scatter", {"x", "idx", "upd"}, {"y"});
  set_attr(s, "axis", int64_t{1});
  Model m = model_at(9, {f32("x", {2, 4})}, {s}, {untyped("y")});
  m.graph.initializers["idx"] = Tensor::from_vector(std::vector<int64_t>{3, 0, 1, 2}, {2, 2});
  m.graph.initializers["upd"] = random_tensor({2, 2}, 14);
  const Model after = upgrade_and_compare(m, {{"x", random_tensor({2, 4}, 15)}});
  EXPECT_EQ(after.graph.nodes[0].op_type, "ScatterElements");
}

TEST(UpgradeOpset13, ExperimentalImageScalerBecomesMulAdd) {
  Node s = make_node("is", "ImageScaler", {"x"}, {"y"});
  s.attributes["scale"] = float_attr(0.5f);
  s.attributes["bias"] = floats_attr({1.0f, -2.0f});
  Model m = model_at(8, {f32("x", {1, 2, 2, 2})}, {s}, {untyped("y")});
  upgrade_to_opset13(m);
  EXPECT_EQ(count_op(m.graph, "ImageScaler"), 0);
  const Tensor x = random_tensor({1, 2, 2, 2}, 16);
  const Tensor y = ReferenceExecutor(m).run({{"x", x}}).at("y");
  for (int64_t i = 0; i < 8; ++i) {
    const float want = 0.5f * x.data<float>()[i] + (i < 4 ? 1.0f : -2.0f);
    EXPECT_FLOAT_EQ(y.data<float>()[i], want) << i;
  }
}

TEST(UpgradeOpset13, SubgraphsAreUpgraded) {
  // If(c) { Unsqueeze-11(x, axes=[0]) } else { Unsqueeze-11(x, axes=[0]) -> Neg }
  auto branch = [](bool neg) {
    auto g = std::make_shared<Graph>();
    g->name = neg ? "else" : "then";
    Node u = make_node(neg ? "u_else" : "u_then", "Unsqueeze", {"x"}, {neg ? "ue" : "out_then"});
    set_attr(u, "axes", std::vector<int64_t>{0});
    g->nodes.push_back(u);
    if (neg) g->nodes.push_back(make_node("neg", "Neg", {"ue"}, {"out_else"}));
    g->outputs = {untyped(neg ? "out_else" : "out_then")};
    return g;
  };
  Node iff = make_node("if", "If", {"c"}, {"y"});
  iff.attributes["then_branch"].kind = Attribute::Kind::kGraph;
  iff.attributes["then_branch"].g = branch(false);
  iff.attributes["else_branch"].kind = Attribute::Kind::kGraph;
  iff.attributes["else_branch"].g = branch(true);
  ValueInfo c;
  c.name = "c";
  c.type.dtype = DType::kBool;
  c.type.has_shape = true;
  Model m = model_at(11, {c, f32("x", {3})}, {iff}, {untyped("y")});
  for (bool cond : {true, false}) {
    const Model after = upgrade_and_compare(m, {{"c", Tensor::scalar<bool>(cond)}, {"x", random_tensor({3}, 17)}});
    // The copy's subgraphs were upgraded, not the original's (they are shared by Model's copy).
    EXPECT_TRUE(m.graph.nodes[0].attr_graph("then_branch")->nodes[0].has_attr("axes"));
    for (const char* b : {"then_branch", "else_branch"}) {
      const Node& u = after.graph.nodes[0].attr_graph(b)->nodes[0];
      EXPECT_EQ(u.inputs.size(), 2u) << b;
      EXPECT_FALSE(u.has_attr("axes")) << b;
    }
  }
}

TEST(UpgradeOpset13, RefusesWhatItCannotCarryByName) {
  Model old6 = model_at(6, {f32("x", {2})}, {make_node("r", "Relu", {"x"}, {"y"})}, {untyped("y")});
  EXPECT_THROW(upgrade_to_opset13(old6), Error);
  Node crop = make_node("my_crop", "Crop", {"x"}, {"y"});
  Model m = model_at(8, {f32("x", {1, 1, 4, 4})}, {crop}, {untyped("y")});
  try {
    upgrade_to_opset13(m);
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("my_crop"), std::string::npos) << e.what();
  }
  // Already 13 or later: nothing changes.
  Model m13 = softmax_model("Softmax", 1, {2, 3, 4}, true);
  m13.opset_imports[""] = 13;
  upgrade_to_opset13(m13);
  EXPECT_EQ(m13.graph.nodes.size(), 1u);
}

TEST(UpgradeOpset13, UpgradeOpsetReaches21FromOpset9) {
  Node sq = make_node("sq", "Squeeze", {"x"}, {"y"});
  set_attr(sq, "axes", std::vector<int64_t>{1});
  Node rm = make_node("rm", "ReduceMean", {"y"}, {"z"});
  set_attr(rm, "axes", std::vector<int64_t>{0});
  Model m = model_at(9, {f32("x", {3, 1, 4})}, {sq, rm}, {untyped("z")});
  Model after = m;
  upgrade_opset(after, 21);
  EXPECT_EQ(after.opset(), 21);
  const auto feeds = std::map<std::string, Tensor>{{"x", random_tensor({3, 1, 4}, 18)}};
  const Tensor want = ReferenceExecutor(m).run(feeds).at("z");
  const Tensor got = ReferenceExecutor(after).run(feeds).at("z");
  ASSERT_EQ(want.shape(), got.shape());
  for (int64_t i = 0; i < want.numel(); ++i) EXPECT_FLOAT_EQ(want.data<float>()[i], got.data<float>()[i]);
}

}  // namespace
}  // namespace kvant
