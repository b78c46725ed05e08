// Unit tests for the control-flow, recurrent and quantization reference
// kernels on hand-computed values, including the opset-21 forms (blocked and
// 4-bit quantization) that the ONNX 1.12 backend test data does not cover.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ops/quant_util.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

Node make_node(std::string op, std::vector<std::string> inputs, std::vector<std::string> outputs,
               std::map<std::string, Attribute> attributes = {}) {
  Node n;
  n.name = op + "_0";
  n.op_type = std::move(op);
  n.inputs = std::move(inputs);
  n.outputs = std::move(outputs);
  n.attributes = std::move(attributes);
  return n;
}

// Runs one node as a whole model; every named input is fed from `feeds`.
std::map<std::string, Tensor> run_node(const Node& node, const std::map<std::string, Tensor>& feeds,
                                       int64_t opset = 21) {
  Model model;
  model.opset_imports[""] = opset;
  for (const auto& name : node.inputs) {
    if (!name.empty()) model.graph.inputs.push_back(ValueInfo{name, {}});
  }
  for (const auto& name : node.outputs) {
    if (!name.empty()) model.graph.outputs.push_back(ValueInfo{name, {}});
  }
  model.graph.nodes.push_back(node);
  ReferenceExecutor exec(model);
  return exec.run(feeds);
}

// A 4-bit tensor from values (packed two per byte, low nibble first).
Tensor int4_tensor(DType dtype, const std::vector<int64_t>& values, Shape shape) {
  Tensor t(dtype, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) store_int(t, static_cast<int64_t>(i), values[i]);
  return t;
}

void expect_floats(const Tensor& t, const std::vector<float>& want, float tol = 0.0f) {
  ASSERT_EQ(t.dtype(), DType::kFloat32);
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(t.data<float>()[i], want[i], tol) << "element " << i;
}

void expect_ints(const Tensor& t, const std::vector<int64_t>& want) {
  ASSERT_EQ(t.numel(), static_cast<int64_t>(want.size()));
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(t.get_as_int64(static_cast<int64_t>(i)), want[i]) << "element " << i;
}

// ---- quantization -----------------------------------------------------------

TEST(QuantizeLinear, RoundsHalfToEvenAndSaturatesInt8) {
  const Node node = make_node("QuantizeLinear", {"x", "s", "zp"}, {"y"});
  auto out = run_node(node, {{"x", Tensor::from_vector<float>({0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 300, -300}, {8})},
                             {"s", Tensor::scalar<float>(1.0f)},
                             {"zp", Tensor::scalar<int8_t>(0)}});
  const Tensor& y = out.at("y");
  EXPECT_EQ(y.dtype(), DType::kInt8);
  expect_ints(y, {0, 2, 2, 0, -2, -2, 127, -128});
}

TEST(QuantizeLinear, Uint8WithZeroPointRoundsBeforeAddingIt) {
  const Node node = make_node("QuantizeLinear", {"x", "s", "zp"}, {"y"});
  // x / 0.5 = 0.5, 1.5, -128.5, 127.5, 200 -> 0, 2, -128, 128, 200; + 128, clamped to [0, 255].
  auto out = run_node(node, {{"x", Tensor::from_vector<float>({0.25f, 0.75f, -64.25f, 63.75f, 100.0f}, {5})},
                             {"s", Tensor::scalar<float>(0.5f)},
                             {"zp", Tensor::scalar<uint8_t>(128)}});
  EXPECT_EQ(out.at("y").dtype(), DType::kUInt8);
  expect_ints(out.at("y"), {128, 130, 0, 255, 255});
}

TEST(QuantizeLinear, WithoutZeroPointUsesOutputDtype) {
  const Node node = make_node("QuantizeLinear", {"x", "s"}, {"y"}, {{"output_dtype", int_attr(5)}});  // int16
  auto out = run_node(
      node, {{"x", Tensor::from_vector<float>({40000.4f, -2.5f, -1e9f}, {3})}, {"s", Tensor::scalar<float>(1.0f)}});
  EXPECT_EQ(out.at("y").dtype(), DType::kInt16);
  expect_ints(out.at("y"), {32767, -2, -32768});
  // Opset 13 ignores output_dtype (it does not exist there): uint8.
  auto old = run_node(node, {{"x", Tensor::from_vector<float>({3.0f}, {1})}, {"s", Tensor::scalar<float>(1.0f)}}, 13);
  EXPECT_EQ(old.at("y").dtype(), DType::kUInt8);
}

