// Unit tests for the neural-network reference kernels (conv, gemm, pool,
// norm): small cases whose answers are computed by hand in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "ops/op_registry.h"

namespace kvant {
namespace {

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
  const Tensor y = run_node(
      node, {Tensor::from_vector(xv, {1, 1, 5, 5}), Tensor::from_vector<float>({1, 0, 0, -1}, {1, 1, 2, 2})})[0];
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
  y = run_node(node,
               {Tensor::from_vector(xv, {1, 4, 1, 2}), Tensor::from_vector<float>({1, 1, 1, 1}, {2, 2, 1, 1})})[0];
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

// Per-element 2-D convolution straight from the definition, for comparison.
std::vector<float> naive_conv2d(const std::vector<float>& x, const std::vector<float>& w, Shape xs, Shape ws,
                                int64_t group, int64_t stride, int64_t dilation, std::vector<int64_t> pads,
                                int64_t out_h, int64_t out_w) {
  const int64_t n = xs[0], c = xs[1], h = xs[2], wd = xs[3], m = ws[0], cg = ws[1], kh = ws[2], kw = ws[3];
  std::vector<float> y;
  for (int64_t b = 0; b < n; ++b)
    for (int64_t oc = 0; oc < m; ++oc)
      for (int64_t i = 0; i < out_h; ++i)
        for (int64_t j = 0; j < out_w; ++j) {
          double sum = 0;
          for (int64_t ic = 0; ic < cg; ++ic)
            for (int64_t p = 0; p < kh; ++p)
              for (int64_t q = 0; q < kw; ++q) {
                const int64_t ih = i * stride - pads[0] + p * dilation, iw = j * stride - pads[1] + q * dilation;
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                const int64_t ch = oc / (m / group) * cg + ic;
                sum += x[static_cast<size_t>(((b * c + ch) * h + ih) * wd + iw)] *
                       w[static_cast<size_t>(((oc * cg + ic) * kh + p) * kw + q)];
              }
          y.push_back(static_cast<float>(sum));
        }
  (void)c;
  return y;
}

TEST(Conv, MatchesNaiveDefinitionOnOddShapes) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-1, 1);
  struct Case {
    Shape xs, ws;
    int64_t group, stride, dilation;
    std::vector<int64_t> pads;  // begin h, begin w, end h, end w
  };
  const Case cases[] = {
      {{1, 3, 7, 9}, {4, 3, 3, 3}, 1, 1, 1, {1, 1, 1, 1}},
      {{2, 4, 8, 5}, {6, 2, 3, 2}, 2, 2, 1, {0, 1, 2, 0}},
      {{1, 2, 9, 9}, {2, 1, 3, 3}, 2, 3, 2, {2, 2, 1, 1}},
      {{1, 5, 1, 11}, {3, 5, 1, 4}, 1, 2, 3, {0, 3, 0, 0}},
      {{1, 1, 4, 4}, {2, 1, 1, 1}, 1, 1, 1, {0, 0, 0, 0}},
      // 576 taps x 64 columns per output row: the column buffer is filled in chunks of rows.
      {{1, 64, 20, 64}, {2, 64, 3, 3}, 1, 1, 1, {1, 1, 1, 1}},
  };
  for (const Case& c : cases) {
    std::vector<float> xv(static_cast<size_t>(checked_numel(c.xs))), wv(static_cast<size_t>(checked_numel(c.ws)));
    for (float& v : xv) v = dist(rng);
    for (float& v : wv) v = dist(rng);
    Node node = make_node("Conv", 2);
    node.attributes["group"] = int_attr(c.group);
    node.attributes["strides"] = ints_attr({c.stride, c.stride});
    node.attributes["dilations"] = ints_attr({c.dilation, c.dilation});
    node.attributes["pads"] = ints_attr(c.pads);
    const Tensor y = run_node(node, {Tensor::from_vector(xv, c.xs), Tensor::from_vector(wv, c.ws)})[0];
    const int64_t out_h = (c.xs[2] + c.pads[0] + c.pads[2] - (c.ws[2] - 1) * c.dilation - 1) / c.stride + 1;
    const int64_t out_w = (c.xs[3] + c.pads[1] + c.pads[3] - (c.ws[3] - 1) * c.dilation - 1) / c.stride + 1;
    ASSERT_EQ(y.shape(), (Shape{c.xs[0], c.ws[0], out_h, out_w}));
    const std::vector<float> want =
        naive_conv2d(xv, wv, c.xs, c.ws, c.group, c.stride, c.dilation, {c.pads[0], c.pads[1]}, out_h, out_w);
    const std::vector<float> got = values(y);
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4) << "element " << i;
  }
}

