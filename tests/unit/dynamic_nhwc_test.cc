// Dynamic convolutions in the NHWC layout (passes/nhwc_layout.cc,
// steps_dynconv.cc's NHWC form): the layout pass makes a dynamic conv's
// ConvInteger an NhwcConvInteger twin, its DynamicQuantizeLinear and the
// Cast -> Mul(x_scale * w_scale) -> Add(bias) after it join the twin's
// groups, so dynamic convs and the FP32 depthwise convs that dynamic mode
// keeps (design decision 54) share one NHWC chain with Transposes only at its
// edges. Checked on CNNs that kvant's quantize_dynamic wrote (an RGB stem,
// 1x1, 3x3 with groups, strides, a residual Add, odd sizes, batch 2):
//   - the pass alone: the reference executor gives the same bytes;
//   - compiled, 1 and 3 threads: the dynamic convs NHWC steps (the last
//     one, which writes the output, NCHW), no
//     reference step, at most two transposes; outputs bit-identical to the
//     reference graph when every conv is dynamic, and to the NCHW plan
//     (KVANT_DYNAMIC_NHWC=0 KVANT_FP32_NHWC=0) with an FP32 depthwise conv
//     inside (its NHWC kernel gives SConv's bits); a planned run allocates
//     nothing;
//   - one DynamicQuantizeLinear shared by two dynamic convs: both NHWC steps;
//   - a dynamic conv alone between the graph's input and output stays NCHW.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>

#include "alloc_counter.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "passes/pass.h"
#include "quant/quantize.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

Node conv_node(const std::string& name, const std::string& x, const std::string& y, int kernel, int stride, int pad,
               int group, bool bias = true) {
  Node c = make_node(name, "Conv", {x, name + "_w"}, {y});
  if (bias) c.inputs.push_back(name + "_b");
  set_attr(c, "kernel_shape", std::vector<int64_t>{kernel, kernel});
  set_attr(c, "strides", std::vector<int64_t>{stride, stride});
  set_attr(c, "pads", std::vector<int64_t>{pad, pad, pad, pad});
  set_attr(c, "group", int64_t{group});
  return c;
}

// x [2, 3, 13, 11] -> stem 3x3 s2 (3 -> 16, no bias) -> Relu [-> depthwise 3x3 -> Relu]
// -> 1x1 (16 -> 24, no bias) = a -> 3x3 groups 2 (24 -> 24) -> Relu -> Clip = b -> Add(a, b)
// -> 1x1 stride 2 (24 -> 32) -> Relu -> y. FP32, random weights, then
// quantized by quantize_dynamic: four dynamic convs (the depthwise one stays
// FP32). seven_bit: --reduce-range weights and c3 in one group, the form
// the static 7-bit NHWC convs read in place (decision 64), which a dynamic
// conv must not take (its output is float).
Model fp32_cnn(bool depthwise, bool seven_bit = false) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {2, 3, 13, 11})});
  std::mt19937 rng(17);
  auto& init = m.graph.initializers;
  auto weights = [&](const std::string& name, int64_t out, int64_t in_g, int64_t k) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(in_g * k * k));
    init[name + "_w"] = uniform({out, in_g, k, k}, rng, -bound, bound);
    init[name + "_b"] = uniform({out}, rng, -0.1f, 0.1f);
  };
  weights("stem", 16, 3, 3);
  weights("dw", 16, 1, 3);
  weights("pw", 24, 16, 1);
  const int c3_groups = seven_bit ? 1 : 2;
  weights("c3", 24, 24 / c3_groups, 3);
  weights("c4", 32, 24, 1);
  auto& n = m.graph.nodes;
  n.push_back(conv_node("stem", "x", "s", 3, 2, 1, 1, false));
  n.push_back(make_node("stem_relu", "Relu", {"s"}, {"sr"}));
  std::string t = "sr";
  if (depthwise) {
    n.push_back(conv_node("dw", t, "d", 3, 1, 1, 16));
    n.push_back(make_node("dw_relu", "Relu", {"d"}, {"dr"}));
    t = "dr";
  }
  n.push_back(conv_node("pw", t, "a", 1, 1, 0, 1, false));
  n.push_back(conv_node("c3", "a", "c", 3, 1, 1, c3_groups));
  n.push_back(make_node("c3_relu", "Relu", {"c"}, {"c_relu"}));
  init["six"] = Tensor::scalar<float>(0.6f);  // ReLU6 as TensorFlow exports it (scaled to bite)
  init["zero"] = Tensor::scalar<float>(0.0f);
  n.push_back(make_node("c3_clip", "Clip", {"c_relu", "zero", "six"}, {"b"}));
  n.push_back(make_node("res", "Add", {"a", "b"}, {"r"}));
  n.push_back(conv_node("c4", "r", "e", 1, 2, 0, 1));
  n.push_back(make_node("c4_relu", "Relu", {"e"}, {"y"}));
  TypeInfo out;
  out.dtype = DType::kFloat32;
  m.graph.outputs.push_back({"y", out});
  QuantizeOptions options;
  options.mode = QuantMode::kDynamic;
  options.reduce_range = seven_bit;
  return quantize_dynamic(prepare_for_quantization(m), options, nullptr);
}