TEST(DequantizeLinear, PerAxis) {
  const Node node = make_node("DequantizeLinear", {"x", "s", "zp"}, {"y"}, {{"axis", int_attr(1)}});
  auto out = run_node(node,
                      {{"x", Tensor::from_vector<uint8_t>({0, 128, 255, 10, 20, 30}, {2, 3})},
                       {"s", Tensor::from_vector<float>({1.0f, 0.5f, 2.0f}, {3})},
                       {"zp", Tensor::from_vector<uint8_t>({0, 128, 255}, {3})}},
                      13);
  expect_floats(out.at("y"), {0, 0, 0, 10, -54, -450});
}

TEST(DequantizeLinear, PerAxisRejectsWrongScaleLength) {
  const Node node = make_node("DequantizeLinear", {"x", "s"}, {"y"}, {{"axis", int_attr(0)}});
  EXPECT_THROW(run_node(node, {{"x", Tensor::from_vector<int8_t>({1, 2, 3, 4, 5, 6}, {2, 3})},
                               {"s", Tensor::from_vector<float>({1.0f, 0.5f, 2.0f}, {3})}}),
               Error);
}

// x int4 [2,4], block_size 2 along axis 1: scale and zero point are [2,2].
//   row 0: (-8+1)*0.5, (-1+1)*0.5, (0-1)*2, (7-1)*2 = -3.5, 0, -2, 12
//   row 1: (3-2)*0.25, (5-2)*0.25, (-4-0)*1, (2-0)*1 = 0.25, 0.75, -4, 2
TEST(DequantizeLinear, BlockedInt4) {
  const Node node =
      make_node("DequantizeLinear", {"x", "s", "zp"}, {"y"}, {{"axis", int_attr(1)}, {"block_size", int_attr(2)}});
  auto out = run_node(node, {{"x", int4_tensor(DType::kInt4, {-8, -1, 0, 7, 3, 5, -4, 2}, {2, 4})},
                             {"s", Tensor::from_vector<float>({0.5f, 2.0f, 0.25f, 1.0f}, {2, 2})},
                             {"zp", int4_tensor(DType::kInt4, {-1, 1, 2, 0}, {2, 2})}});
  expect_floats(out.at("y"), {-3.5f, 0, -2, 12, 0.25f, 0.75f, -4, 2});
}

TEST(DequantizeLinear, BlockedUint4WithPartialLastBlock) {
  // 3 elements, block_size 2: blocks {0,1} and {2}; scale [1,2] rounded up.
  const Node node =
      make_node("DequantizeLinear", {"x", "s"}, {"y"}, {{"axis", int_attr(1)}, {"block_size", int_attr(2)}});
  auto out = run_node(node, {{"x", int4_tensor(DType::kUInt4, {15, 4, 9}, {1, 3})},
                             {"s", Tensor::from_vector<float>({1.0f, 0.5f}, {1, 2})}});
  expect_floats(out.at("y"), {15, 4, 4.5f});
  // A scale with the wrong number of blocks is a clear error.
  EXPECT_THROW(run_node(node, {{"x", int4_tensor(DType::kUInt4, {15, 4, 9}, {1, 3})},
                               {"s", Tensor::from_vector<float>({1.0f}, {1, 1})}}),
               Error);
}

TEST(QuantizeLinear, BlockedInt4PacksLowNibbleFirst) {
  const Node node =
      make_node("QuantizeLinear", {"x", "s", "zp"}, {"y"}, {{"axis", int_attr(1)}, {"block_size", int_attr(2)}});
  auto out = run_node(node, {{"x", Tensor::from_vector<float>({-3.5f, 0, -2, 12, 0.25f, 0.75f, -4, 100}, {2, 4})},
                             {"s", Tensor::from_vector<float>({0.5f, 2.0f, 0.25f, 1.0f}, {2, 2})},
                             {"zp", int4_tensor(DType::kInt4, {-1, 1, 2, 0}, {2, 2})}});
  const Tensor& y = out.at("y");
  ASSERT_EQ(y.dtype(), DType::kInt4);
  expect_ints(y, {-8, -1, 0, 7, 3, 5, -4, 7});  // 100 saturates to 7
  const auto* bytes = static_cast<const uint8_t*>(y.raw());
  EXPECT_EQ(bytes[0], 0xF8);  // -1 in the high nibble, -8 in the low one
  EXPECT_EQ(bytes[1], 0x70);
}

