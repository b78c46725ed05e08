// Unit tests for the neural-network reference kernels (conv, gemm, pool,
// norm): small cases whose answers are computed by hand in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ops/op_registry.h"

namespace kvant {
namespace {

Attribute ints_attr(std::vector<int64_t> v) {
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = std::move(v);
  return a;
}
Attribute int_attr(int64_t v) {
  Attribute a;
  a.kind = Attribute::Kind::kInt;
  a.i = v;
  return a;
}

Node make_node(const std::string& op, size_t num_inputs, size_t num_outputs = 1) {
  Node n;
  n.name = "n0";
  n.op_type = op;
  for (size_t i = 0; i < num_inputs; ++i) n.inputs.push_back("in" + std::to_string(i));
  for (size_t i = 0; i < num_outputs; ++i) n.outputs.push_back("out" + std::to_string(i));
  return n;
}

std::vector<Tensor> run_node(const Node& node, const std::vector<Tensor>& inputs, int64_t opset = 17) {
  const OpDef* def = find_op("", node.op_type);
  EXPECT_NE(def, nullptr) << node.op_type;
  KernelContext ctx{node, opset, {}, {}, nullptr};
  for (const Tensor& t : inputs) ctx.inputs.push_back(t.defined() ? &t : nullptr);
  ctx.outputs.resize(node.outputs.size());
  def->run(ctx);
  return ctx.outputs;
}

std::vector<float> values(const Tensor& t) { return t.to_float_vector(); }

TEST(Conv, HandComputed3x3WithPadding) {
  // X = 1..9 as [1,1,3,3], W = all ones [1,1,2,2], pads 1 at the end only,
  // bias 10: Y[i,j] = 10 + sum of the 2x2 window starting at (i, j), zeros past the edge.
  //   [1 2 3]      Y = [1+2+4+5, 2+3+5+6, 3+6] + 10     = [22 26 19]
  //   [4 5 6]          [4+5+7+8, 5+6+8+9, 6+9] + 10       [34 38 25]
  //   [7 8 9]          [7+8,     8+9,     9  ] + 10       [25 27 19]
  Node node = make_node("Conv", 3);
  node.attributes["pads"] = ints_attr({0, 0, 1, 1});
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  const Tensor w = Tensor::from_vector<float>({1, 1, 1, 1}, {1, 1, 2, 2});
  const Tensor b = Tensor::from_vector<float>({10}, {1});
  const Tensor y = run_node(node, {x, w, b})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(values(y), (std::vector<float>{22, 26, 19, 34, 38, 25, 25, 27, 19}));
}

TEST(Conv, StridedAndDilated) {
  // X = 0..24 as [1,1,5,5]; W = [1,0;0,-1] with dilation 2, stride 2:
  // Y[i,j] = X[2i, 2j] - X[2i+2, 2j+2] = -(2*5 + 2) = -12 everywhere, out 2x2.
  Node node = make_node("Conv", 2);
  node.attributes["strides"] = ints_attr({2, 2});
  node.attributes["dilations"] = ints_attr({2, 2});
  std::vector<float> xv(25);
  for (int i = 0; i < 25; ++i) xv[static_cast<size_t>(i)] = static_cast<float>(i);
  const Tensor y = run_node(node, {Tensor::from_vector(xv, {1, 1, 5, 5}),
                                   Tensor::from_vector<float>({1, 0, 0, -1}, {1, 1, 2, 2})})[0];
  // Dilated kernel spans 3, so the output is (5 - 3) / 2 + 1 = 2 per dim.
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(values(y), (std::vector<float>{-12, -12, -12, -12}));
}

TEST(Conv, DepthwiseAndGrouped) {
  // Depthwise: group = C = 2, W [2,1,1,1] = {2, 3}: channel c scales by W[c].
  Node node = make_node("Conv", 2);
  node.attributes["group"] = int_attr(2);
  const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8}, {1, 2, 2, 2});
  Tensor y = run_node(node, {x, Tensor::from_vector<float>({2, 3}, {2, 1, 1, 1})})[0];
  EXPECT_EQ(values(y), (std::vector<float>{2, 4, 6, 8, 15, 18, 21, 24}));

  // Grouped: 4 input channels, 2 groups, 2 outputs; W[m] = [1, 1] sums its group's two channels.
  // Channels hold constants 1, 2, 3, 4 -> out0 = 1 + 2 = 3, out1 = 3 + 4 = 7.
  std::vector<float> xv;
  for (float c : {1.f, 2.f, 3.f, 4.f}) xv.insert(xv.end(), {c, c});
  y = run_node(node, {Tensor::from_vector(xv, {1, 4, 1, 2}), Tensor::from_vector<float>({1, 1, 1, 1}, {2, 2, 1, 1})})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 2, 1, 2}));
  EXPECT_EQ(values(y), (std::vector<float>{3, 3, 7, 7}));
}

