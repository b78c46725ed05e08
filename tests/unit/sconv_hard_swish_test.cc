// Conv -> HardSigmoid -> Mul(conv output), the hard swish of exporters before
// opset 14, compiles to one sconv step with the hard swish in its store
// (compile.cc's hard_swish_after, SConvEpilogue::kHardSwish): its output is,
// bit for bit, hard_swish_f32 over the plain conv's compiled output, with the
// node's own alpha and beta; a HardSigmoid read by anything else stays a step.
// The HardSwish operator (opset 14) likewise: Conv -> HardSwish is one sconv
// step whose output is hard_swish_op_f32 (the hard_swish_f32 step's function)
// over the plain conv's, bit for bit, NCHW and in an NHWC chain.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "kernels/sconv.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

Model conv_model(bool hard_swish, float alpha, bool extra_reader) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {1, 6, 9, 7})});
  std::mt19937 rng(7);
  m.graph.initializers["w"] = uniform({16, 6, 3, 3}, rng, -0.5f, 0.5f);
  m.graph.initializers["b"] = uniform({16}, rng, -0.5f, 0.5f);
  Node conv = make_node("conv", "Conv", {"x", "w", "b"}, {hard_swish ? "c" : "y"});
  set_attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  m.graph.nodes.push_back(conv);
  m.graph.outputs.push_back({"y", type_of(DType::kFloat32, {1, 16, 9, 7})});
  if (hard_swish) {
    Node hs = make_node("hs", "HardSigmoid", {"c"}, {"h"});
    hs.attributes["alpha"] = float_attr(alpha);
    m.graph.nodes.push_back(hs);
    m.graph.nodes.push_back(make_node("mul", "Mul", {"h", "c"}, {"y"}));  // HardSigmoid first: either order
    if (extra_reader) {
      m.graph.nodes.push_back(make_node("neg", "Neg", {"h"}, {"z"}));
      m.graph.outputs.push_back({"z", type_of(DType::kFloat32, {1, 16, 9, 7})});
    }
  }
  return m;
}

TEST(SConvHardSwish, FusedIntoTheConvStoreBitForBit) {
  std::mt19937 rng(5);
  const Tensor x = uniform({1, 6, 9, 7}, rng, -3.0f, 3.0f);
  for (float alpha : {1.0f / 6.0f, 0.2f}) {
    for (int threads : {1, 3}) {
      CompiledModel plain(conv_model(false, alpha, false), default_compile_options(threads));
      CompiledModel fused(conv_model(true, alpha, false), default_compile_options(threads));
      Tensor want = plain.run({{"x", x}}).at("y");
      hard_swish_f32(want.data<float>(), want.data<float>(), want.numel(), alpha, 0.5f);
      const Tensor got = fused.run({{"x", x}}).at("y");
      const std::string plan = fused.describe_plan();
      EXPECT_EQ(fused.stats().kernel_steps, 1) << plan;
      EXPECT_NE(plan.find("+hardswish"), std::string::npos) << plan;
      ASSERT_EQ(got.shape(), want.shape());
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << "alpha " << alpha << " threads " << threads;
    }
  }
  CompiledModel kept(conv_model(true, 0.2f, true), default_compile_options(1));
  kept.run({{"x", x}});
  EXPECT_EQ(kept.describe_plan().find("+hardswish"), std::string::npos) << kept.describe_plan();
}

// Conv -> HardSwish (opset 14), or the plain conv (`op` false); with
// `chain`, a second conv reads the HardSwish so both run NHWC.
Model hard_swish_op_model(bool op, bool chain) {
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = 14;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {1, 6, 9, 7})});
  std::mt19937 rng(9);
  m.graph.initializers["w"] = uniform({17, 6, 3, 3}, rng, -0.5f, 0.5f);
  m.graph.initializers["b"] = uniform({17}, rng, -0.5f, 0.5f);
  m.graph.initializers["w2"] = uniform({5, 17, 3, 3}, rng, -0.5f, 0.5f);
  const std::string conv_out = op || chain ? "c" : "y";
  Node conv = make_node("conv", "Conv", {"x", "w", "b"}, {conv_out});
  set_attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  m.graph.nodes.push_back(conv);
  std::string last = conv_out;
  if (op) {
    last = chain ? "h" : "y";
    m.graph.nodes.push_back(make_node("hs", "HardSwish", {"c"}, {last}));
  }
  if (chain) {
    Node conv2 = make_node("conv2", "Conv", {last, "w2"}, {"y"});
    set_attr(conv2, "pads", std::vector<int64_t>{1, 1, 1, 1});
    m.graph.nodes.push_back(conv2);
  }
  m.graph.outputs.push_back({"y", type_of(DType::kFloat32, {1, chain ? 5 : 17, 9, 7})});
  return m;
}

TEST(SConvHardSwish, HardSwishOperatorFusedBitForBit) {
  std::mt19937 rng(4);
  Tensor x = uniform({1, 6, 9, 7}, rng, -4.0f, 4.0f);
  for (int threads : {1, 3}) {
    CompiledModel plain(hard_swish_op_model(false, false), default_compile_options(threads));
    CompiledModel fused(hard_swish_op_model(true, false), default_compile_options(threads));
    Tensor want = plain.run({{"x", x}}).at("y");
    hard_swish_op_f32(want.data<float>(), want.data<float>(), want.numel());
    const Tensor got = fused.run({{"x", x}}).at("y");
    const std::string plan = fused.describe_plan();
    EXPECT_EQ(fused.stats().kernel_steps, 1) << plan;
    EXPECT_NE(plan.find("+hardswish"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("hard_swish_f32"), std::string::npos) << plan;
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << "threads " << threads;
  }
  // x / 6 is not x * float(1/6): some input tells the two forms apart, so
  // the epilogue must divide (the test above would catch the multiply).
  bool differs = false;
  for (float v = -3.0f; v < 3.0f && !differs; v += 0.001f) {
    float a = 0.0f, b = 0.0f;
    hard_swish_op_f32(&v, &a, 1);
    hard_swish_f32(&v, &b, 1, 1.0f / 6.0f, 0.5f);
    differs = a != b;
  }
  EXPECT_TRUE(differs);
}

TEST(SConvHardSwish, HardSwishOperatorInAnNhwcChain) {
  Model m = hard_swish_op_model(true, true);
  auto bytes = serialize_onnx(m);
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  auto shaped = load_onnx_bytes(bytes->data(), bytes->size());
  ASSERT_TRUE(shaped.ok()) << shaped.status().message();
  std::mt19937 rng(6);
  const Tensor x = uniform({1, 6, 9, 7}, rng, -2.0f, 2.0f);
  const Tensor want = ReferenceExecutor(*shaped).run({{"x", x}}).at("y");
  float peak = 0.0f;
  for (int64_t i = 0; i < want.numel(); ++i) peak = std::max(peak, std::fabs(want.data<float>()[i]));
  CompiledModel compiled(*shaped, default_compile_options(1));
  const Tensor got = compiled.run({{"x", x}}).at("y");
  const std::string plan = compiled.describe_plan();
  EXPECT_NE(plan.find("sconv_nhwc_im2col"), std::string::npos) << plan;
  EXPECT_NE(plan.find("+hardswish"), std::string::npos) << plan;
  EXPECT_EQ(compiled.stats().kernel_steps, 4) << plan;  // transpose, conv+hardswish, conv, transpose
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < want.numel(); ++i) {
    ASSERT_LE(std::fabs(got.data<float>()[i] - want.data<float>()[i]), 1e-5f * peak + 1e-7f) << "element " << i;
  }
}

}  // namespace
}  // namespace kvant