// The ONNX operator documentation's example:
//   x = [0, 2, -3, -2.5, 1.34, 0.5] -> scale = (2 - (-3)) / 255, zero point = round(3 / scale) = 153.
TEST(DynamicQuantizeLinear, KnownVector) {
  const Node node = make_node("DynamicQuantizeLinear", {"x"}, {"y", "scale", "zp"});
  auto out = run_node(node, {{"x", Tensor::from_vector<float>({0, 2, -3, -2.5f, 1.34f, 0.5f}, {6})}}, 11);
  EXPECT_FLOAT_EQ(out.at("scale").data<float>()[0], 5.0f / 255.0f);
  expect_ints(out.at("zp"), {153});
  expect_ints(out.at("y"), {153, 255, 0, 26, 221, 179});  // 0.5 / scale = 25.5 -> 26
}

TEST(DynamicQuantizeLinear, AllZeroInput) {
  const Node node = make_node("DynamicQuantizeLinear", {"x"}, {"y", "scale", "zp"});
  auto out = run_node(node, {{"x", Tensor::from_vector<float>({0, 0}, {2})}}, 11);
  EXPECT_EQ(out.at("scale").data<float>()[0], 0.0f);
  expect_ints(out.at("y"), {0, 0});
}

TEST(MatMulInteger, PerRowAndPerColumnZeroPoints) {
  const Node node = make_node("MatMulInteger", {"a", "b", "azp", "bzp"}, {"y"});
  // (a - [1, 2] per row) x (b - [3, 0] per column)
  auto out = run_node(node,
                      {{"a", Tensor::from_vector<uint8_t>({1, 2, 3, 4}, {2, 2})},
                       {"b", Tensor::from_vector<int8_t>({3, -1, 5, 2}, {2, 2})},
                       {"azp", Tensor::from_vector<uint8_t>({1, 2}, {2})},
                       {"bzp", Tensor::from_vector<int8_t>({3, 0}, {2})}},
                      10);
  // a' = [[0,1],[1,2]], b' = [[0,-1],[2,2]] -> [[2,2],[4,3]]
  EXPECT_EQ(out.at("y").dtype(), DType::kInt32);
  expect_ints(out.at("y"), {2, 2, 4, 3});
}

// x' = x - 1 = [0, 1, 2, 3]; w' = w - w_zp = [2, -2] (1x1 kernels, 2 output channels).
//   channel 0: (x' * 2 + 1) * (1 * 0.5 / 0.5) + 10 = 11, 13, 15, 17
//   channel 1: (x' * -2 - 2) * (1 * 1.0 / 0.5) + 10 = 6, 2, -2, -6 -> saturated to 6, 2, 0, 0
TEST(QLinearConv, PerOutputChannelScaleZeroPointAndBias) {
  const Node node = make_node("QLinearConv", {"x", "xs", "xzp", "w", "ws", "wzp", "ys", "yzp", "b"}, {"y"});
  auto out = run_node(node,
                      {{"x", Tensor::from_vector<uint8_t>({1, 2, 3, 4}, {1, 1, 2, 2})},
                       {"xs", Tensor::scalar<float>(1.0f)},
                       {"xzp", Tensor::scalar<uint8_t>(1)},
                       {"w", Tensor::from_vector<int8_t>({2, -3}, {2, 1, 1, 1})},
                       {"ws", Tensor::from_vector<float>({0.5f, 1.0f}, {2})},
                       {"wzp", Tensor::from_vector<int8_t>({0, -1}, {2})},
                       {"ys", Tensor::scalar<float>(0.5f)},
                       {"yzp", Tensor::scalar<uint8_t>(10)},
                       {"b", Tensor::from_vector<int32_t>({1, -2}, {2})}},
                      10);
  EXPECT_EQ(out.at("y").shape(), (Shape{1, 2, 2, 2}));
  expect_ints(out.at("y"), {11, 13, 15, 17, 6, 2, 0, 0});
}

// ---- recurrent ----------------------------------------------------------------