TEST(ConvTranspose, StrideTwoScatters) {
  // X = [1, 2] [1,1,2], W = [1, 1, 1] [1,1,3], stride 2: full output length 2*(2-1)+3 = 5,
  // Y = [1, 1, 1+2, 2, 2].
  Node node = make_node("ConvTranspose", 2);
  node.attributes["strides"] = ints_attr({2});
  const Tensor y = run_node(
      node, {Tensor::from_vector<float>({1, 2}, {1, 1, 2}), Tensor::from_vector<float>({1, 1, 1}, {1, 1, 3})})[0];
  EXPECT_EQ(y.shape(), (Shape{1, 1, 5}));
  EXPECT_EQ(values(y), (std::vector<float>{1, 1, 3, 2, 2}));
}

TEST(Einsum, TransposeTraceAndBatchedProduct) {
  Attribute eq;
  eq.kind = Attribute::Kind::kString;
  Node node = make_node("Einsum", 1);
  const Tensor m = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  eq.s = "ij->ji";
  node.attributes["equation"] = eq;
  EXPECT_EQ(values(run_node(node, {m})[0]), (std::vector<float>{1, 3, 2, 4}));
  eq.s = "Ba";  // implicit output sorts in ASCII order, uppercase first: "Ba" (identity)
  node.attributes["equation"] = eq;
  EXPECT_EQ(values(run_node(node, {m})[0]), (std::vector<float>{1, 2, 3, 4}));
  eq.s = "ii";  // implicit output: trace
  node.attributes["equation"] = eq;
  EXPECT_EQ(values(run_node(node, {m})[0]), (std::vector<float>{5}));
  Node two = make_node("Einsum", 2);
  eq.s = "...ij,...jk";  // implicit: "...ik"
  two.attributes["equation"] = eq;
  const Tensor y = run_node(two, {m, m})[0];
  EXPECT_EQ(y.shape(), (Shape{2, 2}));
  EXPECT_EQ(values(y), (std::vector<float>{7, 10, 15, 22}));
}

