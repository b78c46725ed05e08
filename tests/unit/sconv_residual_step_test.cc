// The FP32 Conv -> Add(other) [-> Relu|Clip] fusion (compile.cc's match_sconv,
// SConv::run's residual; NCHW, the layout pass off): compiled with 1 and 3
// threads it gives the same
// bits as the same graph with the conv's output also a model output (which
// keeps the conv, the Add and the activation as separate steps); the plan
// shows no add_f32 step where it fused, and one where it must not (a
// broadcasting Add, shapes not inferred, an operand computed after the conv,
// a depthwise conv). A planned run allocates nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "runtime/compiled_model.h"
#include "step_compare.h"
#include "test_graphs.h"

namespace kvant {
namespace {

using test::one_graph;
using test::random_tensor;

struct Spec {
  Shape x{2, 6, 7, 7};
  Shape w{8, 6, 1, 1};
  int64_t stride = 1, pad = 0, group = 1;
  Shape other{2, 8, 7, 7};  // a graph input "r" unless from_conv
  bool from_conv = false;   // other: a 3x3 conv of x written before (after when late)
  bool late = false;
  bool other_first = false;  // Add(other, conv) instead of Add(conv, other)
  std::string act;           // "", "Relu", "Clip", "SiLU" (Sigmoid and Mul)
  bool typed = true;         // value_info for the conv's output and other
};

Node conv_node(const std::string& name, const std::string& x, const std::string& w, const std::string& b,
               const std::string& y, int64_t k, int64_t stride, int64_t pad, int64_t group) {
  Node n = make_node(name, "Conv", {x, w, b}, {y});
  n.attributes["kernel_shape"] = ints_attr({k, k});
  n.attributes["strides"] = ints_attr({stride, stride});
  n.attributes["pads"] = ints_attr({pad, pad, pad, pad});
  n.attributes["group"] = int_attr(group);
  return n;
}

// twin: the conv's output (and other's conv's) is a model output too: the
// Add fuses into neither.
Model build(const Spec& s, bool twin) {
  Model m = one_graph(13);
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, s.x)});
  if (!s.from_conv) m.graph.inputs.push_back({"r", type_of(DType::kFloat32, s.other)});
  m.graph.initializers["w"] = random_tensor(s.w, 51, -0.5f, 0.5f);
  m.graph.initializers["b"] = random_tensor({s.w[0]}, 52);
  const int64_t h = (s.x[2] + 2 * s.pad - s.w[2]) / s.stride + 1;
  const Shape y{s.x[0], s.w[0], h, h};
  Node other_conv;
  if (s.from_conv) {
    m.graph.initializers["w3"] = random_tensor({s.w[0], s.x[1], 3, 3}, 53, -0.5f, 0.5f);
    m.graph.initializers["b3"] = random_tensor({s.w[0]}, 54);
    other_conv = conv_node("conv3x3", "x", "w3", "b3", "r", 3, s.stride, 1, 1);
  }
  if (s.from_conv && !s.late) m.graph.nodes.push_back(other_conv);
  m.graph.nodes.push_back(conv_node("conv", "x", "w", "b", "t", s.w[2], s.stride, s.pad, s.group));
  if (s.from_conv && s.late) m.graph.nodes.push_back(other_conv);
  const std::string add_out = s.act.empty() ? "y" : "u";
  m.graph.nodes.push_back(
      make_node("add", "Add", s.other_first ? std::vector<std::string>{"r", "t"} : std::vector<std::string>{"t", "r"},
                {add_out}));
  if (s.act == "Relu") m.graph.nodes.push_back(make_node("relu", "Relu", {"u"}, {"y"}));
  if (s.act == "Clip") {
    m.graph.initializers["lo"] = Tensor::scalar(-0.5f);
    m.graph.initializers["hi"] = Tensor::scalar(0.75f);
    m.graph.nodes.push_back(make_node("clip", "Clip", {"u", "lo", "hi"}, {"y"}));
  }
  if (s.act == "SiLU") {
    m.graph.nodes.push_back(make_node("sigmoid", "Sigmoid", {"u"}, {"g"}));
    m.graph.nodes.push_back(make_node("mul", "Mul", {"u", "g"}, {"y"}));
  }
  if (s.typed) {
    for (const char* v : {"t", "u", "g"}) m.graph.value_info[v] = {v, type_of(DType::kFloat32, y)};
    if (s.from_conv) m.graph.value_info["r"] = {"r", type_of(DType::kFloat32, s.other)};
  }
  m.graph.outputs.push_back({"y", TypeInfo{}});
  if (twin) m.graph.outputs.push_back({"t", TypeInfo{}});
  if (twin && s.from_conv) m.graph.outputs.push_back({"r", TypeInfo{}});
  return m;
}