// LSTM with input 1, hidden 1, W = [0, 0, 0, 1] (only the cell gate sees x),
// R = 0, B = 0: every gate i, o, f is sigmoid(0) = 0.5 and c~ = tanh(x), so
//   C_t = 0.5 C_{t-1} + 0.5 tanh(x_t),   H_t = 0.5 tanh(C_t).
// Batch 1 has length 1: C = 0.5 tanh(0.5) = 0.2310586, H = 0.5 tanh(C) = 0.1135163,
// and its Y is 0 at t = 1, 2.
TEST(Lstm, SequenceLensStopsShortEntries) {
  const std::vector<float> x = {1, 0.5f, 2, 9, 3, 9};  // [seq 3, batch 2, input 1]
  for (const std::string direction : {"forward", "reverse"}) {
    SCOPED_TRACE(direction);
    const Node node = make_node("LSTM", {"x", "w", "r", "", "lens"}, {"y", "y_h", "y_c"},
                                {{"hidden_size", int_attr(1)}, {"direction", string_attr(direction)}});
    auto out = run_node(node,
                        {{"x", Tensor::from_vector<float>(x, {3, 2, 1})},
                         {"w", Tensor::from_vector<float>({0, 0, 0, 1}, {1, 4, 1})},
                         {"r", Tensor::from_vector<float>({0, 0, 0, 0}, {1, 4, 1})},
                         {"lens", Tensor::from_vector<int32_t>({3, 1}, {2})}},
                        14);
    const bool reverse = direction == "reverse";
    std::vector<float> h0(3), c0(3);  // batch 0, by time step
    float c = 0.0f;
    for (int step = 0; step < 3; ++step) {
      const int t = reverse ? 2 - step : step;
      c = 0.5f * c + 0.5f * std::tanh(x[static_cast<size_t>(t * 2)]);
      c0[static_cast<size_t>(t)] = c;
      h0[static_cast<size_t>(t)] = 0.5f * std::tanh(c);
    }
    const float last_h0 = reverse ? h0[0] : h0[2];
    const float last_c0 = reverse ? c0[0] : c0[2];
    // Y [seq, dirs, batch, hidden]
    expect_floats(out.at("y"), {h0[0], 0.1135163f, h0[1], 0, h0[2], 0}, 1e-6f);
    expect_floats(out.at("y_h"), {last_h0, 0.1135163f}, 1e-6f);
    expect_floats(out.at("y_c"), {last_c0, 0.2310586f}, 1e-6f);
  }
}

TEST(Lstm, RejectsWrongWeightShape) {
  const Node node = make_node("LSTM", {"x", "w", "r"}, {"y"}, {{"hidden_size", int_attr(2)}});
  EXPECT_THROW(run_node(node, {{"x", Tensor(DType::kFloat32, {3, 1, 2})},
                               {"w", Tensor(DType::kFloat32, {1, 4, 2})},
                               {"r", Tensor(DType::kFloat32, {1, 8, 2})}}),
               Error);
}

// An RNN with Affine(alpha 1, beta 0) activation and W = R = [[1]] adds:
// H_t = X_t + H_{t-1}.
TEST(Rnn, AffineActivationAccumulates) {
  const Node node = make_node("RNN", {"x", "w", "r"}, {"y", "y_h"},
                              {{"hidden_size", int_attr(1)},
                               {"activations", strings_attr({"Affine"})},
                               {"activation_alpha", floats_attr({1.0f})},
                               {"activation_beta", floats_attr({0.0f})}});
  auto out = run_node(node, {{"x", Tensor::from_vector<float>({1, 2, 3}, {3, 1, 1})},
                             {"w", Tensor::from_vector<float>({1}, {1, 1, 1})},
                             {"r", Tensor::from_vector<float>({1}, {1, 1, 1})}});
  expect_floats(out.at("y"), {1, 3, 6});
  expect_floats(out.at("y_h"), {6});
}

// ---- control flow ---------------------------------------------------------------