// The model after ONNX shape inference (a save/load round trip).
Model with_shapes(const Model& m) {
  auto bytes = serialize_onnx(m);
  if (!bytes.ok()) throw Error(ErrorCode::kInvalidArgument, bytes.status().message());
  auto loaded = load_onnx_bytes(bytes->data(), bytes->size());
  if (!loaded.ok()) throw Error(ErrorCode::kInvalidArgument, loaded.status().message());
  return std::move(*loaded);
}

int count_ops(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.op_type == op ? 1 : 0;
  return n;
}

Tensor input(uint32_t seed) {
  std::mt19937 rng(seed);
  return uniform({2, 3, 13, 11}, rng, -1.0f, 2.0f);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

TEST(DynamicNhwc, LayoutPassKeepsTheReferenceOutputs) {
  for (bool depthwise : {false, true}) {
    const Model m = with_shapes(fp32_cnn(depthwise));
    ASSERT_EQ(count_ops(m.graph, "ConvInteger"), 4) << print_graph(m.graph);
    Model n = m;
    ASSERT_TRUE(nhwc_layout(n.graph, n.opset(), [](const Node&) { return true; }));
    n.opset_imports["com.kvant"] = 1;
    // The last conv writes the graph's output: its epilogue would need a
    // Transpose inside the fused step, so it stays NCHW and the Transpose
    // goes before its DynamicQuantizeLinear; another before the stem's.
    EXPECT_EQ(count_ops(n.graph, "NhwcConvInteger"), 3) << print_graph(n.graph);
    EXPECT_EQ(count_ops(n.graph, "ConvInteger"), 1) << print_graph(n.graph);
    EXPECT_EQ(count_ops(n.graph, "Transpose"), 2) << print_graph(n.graph);
    for (size_t i = 0; i + 1 < n.graph.nodes.size(); ++i) {  // each Transpose right before a DynamicQuantizeLinear
      if (n.graph.nodes[i].op_type != "Transpose") continue;
      EXPECT_EQ(n.graph.nodes[i + 1].op_type, "DynamicQuantizeLinear") << print_graph(n.graph);
      EXPECT_EQ(n.graph.nodes[i + 1].inputs[0], n.graph.nodes[i].outputs[0]) << print_graph(n.graph);
    }
    for (uint32_t seed : {1u, 2u}) {
      const Tensor x = input(seed);
      const Tensor want = ReferenceExecutor(m).run({{"x", x}}).at("y");
      const Tensor got = ReferenceExecutor(n).run({{"x", x}}).at("y");
      EXPECT_TRUE(same_bytes(got, want)) << "depthwise " << depthwise << " seed " << seed;
    }
  }
}

TEST(DynamicNhwc, CompiledChainsRunNhwc) {
  for (int variant = 0; variant < 3; ++variant) {
    const bool depthwise = variant == 1;
    const bool seven_bit = variant == 2;
    const Model m = with_shapes(fp32_cnn(depthwise, seven_bit));  // as read from a file
    const Tensor x = input(5);
    const Tensor want = ReferenceExecutor(m).run({{"x", x}}).at("y");
    ::setenv("KVANT_DYNAMIC_NHWC", "0", 1);
    ::setenv("KVANT_FP32_NHWC", "0", 1);
    CompiledModel nchw(m, default_compile_options(1));
    ::unsetenv("KVANT_DYNAMIC_NHWC");
    ::unsetenv("KVANT_FP32_NHWC");
    const Tensor nchw_y = nchw.run({{"x", x}}).at("y");
    EXPECT_EQ(count(nchw.describe_plan(), "dynamic_nhwc_"), 0u) << nchw.describe_plan();
    EXPECT_TRUE(same_bytes(nchw_y, want) || depthwise) << "NCHW plan vs reference";
    for (int threads : {1, 3}) {
      const std::string what = std::string(depthwise ? "with" : "without") + " depthwise" +
                               (seven_bit ? ", 7-bit" : "") + ", threads " + std::to_string(threads);
      CompiledModel compiled(m, default_compile_options(threads));
      compiled.run({{"x", input(9)}});  // planned on other data first (another scale and zero point)
      const Tensor got = compiled.run({{"x", x}}).at("y");
      const std::string plan = compiled.describe_plan();
      EXPECT_EQ(count(plan, "dynamic_nhwc_"), 3u) << what << "\n" << plan;
      EXPECT_EQ(compiled.stats().fallback_steps, 0) << what << "\n" << plan;
      EXPECT_LE(count(plan, " transpose "), 2u) << what << "\n" << plan;
      EXPECT_EQ(count(plan, "clamp_f32"), 0u) << what << ": Relu -> Clip fused\n" << plan;
      if (depthwise) {
        EXPECT_NE(plan.find("sconv_nhwc_depthwise"), std::string::npos) << what << "\n" << plan;
      }
      // The dynamic steps that read another dynamic step's output take its range (pw from the stem when
      // nothing sits between them, c3 from pw).
      int linked = 0;
      for (const auto& step : compiled.steps()) {
        if (step->kernel().rfind("dynamic_", 0) == 0 && step->inputs.size() == 2) ++linked;
      }
      EXPECT_EQ(linked, depthwise ? 1 : 2) << what << "\n" << plan;
      // Exact integer arithmetic, the same epilogue: the NCHW plan's bytes;
      // the reference's too when no FP32 conv sits in the chain.
      EXPECT_TRUE(same_bytes(got, nchw_y)) << what << "\n" << plan;
      if (!depthwise) {
        EXPECT_TRUE(same_bytes(got, want)) << what << "\n" << plan;
      }
      if (depthwise) {  // the FP32 depthwise conv rounds unlike the reference: a code may move by one
        ASSERT_EQ(got.shape(), want.shape());
        float peak = 0.0f, worst = 0.0f;
        for (int64_t i = 0; i < want.numel(); ++i) {
          peak = std::max(peak, std::fabs(want.data<float>()[i]));
          worst = std::max(worst, std::fabs(got.data<float>()[i] - want.data<float>()[i]));
        }
        EXPECT_LE(worst, 1e-2f * peak) << what;
      }
      compiled.prepare({{"x", x.shape()}});
      compiled.run({{"x", x}});
      const long before = test::allocation_count();
      std::memcpy(compiled.input(0).data<float>(), x.data<float>(), x.nbytes());
      compiled.run();
      EXPECT_EQ(test::allocation_count(), before) << what;
    }
  }
}

// One DynamicQuantizeLinear read by two dynamic convs inside an NHWC chain
// (ONNX Runtime's quantizer shares it so): both NHWC steps, anchored at each
// NhwcConvInteger, each quantizing x itself; bit-identical to the reference.
TEST(DynamicNhwc, SharedDynamicQuantizeLinear) {
  Model m = fp32_cnn(false);
  // c4 reads r; give it a twin conv c5 on r too, then make c5 read c4's DynamicQuantizeLinear.
  Node c5;
  std::vector<Node> nodes;
  for (const Node& n : m.graph.nodes) {
    nodes.push_back(n);
    if (n.name.rfind("c4/", 0) != 0 && n.name != "c4_relu") continue;
    Node copy = n;
    copy.name = "c5" + n.name.substr(2);
    for (auto& v : copy.inputs) {
      if (v.rfind("c4/x_", 0) == 0) continue;  // the shared codes, scale and zero point
      if (v.rfind("c4", 0) == 0) v = "c5" + v.substr(2);
      if (v == "e") v = "e5";
    }
    for (auto& v : copy.outputs) v = v == "y" ? "y5" : (v == "e" ? "e5" : "c5" + v.substr(2));
    if (n.op_type != "DynamicQuantizeLinear") nodes.push_back(copy);
  }
  for (auto& [name, t] : std::map<std::string, Tensor>(m.graph.initializers.begin(), m.graph.initializers.end())) {
    if (name.rfind("c4", 0) == 0) m.graph.initializers["c5" + name.substr(2)] = t;
  }
  m.graph.nodes = nodes;
  m.graph.nodes.push_back(make_node("sum", "Add", {"y", "y5"}, {"z"}));
  m.graph.nodes.push_back(make_node("pool", "GlobalAveragePool", {"z"}, {"p"}));
  m.graph.outputs[0].name = "p";
  const Model shaped = with_shapes(m);
  ASSERT_EQ(count_ops(shaped.graph, "DynamicQuantizeLinear"), 4) << print_graph(shaped.graph);
  const Tensor x = input(7);
  const Tensor want = ReferenceExecutor(shaped).run({{"x", x}}).at("p");
  for (int threads : {1, 3}) {
    CompiledModel compiled(shaped, default_compile_options(threads));
    const Tensor got = compiled.run({{"x", x}}).at("p");
    const std::string plan = compiled.describe_plan();
    EXPECT_EQ(count(plan, "dynamic_nhwc_"), 5u) << plan;
    EXPECT_EQ(compiled.stats().fallback_steps, 0) << plan;
    ASSERT_EQ(got.shape(), want.shape());
    // The pool sums in another order in NHWC: within float rounding of the reference.
    for (int64_t i = 0; i < want.numel(); ++i) {
      EXPECT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-5f * (1.0f + std::fabs(want.data<float>()[i])))
          << i << "\n"
          << plan;
    }
  }
}