// Malformed nodes end in kInvalidArgument errors, never crashes or huge allocations.
TEST(NnOps, MalformedInputsGiveErrors) {
  auto expect_invalid = [](const Node& node, const std::vector<Tensor>& inputs, int64_t opset = 17) {
    try {
      run_node(node, inputs, opset);
      ADD_FAILURE() << node.op_type << ": expected an error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    }
  };
  const Tensor x4(DType::kFloat32, {1, 4, 4, 4});
  Node conv = make_node("Conv", 2);
  conv.attributes["group"] = int_attr(3);  // 4 channels are not divisible by 3
  expect_invalid(conv, {x4, Tensor(DType::kFloat32, {3, 1, 1, 1})});
  Node conv_big = make_node("Conv", 2);  // kernel larger than the input, no padding
  expect_invalid(conv_big, {x4, Tensor(DType::kFloat32, {1, 4, 5, 5})});
  Node pool = make_node("MaxPool", 1);  // kernel_shape missing
  expect_invalid(pool, {x4});
  Node pad = make_node("Pad", 2);  // 3 pads for a rank-4 input
  expect_invalid(pad, {x4, Tensor::from_vector<int64_t>({1, 1, 1}, {3})}, 13);
  Node resize = make_node("Resize", 3);  // absurd scale
  expect_invalid(resize, {x4, Tensor(), Tensor::from_vector<float>({1, 1, 1e30f, 1}, {4})}, 13);
  Node matmul = make_node("MatMul", 2);
  expect_invalid(matmul, {Tensor(DType::kFloat32, {2, 3}), Tensor(DType::kFloat32, {4, 2})});
  Node einsum = make_node("Einsum", 1);
  Attribute eq;
  eq.kind = Attribute::Kind::kString;
  eq.s = "ijk->ij";  // three labels for a rank-2 operand
  einsum.attributes["equation"] = eq;
  expect_invalid(einsum, {Tensor(DType::kFloat32, {2, 2})});
  Node softmax = make_node("Softmax", 1);
  softmax.attributes["axis"] = int_attr(5);
  expect_invalid(softmax, {x4}, 13);
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

TEST(Pad, ReflectEdgeWrapOpset11) {
  Node node = make_node("Pad", 2);
  Attribute mode;
  mode.kind = Attribute::Kind::kString;
  const Tensor x = Tensor::from_vector<float>({1, 2, 3}, {3});
  const Tensor pads = Tensor::from_vector<int64_t>({2, 1}, {2});
  const std::pair<const char*, std::vector<float>> cases[] = {{"reflect", {3, 2, 1, 2, 3, 2}},
                                                              {"edge", {1, 1, 1, 2, 3, 3}},
                                                              {"wrap", {2, 3, 1, 2, 3, 1}},
                                                              {"constant", {0, 0, 1, 2, 3, 0}}};
  for (const auto& [name, want] : cases) {
    mode.s = name;
    node.attributes["mode"] = mode;
    EXPECT_EQ(values(run_node(node, {x, pads}, 19)[0]), want) << name;
  }
}

// Constant mode with whole rows in the border (filled by doubling copies):
// a [2, 3] float input padded by 1 row above, 2 below and 1 column each
// side with 7.5, checked against the loops written out here; rows of 5,
// 9 and 1 element (doubling stops short of, at and past the row).
TEST(Pad, ConstantBorderRowsHoldTheValue) {
  Node node = make_node("Pad", 3);
  for (int64_t extra : {0, 2, -2}) {
    const int64_t w = 3 + 2 + 2 * extra;  // output row width
    const Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
    const int64_t side = 1 + extra;
    const Tensor pads = Tensor::from_vector<int64_t>({1, side, 2, side}, {4});
    const Tensor value = Tensor::scalar<float>(7.5f);
    std::vector<float> want;
    for (int64_t r = -1; r < 4; ++r) {
      for (int64_t c = -side; c < 3 + side; ++c) {
        const bool inside = r >= 0 && r < 2 && c >= 0 && c < 3;
        want.push_back(inside ? static_cast<float>(r * 3 + c + 1) : 7.5f);
      }
    }
    const Tensor y = run_node(node, {x, pads, value}, 13)[0];
    EXPECT_EQ(y.shape(), (Shape{5, w}));
    EXPECT_EQ(values(y), want) << "row width " << w;
  }
}

TEST(Resize, LinearAlignCornersAndNearestFloor) {
  // [1, 3] -> 3 samples with align_corners: [1, 2, 3]; asymmetric nearest floor x2: [1, 1, 3, 3].
  Node node = make_node("Resize", 4);
  Attribute s;
  s.kind = Attribute::Kind::kString;
  s.s = "linear";
  node.attributes["mode"] = s;
  s.s = "align_corners";
  node.attributes["coordinate_transformation_mode"] = s;
  const Tensor x = Tensor::from_vector<float>({1, 3}, {1, 2});
  const Tensor sizes = Tensor::from_vector<int64_t>({1, 3}, {2});
  Tensor y = run_node(node, {x, Tensor(), Tensor(), sizes}, 13)[0];
  EXPECT_EQ(values(y), (std::vector<float>{1, 2, 3}));
  s.s = "nearest";
  node.attributes["mode"] = s;
  s.s = "asymmetric";
  node.attributes["coordinate_transformation_mode"] = s;
  s.s = "floor";
  node.attributes["nearest_mode"] = s;
  const Tensor scales = Tensor::from_vector<float>({1, 2}, {2});
  y = run_node(node, {x, Tensor(), scales}, 13)[0];
  EXPECT_EQ(values(y), (std::vector<float>{1, 1, 3, 3}));
}

TEST(BatchNormalization, InferenceFormula) {
  // (x - mean) / sqrt(var + eps) * scale + B with var + eps = 4: (5 - 1) / 2 * 3 + 1 = 7.
  Node node = make_node("BatchNormalization", 5);
  Attribute eps;
  eps.kind = Attribute::Kind::kFloat;
  eps.f = 0;
  node.attributes["epsilon"] = eps;
  auto one = [](float v) { return Tensor::from_vector<float>({v}, {1}); };
  const Tensor y = run_node(node, {Tensor::from_vector<float>({5}, {1, 1, 1, 1}), one(3), one(1), one(1), one(4)})[0];
  EXPECT_FLOAT_EQ(values(y)[0], 7.0f);
}

}  // namespace
}  // namespace kvant