// Compiles the spec and its twin with 1 and 3 threads: the same bits; returns
// whether the fused plan has no add_f32 step.
bool fused_and_identical(const Spec& s) {
  std::map<std::string, Tensor> feeds = {{"x", random_tensor(s.x, 61)}};
  if (!s.from_conv) feeds["r"] = random_tensor(s.other, 62);
  bool fused = true;
  for (int threads : {1, 3}) {
    // NCHW throughout (the layout pass off): the FP32 NHWC convs it would
    // choose (sconv_nhwc.h) sum 3x3 taps in another order, and the twin,
    // whose conv output is a model output, may keep another layout.
    CompileOptions options = default_compile_options(threads);
    options.nhwc = false;
    CompiledModel a(build(s, false), options);
    CompiledModel b(build(s, true), options);
    const Tensor ya = a.run(feeds).at("y");
    const Tensor yb = b.run(feeds).at("y");
    const std::string plan = a.describe_plan();
    EXPECT_EQ(a.stats().fallback_steps, 0) << plan;
    EXPECT_NE(b.describe_plan().find("add_f32"), std::string::npos) << b.describe_plan();
    EXPECT_EQ(ya.shape(), yb.shape());
    if (ya.shape() == yb.shape()) test::expect_bytes_equal(ya, yb, "threads " + std::to_string(threads) + "\n" + plan);
    fused = fused && plan.find("add_f32") == std::string::npos;
  }
  return fused;
}

TEST(SConvResidualStep, FusesAndMatchesConvThenAddBitForBit) {
  for (const char* act : {"", "Relu", "Clip"}) {
    for (bool other_first : {false, true}) {
      Spec s;
      s.act = act;
      s.other_first = other_first;
      SCOPED_TRACE(std::string("1x1 act '") + act + "' other_first " + std::to_string(other_first));
      EXPECT_TRUE(fused_and_identical(s));
    }
  }
  Spec implicit;  // 3x3, pad 1: the implicit GEMM, residual added in its copy-out
  implicit.w = {8, 6, 3, 3};
  implicit.pad = 1;
  implicit.act = "Relu";
  EXPECT_TRUE(fused_and_identical(implicit));
  Spec strided;  // 1x1 stride 2 (a ResNet downsample): im2col, K over 256
  strided.x = {1, 300, 9, 9};
  strided.w = {16, 300, 1, 1};
  strided.stride = 2;
  strided.other = {1, 16, 5, 5};
  strided.act = "Relu";
  EXPECT_TRUE(fused_and_identical(strided));
  Spec chained;  // other from a conv written earlier (a ResNet block's downsample, reordered)
  chained.from_conv = true;
  chained.act = "Relu";
  EXPECT_TRUE(fused_and_identical(chained));
  Spec late = chained;  // other's conv comes after: that conv takes the Add instead
  late.late = true;
  EXPECT_TRUE(fused_and_identical(late));
}

// Conv -> Add -> SiLU: the Add fuses, the SiLU (which the conv's store
// applies before a residual) stays its own step, and the bits are those of
// the unfused graph.
TEST(SConvResidualStep, ResidualThenSiluKeepsTheSiluApart) {
  for (const bool implicit : {false, true}) {
    Spec s;
    s.act = "SiLU";
    if (implicit) {
      s.w = {8, 6, 3, 3};
      s.pad = 1;
    }
    SCOPED_TRACE(implicit ? "3x3" : "1x1");
    EXPECT_TRUE(fused_and_identical(s));
  }
}

TEST(SConvResidualStep, DoesNotFuseWhatItMustNot) {
  Spec broadcast;  // [2, 8, 1, 1] broadcast over the plane
  broadcast.other = {2, 8, 1, 1};
  broadcast.act = "Relu";
  EXPECT_FALSE(fused_and_identical(broadcast));
  Spec lower_rank;  // [8, 7, 7] broadcast over the batch
  lower_rank.other = {8, 7, 7};
  EXPECT_FALSE(fused_and_identical(lower_rank));
  Spec grows;  // conv [2, 8, 1, 1] + [2, 8, 7, 7]: the Add's output is larger
  grows.x = {2, 6, 1, 1};
  grows.act = "Relu";
  EXPECT_FALSE(fused_and_identical(grows));
  Spec untyped;  // shapes not inferred: equality unknown
  untyped.typed = false;
  EXPECT_FALSE(fused_and_identical(untyped));
  Spec depthwise;
  depthwise.x = {1, 8, 7, 7};
  depthwise.w = {8, 1, 3, 3};
  depthwise.pad = 1;
  depthwise.group = 8;
  depthwise.other = {1, 8, 7, 7};
  EXPECT_FALSE(fused_and_identical(depthwise));
}

TEST(SConvResidualStep, PlannedRunAllocatesNothing) {
  Spec s;
  s.from_conv = true;
  s.act = "Relu";
  test::expect_planned_run_allocates_nothing(build(s, false), s.x);
}

}  // namespace
}  // namespace kvant
