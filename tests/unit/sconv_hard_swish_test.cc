// Conv -> HardSigmoid -> Mul(conv output), the hard swish of exporters before
// opset 14, compiles to one sconv step with the hard swish in its store
// (compile.cc's hard_swish_after, SConvEpilogue::kHardSwish): its output is,
// bit for bit, hard_swish_f32 over the plain conv's compiled output, with the
// node's own alpha and beta; a HardSigmoid read by anything else stays a step.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>

#include "kernels/sconv.h"
#include "runtime/compiled_model.h"
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

}  // namespace
}  // namespace kvant