// A dynamic conv between the graph's input and output: NCHW, one step (its
// DynamicQuantizeLinear reads an NCHW input, so the codes' group has no
// majority for NHWC and the twin goes back).
TEST(DynamicNhwc, LoneDynamicConvStaysNchw) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {1, 8, 7, 9})});
  std::mt19937 rng(3);
  m.graph.initializers["c_w"] = uniform({6, 8, 3, 3}, rng, -0.3f, 0.3f);
  m.graph.initializers["c_b"] = uniform({6}, rng, -0.1f, 0.1f);
  m.graph.nodes.push_back(conv_node("c", "x", "y", 3, 1, 1, 1));
  TypeInfo out;
  out.dtype = DType::kFloat32;
  m.graph.outputs.push_back({"y", out});
  QuantizeOptions options;
  options.mode = QuantMode::kDynamic;
  const Model d = quantize_dynamic(prepare_for_quantization(m), options, nullptr);
  Model n = with_shapes(d);
  EXPECT_FALSE(nhwc_layout(n.graph, n.opset(), [](const Node&) { return true; })) << print_graph(n.graph);
  CompiledModel compiled(d, default_compile_options(1));
  std::mt19937 xr(4);
  const Tensor x = uniform({1, 8, 7, 9}, xr, -1.0f, 1.0f);
  EXPECT_TRUE(same_bytes(compiled.run({{"x", x}}).at("y"), ReferenceExecutor(d).run({{"x", x}}).at("y")));
  EXPECT_EQ(compiled.steps().size(), 1u) << compiled.describe_plan();
}

}  // namespace
}  // namespace kvant