TEST(Conv, WrongWeightRankNamesTheNode) {
  Node node = make_node("Conv", 2);
  node.name = "conv1";
  const Tensor x(DType::kFloat32, {1, 1, 4, 4});
  const Tensor w(DType::kFloat32, {1, 1, 3});
  try {
    run_node(node, {x, w});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("conv1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("W has rank 3"), std::string::npos) << msg;
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

TEST(MatMul, BroadcastsBatchDims) {
  // A [2,1,2,2] (two batches: identity, 2*identity) times B [3,2,1] (columns 1..6 in pairs)
  // gives [2,3,2,1]: batch (i, j) = A_i * B_j.
  const Tensor a = Tensor::from_vector<float>({1, 0, 0, 1, 2, 0, 0, 2}, {2, 1, 2, 2});
  const Tensor b = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2, 1});
  const Tensor y = run_node(make_node("MatMul", 2), {a, b})[0];
  EXPECT_EQ(y.shape(), (Shape{2, 3, 2, 1}));
  EXPECT_EQ(values(y), (std::vector<float>{1, 2, 3, 4, 5, 6, 2, 4, 6, 8, 10, 12}));
}

TEST(MatMul, OneDimensionalPromotion) {
  // [2] x [2,3] -> [3]; [2,3] x [3] -> [2].
  const Tensor v = Tensor::from_vector<float>({1, 2}, {2});
  const Tensor m = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor y = run_node(make_node("MatMul", 2), {v, m})[0];
  EXPECT_EQ(y.shape(), (Shape{3}));
  EXPECT_EQ(values(y), (std::vector<float>{9, 12, 15}));
  y = run_node(make_node("MatMul", 2), {m, Tensor::from_vector<float>({1, 0, 1}, {3})})[0];
  EXPECT_EQ(y.shape(), (Shape{2}));
  EXPECT_EQ(values(y), (std::vector<float>{4, 10}));
}

TEST(Gemm, Transposes) {
  // A^T with A = [[1,4],[2,5],[3,6]] (so A^T = [[1,2,3],[4,5,6]]), B^T with B = [[1,0,1],[0,1,0]]
  // (B^T = [[1,0],[0,1],[1,0]]): A^T B^T = [[4,2],[10,5]]; alpha 2, C = [1, -1] broadcast on rows.
  Node node = make_node("Gemm", 3);
  node.attributes["transA"] = int_attr(1);
  node.attributes["transB"] = int_attr(1);
  Attribute alpha;
  alpha.kind = Attribute::Kind::kFloat;
  alpha.f = 2;
  node.attributes["alpha"] = alpha;
  const Tensor a = Tensor::from_vector<float>({1, 4, 2, 5, 3, 6}, {3, 2});
  const Tensor b = Tensor::from_vector<float>({1, 0, 1, 0, 1, 0}, {2, 3});
  const Tensor c = Tensor::from_vector<float>({1, -1}, {2});
  const Tensor y = run_node(node, {a, b, c})[0];
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(values(y), (std::vector<float>{9, 3, 21, 9}));
}

TEST(MaxPool, CeilModeAddsPartialWindow) {
  // X = 1..16 [1,1,4,4], kernel 3, stride 2: floor mode gives 1x1, ceil mode 2x2
  // windows (rows 0-2 / 2-3) x (cols 0-2 / 2-3): maxes 11, 12, 15, 16.
  Node node = make_node("MaxPool", 1);
  node.attributes["kernel_shape"] = ints_attr({3, 3});
  node.attributes["strides"] = ints_attr({2, 2});
  std::vector<float> xv(16);
  for (int i = 0; i < 16; ++i) xv[static_cast<size_t>(i)] = static_cast<float>(i + 1);
  const Tensor x = Tensor::from_vector(xv, {1, 1, 4, 4});
  Tensor y = run_node(node, {x})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 1, 1, 1}));
  EXPECT_EQ(values(y), (std::vector<float>{11}));
  node.attributes["ceil_mode"] = int_attr(1);
  y = run_node(node, {x})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(values(y), (std::vector<float>{11, 12, 15, 16}));
}

TEST(Softmax, Opset11FlattensOpset13UsesOneAxis) {
  // X [2,2] as [1,2,2] with axis 1. Opset 11: softmax over all 4 elements of the batch
  // row; opset 13: over dim 1 only (pairs (x00, x10) and (x01, x11)).
  Node node = make_node("Softmax", 1);
  node.attributes["axis"] = int_attr(1);
  const Tensor x = Tensor::from_vector<float>({0, 0, 0, 0}, {1, 2, 2});
  Tensor y = run_node(node, {x}, 11)[0];
  for (float v : values(y)) EXPECT_FLOAT_EQ(v, 0.25f);
  y = run_node(node, {x}, 13)[0];
  for (float v : values(y)) EXPECT_FLOAT_EQ(v, 0.5f);
  // Default axis: 1 before 13 (flatten rows), -1 from 13.
  Node plain = make_node("Softmax", 1);
  const Tensor z = Tensor::from_vector<float>({0, std::log(3.0f), 0, 0}, {2, 2});
  y = run_node(plain, {z}, 13)[0];
  EXPECT_NEAR(values(y)[0], 0.25f, 1e-6);
  EXPECT_NEAR(values(y)[2], 0.5f, 1e-6);
}

}  // namespace
}  // namespace kvant
