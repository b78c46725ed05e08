// runtime/compare_values.h: the compiled plan against the QDQ simulation,
// value by value, telling a step's own difference from one it inherits.
#include "runtime/compare_values.h"

#include <gtest/gtest.h>

#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

Tensor scalar_f32(float v) {
  Tensor t(DType::kFloat32, {});
  t.data<float>()[0] = v;
  return t;
}

Tensor scalar_u8(uint8_t v) {
  Tensor t(DType::kUInt8, {});
  t.data<uint8_t>()[0] = v;
  return t;
}

TEST(CompareValues, CountsCodeDifferencesThroughTheNhwcPermutation) {
  Tensor ref(DType::kUInt8, {1, 3, 2, 2});  // NCHW
  for (int64_t i = 0; i < ref.numel(); ++i) ref.data<uint8_t>()[i] = static_cast<uint8_t>(10 * i);
  Tensor nhwc(DType::kUInt8, {1, 2, 2, 3});
  for (int64_t c = 0; c < 3; ++c) {
    for (int64_t p = 0; p < 4; ++p) nhwc.data<uint8_t>()[p * 3 + c] = ref.data<uint8_t>()[c * 4 + p];
  }
  ValueComparison same = compare_tensors(nhwc, ref, true, 1e-3);
  EXPECT_EQ(same.differing, 0);
  EXPECT_FALSE(same.departs());
  // Read as NCHW the same bytes differ almost everywhere.
  EXPECT_GT(compare_tensors(nhwc.reshaped({1, 3, 2, 2}), ref, false, 1e-3).differing, 8);
  nhwc.data<uint8_t>()[5] += 1;  // one code: allowed
  nhwc.data<uint8_t>()[7] += 2;  // two codes: departs
  ValueComparison c = compare_tensors(nhwc, ref, true, 1e-3);
  EXPECT_EQ(c.differing, 2);
  EXPECT_EQ(c.beyond_one_step, 1);
  EXPECT_EQ(c.max_diff, 2.0);
  EXPECT_TRUE(c.departs());
}

TEST(CompareValues, FloatValuesDepartAboveTheRelativeTolerance) {
  Tensor ref(DType::kFloat32, {4});
  Tensor got(DType::kFloat32, {4});
  for (int i = 0; i < 4; ++i) ref.data<float>()[i] = got.data<float>()[i] = static_cast<float>(i + 1);
  got.data<float>()[3] = 4.002f;  // 5e-4 of max |ref| = 4
  EXPECT_FALSE(compare_tensors(got, ref, false, 1e-3).departs());
  EXPECT_TRUE(compare_tensors(got, ref, false, 1e-4).departs());
}

// x (uint8 codes) -> DQ -> Conv 1x1 (w code 64) -> Q -> DQ -> Conv 1x1
// (w code 1, unit scales: a copy of the codes) -> Q -> DQ -> y. The scales
// put code 150 of x at 61.4999992 output steps: the simulation
// (float32 DQ, Conv, x / scale) rounds it to 61, the integer kernel
// (float(acc) * float(x_scale * w_scale / y_scale), ONNX QLinearConv's
// requantization) to 62. The first Conv's own output differs by that one
// code; the second only inherits it.
Model near_tie_chain() {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kUInt8, {1, 1, 1, 4})});
  g.initializers["sx"] = scalar_f32(0.03165653f);
  g.initializers["zx"] = scalar_u8(0);
  Tensor w1(DType::kInt8, {1, 1, 1, 1});
  w1.data<int8_t>()[0] = 64;
  g.initializers["w1"] = w1;
  g.initializers["sw1"] = scalar_f32(0.008043072f);
  g.initializers["sy"] = scalar_f32(0.0397449f);
  g.initializers["zy"] = scalar_u8(0);
  Tensor w2(DType::kInt8, {1, 1, 1, 1});
  w2.data<int8_t>()[0] = 1;
  g.initializers["w2"] = w2;
  g.initializers["one"] = scalar_f32(1.0f);
  g.nodes.push_back(make_node("dqx", "DequantizeLinear", {"x", "sx", "zx"}, {"xf"}));
  g.nodes.push_back(make_node("dqw1", "DequantizeLinear", {"w1", "sw1"}, {"w1f"}));
  g.nodes.push_back(make_node("conv1", "Conv", {"xf", "w1f"}, {"c1"}));
  g.nodes.push_back(make_node("q1", "QuantizeLinear", {"c1", "sy", "zy"}, {"c1q"}));
  g.nodes.push_back(make_node("dq1", "DequantizeLinear", {"c1q", "sy", "zy"}, {"c1f"}));
  g.nodes.push_back(make_node("dqw2", "DequantizeLinear", {"w2", "one"}, {"w2f"}));
  g.nodes.push_back(make_node("conv2", "Conv", {"c1f", "w2f"}, {"c2"}));
  g.nodes.push_back(make_node("q2", "QuantizeLinear", {"c2", "sy", "zy"}, {"c2q"}));
  g.nodes.push_back(make_node("dq2", "DequantizeLinear", {"c2q", "sy", "zy"}, {"y"}));
  g.outputs.push_back({"y", type_of(DType::kFloat32, {1, 1, 1, 4})});
  return m;
}

TEST(CompareValues, TellsTheStepThatRoundsANearTieFromTheStepsThatInheritIt) {
  const Model model = near_tie_chain();
  Tensor x(DType::kUInt8, {1, 1, 1, 4});
  const uint8_t codes[4] = {150, 10, 90, 200};
  for (int i = 0; i < 4; ++i) x.data<uint8_t>()[i] = codes[i];
  const ValueComparisonReport report = compare_compiled_to_reference(model, {{"x", x}});
  const StepComparison* first = nullptr;
  const StepComparison* second = nullptr;
  for (const auto& c : report.values) {
    if (c.inherited.value == "c1q") first = &c;
    if (c.inherited.value == "c2q") second = &c;
  }
  ASSERT_NE(first, nullptr) << describe_comparison(report, 20, true);
  ASSERT_NE(second, nullptr) << describe_comparison(report, 20, true);
  // Both executors agree on every other code, and within one step here (§2).
  EXPECT_TRUE(first->isolated);
  EXPECT_EQ(first->own.differing, 1) << describe_comparison(report, 20, true);
  EXPECT_EQ(first->own.beyond_one_step, 0);
  EXPECT_EQ(first->inherited.differing, 1);
  EXPECT_TRUE(second->isolated);
  EXPECT_EQ(second->own.differing, 0) << describe_comparison(report, 20, true);
  EXPECT_EQ(second->inherited.differing, 1);
  const std::string text = describe_comparison(report);
  EXPECT_NE(text.find("\"c1q\""), std::string::npos) << text;
  EXPECT_EQ(text.find("\"c2q\""), std::string::npos) << "only steps whose own output differs are listed:\n" << text;
  // The simulation's code for x = 150 is 61, the kernel's 62.
  ReferenceExecutor reference(model);
  const Tensor y = reference.run({{"x", x}}).at("y");
  EXPECT_NEAR(y.data<float>()[0], 61 * 0.0397449f, 1e-6f);
}

}  // namespace
}  // namespace kvant