// Loop(M = 5) carrying (counter, sum), both float [1,1,1]. The body adds with
// RNN nodes (Affine activation, W = R = 1, so Y_h = X + initial_h):
//   counter' = 1 + counter      ("one" is read from the outer graph)
//   sum'     = counter' + sum
// so after 5 iterations sum = 1 + 2 + 3 + 4 + 5 = 15; the scan output
// collects the running sums 1, 3, 6, 10, 15.
TEST(Loop, SumsOneToFive) {
  auto adder = [](std::string x, std::string h, std::string out) {
    return make_node("RNN", {std::move(x), "w1", "w1", "", "", std::move(h)}, {"", std::move(out)},
                     {{"hidden_size", int_attr(1)},
                      {"activations", strings_attr({"Affine"})},
                      {"activation_alpha", floats_attr({1.0f})},
                      {"activation_beta", floats_attr({0.0f})}});
  };
  auto body = std::make_shared<Graph>();
  body->name = "body";
  body->inputs = {ValueInfo{"i", {}}, ValueInfo{"cond_in", {}}, ValueInfo{"counter_in", {}}, ValueInfo{"sum_in", {}}};
  body->initializers["w1"] = Tensor::from_vector<float>({1}, {1, 1, 1});
  body->nodes.push_back(adder("one", "counter_in", "counter_out"));
  body->nodes.push_back(adder("counter_out", "sum_in", "sum_out"));
  body->outputs = {ValueInfo{"cond_in", {}}, ValueInfo{"counter_out", {}}, ValueInfo{"sum_out", {}},
                   ValueInfo{"sum_out", {}}};

  Attribute body_attr;
  body_attr.kind = Attribute::Kind::kGraph;
  body_attr.g = body;
  Model model;
  model.opset_imports[""] = 16;
  model.graph.inputs = {ValueInfo{"m", {}}, ValueInfo{"start", {}}};
  model.graph.initializers["one"] = Tensor::from_vector<float>({1}, {1, 1, 1});
  model.graph.nodes.push_back(
      make_node("Loop", {"m", "", "start", "start"}, {"counter", "sum", "sums"}, {{"body", body_attr}}));
  model.graph.outputs = {ValueInfo{"counter", {}}, ValueInfo{"sum", {}}, ValueInfo{"sums", {}}};

  ReferenceExecutor exec(model);
  auto out = exec.run({{"m", Tensor::scalar<int64_t>(5)}, {"start", Tensor::from_vector<float>({0}, {1, 1, 1})}});
  expect_floats(out.at("counter"), {5});
  expect_floats(out.at("sum"), {15});
  EXPECT_EQ(out.at("sums").shape(), (Shape{5, 1, 1, 1}));
  expect_floats(out.at("sums"), {1, 3, 6, 10, 15});

  // M = 0 runs no iteration: the carried values come back unchanged.
  auto none = exec.run({{"m", Tensor::scalar<int64_t>(0)}, {"start", Tensor::from_vector<float>({7}, {1, 1, 1})}});
  expect_floats(none.at("sum"), {7});
  EXPECT_EQ(none.at("sums").shape()[0], 0);
}

TEST(If, PicksBranchAndSeesOuterValues) {
  auto branch = [](std::string value) {
    auto g = std::make_shared<Graph>();
    g->nodes.push_back(make_node("DequantizeLinear", {std::move(value), "scale"}, {"out"}));
    g->outputs = {ValueInfo{"out", {}}};
    return g;
  };
  Attribute then_attr, else_attr;
  then_attr.kind = else_attr.kind = Attribute::Kind::kGraph;
  then_attr.g = branch("a");
  else_attr.g = branch("b");
  Model model;
  model.opset_imports[""] = 13;
  model.graph.inputs = {ValueInfo{"cond", {}}};
  model.graph.initializers["a"] = Tensor::from_vector<int8_t>({1, 2}, {2});
  model.graph.initializers["b"] = Tensor::from_vector<int8_t>({-3}, {1});
  model.graph.initializers["scale"] = Tensor::scalar<float>(0.5f);
  model.graph.nodes.push_back(
      make_node("If", {"cond"}, {"y"}, {{"then_branch", then_attr}, {"else_branch", else_attr}}));
  model.graph.outputs = {ValueInfo{"y", {}}};
  ReferenceExecutor exec(model);
  expect_floats(exec.run({{"cond", Tensor::scalar<bool>(true)}}).at("y"), {0.5f, 1.0f});
  expect_floats(exec.run({{"cond", Tensor::scalar<bool>(false)}}).at("y"), {-1.5f});
}

}  // namespace
}  // namespace kvant
