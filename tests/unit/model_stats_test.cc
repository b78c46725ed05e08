#include "runtime/model_stats.h"

#include <gtest/gtest.h>

namespace kvant {
namespace {

TypeInfo f32(std::vector<Dim> dims) { return TypeInfo{DType::kFloat32, true, std::move(dims)}; }
std::vector<Dim> dims(std::initializer_list<int64_t> values) {
  std::vector<Dim> out;
  for (int64_t v : values) out.push_back(Dim{v, ""});
  return out;
}

// x[1,3,8,8] -> Conv(W[4,3,3,3], b[4], pads 1) -> c[1,4,8,8] -> Flatten -> f[1,256]
//   -> Gemm(B[256,10], C[10]) -> y[1,10]
// By hand: Conv = N*OutC*OutH*OutW*(InC/group)*kH*kW = 1*4*8*8*3*3*3 = 6912
//          Gemm = M*N*K = 1*10*256 = 2560
// Parameters: 108 + 4 + 2560 + 10 = 2682 float32; the int64 shape constant is not one.
Graph conv_gemm_graph() {
  Graph g;
  g.inputs.push_back({"x", f32(dims({1, 3, 8, 8}))});
  g.outputs.push_back({"y", f32(dims({1, 10}))});
  g.initializers["W"] = Tensor(DType::kFloat32, {4, 3, 3, 3});
  g.initializers["b"] = Tensor(DType::kFloat32, {4});
  g.initializers["B"] = Tensor(DType::kFloat32, {256, 10});
  g.initializers["C"] = Tensor(DType::kFloat32, {10});
  g.initializers["shape"] = Tensor(DType::kInt64, {2});
  Node conv = make_node("conv1", "Conv", {"x", "W", "b"}, {"c"});
  conv.attributes["pads"] = ints_attr({1, 1, 1, 1});
  conv.attributes["kernel_shape"] = ints_attr({3, 3});
  g.nodes.push_back(conv);
  g.nodes.push_back(make_node("flatten", "Flatten", {"c"}, {"f"}));
  g.nodes.push_back(make_node("fc", "Gemm", {"f", "B", "C"}, {"y"}));
  g.value_info["c"] = {"c", f32(dims({1, 4, 8, 8}))};
  g.value_info["f"] = {"f", f32(dims({1, 256}))};
  return g;
}

TEST(ModelStats, CountsConvAndGemmMacsByHand) {
  const Graph g = conv_gemm_graph();
  const MacStats stats = count_macs(g);
  ASSERT_EQ(stats.layers.size(), 2u);  // Flatten is not a compute layer
  EXPECT_EQ(stats.layers[0].node->name, "conv1");
  ASSERT_TRUE(stats.layers[0].macs.has_value()) << stats.layers[0].reason;
  EXPECT_EQ(*stats.layers[0].macs, 6912);
  ASSERT_TRUE(stats.layers[1].macs.has_value()) << stats.layers[1].reason;
  EXPECT_EQ(*stats.layers[1].macs, 2560);
  EXPECT_EQ(stats.total, 6912 + 2560);
  EXPECT_EQ(stats.unknown, 0);
}

TEST(ModelStats, ComputesConvOutputShapeWhenNotInferred) {
  Graph g = conv_gemm_graph();
  g.value_info.erase("c");
  EXPECT_EQ(*count_macs(g).layers[0].macs, 6912);
  // Stride 2 with pads 1: out = floor((8 + 2 - 3) / 2) + 1 = 4 -> 1*4*4*4*27 = 1728.
  g.nodes[0].attributes["strides"] = ints_attr({2, 2});
  EXPECT_EQ(*count_macs(g).layers[0].macs, 1728);
  // SAME_UPPER, stride 2: out = ceil(8 / 2) = 4.
  g.nodes[0].attributes.erase("pads");
  g.nodes[0].attributes["auto_pad"] =
      Attribute{Attribute::Kind::kString, 0, 0, "SAME_UPPER", {}, {}, {}, {}, {}, {}, {}};
  EXPECT_EQ(*count_macs(g).layers[0].macs, 1728);
}

TEST(ModelStats, GroupConvUsesInputChannelsPerGroup) {
  // Depthwise: x[1,4,8,8], W[4,1,3,3], group 4 -> 1*4*8*8*1*9 = 2304.
  Graph g;
  g.inputs.push_back({"x", f32(dims({1, 4, 8, 8}))});
  g.initializers["W"] = Tensor(DType::kFloat32, {4, 1, 3, 3});
  Node conv = make_node("dw", "Conv", {"x", "W"}, {"y"});
  conv.attributes["pads"] = ints_attr({1, 1, 1, 1});
  conv.attributes["group"] = int_attr(4);
  g.nodes.push_back(conv);
  g.outputs.push_back({"y", f32(dims({1, 4, 8, 8}))});
  EXPECT_EQ(count_macs(g).total, 2304);
}

TEST(ModelStats, UnknownShapesAreReportedNotGuessed) {
  Graph g = conv_gemm_graph();
  g.inputs[0].type.dims[0] = Dim{-1, "batch"};
  g.value_info.clear();
  g.outputs[0].type.dims[0] = Dim{-1, "batch"};
  const MacStats stats = count_macs(g);
  EXPECT_EQ(stats.unknown, 2);
  EXPECT_EQ(stats.total, 0);
  EXPECT_FALSE(stats.layers[0].macs.has_value());
  EXPECT_NE(stats.layers[0].reason.find("\"x\""), std::string::npos) << stats.layers[0].reason;
  EXPECT_NE(stats.layers[1].reason.find("\"f\""), std::string::npos) << stats.layers[1].reason;
}

TEST(ModelStats, MatMulBroadcastsBatchDims) {
  // A[2,1,3,4] @ B[5,4,6] -> Y[2,5,3,6]: batch 10, M 3, N 6, K 4 -> 720.
  Graph g;
  g.inputs.push_back({"a", f32(dims({2, 1, 3, 4}))});
  g.initializers["b"] = Tensor(DType::kFloat32, {5, 4, 6});
  g.nodes.push_back(make_node("mm", "MatMul", {"a", "b"}, {"y"}));
  g.outputs.push_back({"y", TypeInfo{DType::kFloat32, false, {}}});
  EXPECT_EQ(count_macs(g).total, 720);
  // A 1-D vector: [4] @ [5,4,6] -> [5,6]: 5*1*6*4 = 120.
  g.inputs[0].type = f32(dims({4}));
  EXPECT_EQ(count_macs(g).total, 120);
}

TEST(ModelStats, RecurrentLayers) {
  // LSTM: X[seq 5, batch 2, input 8], W[1, 4*16, 8], R[1, 4*16, 16]
  //   -> 5 * 2 * (64*8 + 64*16) = 15360.
  Graph g;
  g.inputs.push_back({"x", f32(dims({5, 2, 8}))});
  g.initializers["W"] = Tensor(DType::kFloat32, {1, 64, 8});
  g.initializers["R"] = Tensor(DType::kFloat32, {1, 64, 16});
  g.nodes.push_back(make_node("lstm", "LSTM", {"x", "W", "R"}, {"y"}));
  EXPECT_EQ(count_macs(g).total, 15360);
}

TEST(ModelStats, EinsumCountsEveryIndexOnce) {
  // "bij,bjk->bik" with b 2, i 3, j 4, k 5: 2*3*4*5 = 120 (a batched MatMul).
  Graph g;
  g.inputs.push_back({"a", f32(dims({2, 3, 4}))});
  g.inputs.push_back({"b", f32(dims({2, 4, 5}))});
  Node n = make_node("e", "Einsum", {"a", "b"}, {"y"});
  n.attributes["equation"] = Attribute{Attribute::Kind::kString, 0, 0, "bij,bjk->bik", {}, {}, {}, {}, {}, {}, {}};
  g.nodes.push_back(n);
  EXPECT_EQ(count_macs(g).total, 120);
}

TEST(ModelStats, ParametersAreFloatInitializerElements) {
  const ParamStats p = count_parameters(conv_gemm_graph());
  EXPECT_EQ(p.parameters, 108 + 4 + 2560 + 10);
  EXPECT_EQ(p.parameter_bytes, 4 * (108 + 4 + 2560 + 10));
  EXPECT_EQ(p.total_bytes, p.parameter_bytes + 16);
  ASSERT_EQ(p.by_dtype.size(), 2u);
  EXPECT_EQ(p.by_dtype[0].dtype, DType::kFloat32);
  EXPECT_EQ(p.by_dtype[0].tensors, 4);
  EXPECT_EQ(p.by_dtype[1].dtype, DType::kInt64);
  EXPECT_EQ(p.by_dtype[1].elements, 2);
}

}  // namespace
}  // namespace kvant
