// Dynamic quantization beyond MatMul/Gemm: Conv as ONNX Runtime's
// ConvInteger pattern, large FP32 data constants (position embeddings,
// Gather tables) as int8 + DequantizeLinear, MatMulInteger without a weight
// zero point, and short names for what BatchNorm folding made up.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>

#include "kvant/status.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

Tensor random_tensor(Shape shape, std::mt19937& rng, float stddev = 1.0f) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::normal_distribution<float> dist(0.0f, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

double cosine(const Tensor& a, const Tensor& b) {
  double dot = 0, na = 0, nb = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    dot += a.get_as_double(i) * b.get_as_double(i);
    na += a.get_as_double(i) * a.get_as_double(i);
    nb += b.get_as_double(i) * b.get_as_double(i);
  }
  return dot / std::sqrt(na * nb);
}

std::vector<const Node*> nodes_of(const Graph& g, const std::string& op) {
  std::vector<const Node*> out;
  for (const Node& n : g.nodes) {
    if (n.op_type == op) out.push_back(&n);
  }
  return out;
}

// x [1, 4, 7, 7] -> Conv(W [6, 2, 3, 3], b [6], group 2, pads 1, strides 2) -> y
Model conv_model(bool second_reader_of_bias = false) {
  std::mt19937 rng(21);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {4, ""}, {7, ""}, {7, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {}}});
  Tensor w = random_tensor({6, 2, 3, 3}, rng);
  for (int64_t i = 0; i < 18; ++i) w.data<float>()[i] *= 0.05f;  // channel 0 far smaller than the rest
  g.initializers["W"] = w;
  g.initializers["b"] = random_tensor({6}, rng);
  Node conv = make_node("conv", "Conv", {"x", "W", "b"}, {"y"});
  set_attr(conv, "group", int64_t{2});
  set_attr(conv, "pads", {1, 1, 1, 1});
  set_attr(conv, "strides", {2, 2});
  g.nodes = {conv};
  if (second_reader_of_bias) {
    g.outputs.push_back({"z", {DType::kFloat32, true, {}}});
    g.nodes.push_back(make_node("bias_twice", "Add", {"b", "b"}, {"z"}));
  }
  return m;
}

TEST(DynamicQuantConv, BecomesConvIntegerWithUint8WeightsAroundZeroPoint128) {
  const Model fp32 = conv_model();
  QuantizeSummary summary;
  const Model q = quantize_dynamic(fp32, QuantizeOptions{}, &summary);
  EXPECT_EQ(summary.quantized_nodes, 1);
  EXPECT_TRUE(nodes_of(q.graph, "Conv").empty());
  ASSERT_EQ(nodes_of(q.graph, "ConvInteger").size(), 1u);
  ASSERT_EQ(nodes_of(q.graph, "DynamicQuantizeLinear").size(), 1u);
  const Node& ci = *nodes_of(q.graph, "ConvInteger")[0];
  EXPECT_EQ(ci.attr_int("group", 1), 2);
  EXPECT_EQ(ci.attr_ints("pads"), (std::vector<int64_t>{1, 1, 1, 1}));
  EXPECT_EQ(ci.attr_ints("strides"), (std::vector<int64_t>{2, 2}));
  ASSERT_EQ(ci.inputs.size(), 4u);
  const Tensor& wq = q.graph.initializers.at(ci.inputs[1]);
  const Tensor& wzp = q.graph.initializers.at(ci.inputs[3]);
  ASSERT_EQ(wq.dtype(), DType::kUInt8);
  ASSERT_EQ(wzp.dtype(), DType::kUInt8);
  ASSERT_EQ(wzp.numel(), 1);  // ONNX Runtime's ConvInteger takes one weight zero point
  EXPECT_EQ(wzp.data<uint8_t>()[0], 128);
  // Symmetric per output channel: every channel, the small one too, spans +-127 around 128.
  for (int64_t m = 0; m < 6; ++m) {
    int widest = 0;
    for (int64_t i = 0; i < 18; ++i) widest = std::max(widest, std::abs(wq.data<uint8_t>()[m * 18 + i] - 128));
    EXPECT_EQ(widest, 127) << "channel " << m;
  }
  EXPECT_FALSE(q.graph.initializers.count("W")) << "the FP32 weight left the file";
  ASSERT_TRUE(q.graph.initializers.count("b")) << "the bias keeps its name";
  EXPECT_EQ(q.graph.initializers.at("b").shape(), (Shape{6, 1, 1}));

  std::mt19937 rng(5);
  const Tensor x = random_tensor({1, 4, 7, 7}, rng);
  const Tensor a = ReferenceExecutor(fp32).run({{"x", x}}).at("y");
  const Tensor b = ReferenceExecutor(q).run({{"x", x}}).at("y");
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_GT(cosine(a, b), 0.999);
}

TEST(DynamicQuantConv, ReduceRangeGivesSevenBitWeights) {
  QuantizeOptions options;
  options.reduce_range = true;
  const Model q = quantize_dynamic(conv_model(), options, nullptr);
  const Node& ci = *nodes_of(q.graph, "ConvInteger").at(0);
  const Tensor& wq = q.graph.initializers.at(ci.inputs[1]);
  int widest = 0;
  for (int64_t i = 0; i < wq.numel(); ++i) widest = std::max(widest, std::abs(wq.data<uint8_t>()[i] - 128));
  EXPECT_EQ(widest, 63);
}

TEST(DynamicQuantConv, SharedBiasGetsAReshapedCopyAndExcludeKeepsFloat) {
  const Model fp32 = conv_model(true);
  const Model q = quantize_dynamic(fp32, QuantizeOptions{}, nullptr);
  EXPECT_EQ(q.graph.initializers.at("b").shape(), (Shape{6})) << "its other reader still sees [6]";
  std::mt19937 rng(6);
  const Tensor x = random_tensor({1, 4, 7, 7}, rng);
  const auto a = ReferenceExecutor(fp32).run({{"x", x}});
  const auto b = ReferenceExecutor(q).run({{"x", x}});
  EXPECT_GT(cosine(a.at("y"), b.at("y")), 0.999);
  EXPECT_EQ(cosine(a.at("z"), b.at("z")), 1.0);

  QuantizeOptions options;
  options.exclude = {"conv"};
  // Nothing left to quantize: the model comes back unchanged, with a warning (design decision 24).
  QuantizeSummary summary;
  const Model unchanged = quantize_dynamic(conv_model(), options, &summary);
  EXPECT_EQ(unchanged.graph.nodes.size(), conv_model().graph.nodes.size());
  ASSERT_EQ(summary.warnings.size(), 1u);
  EXPECT_NE(summary.warnings[0].find("unchanged"), std::string::npos) << summary.warnings[0];
}

// x [1, 4, 9, 9] -> depthwise Conv (W [4, 1, 3, 3], group 4) -> 1x1 Conv
// (W [6, 4, 1, 1]) -> y: the depthwise one stays FP32 with its reason
// (design decision 54), the 1x1 becomes ConvInteger; a grouped conv that is
// not depthwise (conv_model: group 2) is still quantized (the test above).
TEST(DynamicQuantConv, DepthwiseConvStaysFp32) {
  std::mt19937 rng(31);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {4, ""}, {9, ""}, {9, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {}}});
  g.initializers["Wd"] = random_tensor({4, 1, 3, 3}, rng);
  g.initializers["Wp"] = random_tensor({6, 4, 1, 1}, rng);
  Node dw = make_node("dw", "Conv", {"x", "Wd"}, {"t"});
  set_attr(dw, "group", int64_t{4});
  set_attr(dw, "pads", {1, 1, 1, 1});
  g.nodes = {dw, make_node("pw", "Conv", {"t", "Wp"}, {"y"})};
  QuantizeSummary summary;
  const Model q = quantize_dynamic(m, QuantizeOptions{}, &summary);
  EXPECT_EQ(summary.quantized_nodes, 1);
  ASSERT_EQ(nodes_of(q.graph, "Conv").size(), 1u);
  EXPECT_EQ(nodes_of(q.graph, "Conv")[0]->name, "dw");
  EXPECT_EQ(nodes_of(q.graph, "ConvInteger").size(), 1u);
  ASSERT_EQ(summary.fp32_reasons.size(), 1u);
  EXPECT_EQ(summary.fp32_reasons[0].first, "dw");
  EXPECT_NE(summary.fp32_reasons[0].second.find("depthwise"), std::string::npos);
  EXPECT_EQ(q.graph.initializers.at("Wd").dtype(), DType::kFloat32);
  const Tensor x = random_tensor({1, 4, 9, 9}, rng);
  EXPECT_GT(cosine(ReferenceExecutor(m).run({{"x", x}}).at("y"), ReferenceExecutor(q).run({{"x", x}}).at("y")), 0.999);
}

TEST(DynamicQuant, MatMulIntegerHasNoWeightZeroPoint) {
  std::mt19937 rng(3);
  Model m;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", {DType::kFloat32, true, {{2, ""}, {16, ""}}}});
  m.graph.outputs.push_back({"y", {DType::kFloat32, true, {}}});
  m.graph.initializers["W"] = random_tensor({16, 8}, rng);
  m.graph.nodes = {make_node("mm", "MatMul", {"x", "W"}, {"y"})};
  const Model q = quantize_dynamic(m, QuantizeOptions{}, nullptr);
  const Node& mmi = *nodes_of(q.graph, "MatMulInteger").at(0);
  EXPECT_EQ(mmi.num_present_inputs(), 3u) << "symmetric int8 weights: b_zero_point defaults to 0";
  const Tensor x = random_tensor({2, 16}, rng);
  EXPECT_GT(cosine(ReferenceExecutor(m).run({{"x", x}}).at("y"), ReferenceExecutor(q).run({{"x", x}}).at("y")), 0.999);
}

// tokens [2, 16, 64] + pos [1, 16, 64] -> MatMul(W [64, 8]) -> y; ids [2, 3] ->
// Gather(table [40, 32]) -> e; v [2, 1, 2048] + long_bias [1, 1, 2048] -> ReduceSum -> s.
// Only pos and table are data.
Model embedding_model(int64_t opset) {
  std::mt19937 rng(9);
  Model m;
  m.opset_imports[""] = opset;
  Graph& g = m.graph;
  g.inputs.push_back({"tokens", {DType::kFloat32, true, {{2, ""}, {16, ""}, {64, ""}}}});
  g.inputs.push_back({"ids", {DType::kInt64, true, {{2, ""}, {3, ""}}}});
  g.inputs.push_back({"v", {DType::kFloat32, true, {{2, ""}, {1, ""}, {2048, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {}}});
  g.outputs.push_back({"e", {DType::kFloat32, true, {}}});
  g.outputs.push_back({"s", {DType::kFloat32, true, {}}});
  g.initializers["pos"] = random_tensor({1, 16, 64}, rng, 0.1f);
  g.initializers["W"] = random_tensor({64, 8}, rng);
  g.initializers["table"] = random_tensor({40, 32}, rng);
  for (int64_t i = 0; i < 32; ++i) g.initializers["table"].data<float>()[i] *= 0.01f;  // row 0: small values
  g.initializers["long_bias"] = random_tensor({1, 1, 2048}, rng);                      // a vector: stays FP32
  g.nodes = {make_node("add_pos", "Add", {"tokens", "pos"}, {"t"}), make_node("mm", "MatMul", {"t", "W"}, {"y"}),
             make_node("embed", "Gather", {"table", "ids"}, {"e"}),
             make_node("shift", "Add", {"v", "long_bias"}, {"s_raw"}), make_node("sum", "ReduceSum", {"s_raw"}, {"s"})};
  set_attr(g.nodes.back(), "keepdims", int64_t{0});
  return m;
}

const Node* producer(const Graph& g, const std::string& value) {
  for (const Node& n : g.nodes) {
    if (std::find(n.outputs.begin(), n.outputs.end(), value) != n.outputs.end()) return &n;
  }
  return nullptr;
}

TEST(DynamicQuantData, PositionEmbeddingAndGatherTableBecomeInt8) {
  const Model fp32 = embedding_model(13);
  QuantizeSummary summary;
  const Model q = quantize_dynamic(fp32, QuantizeOptions{}, &summary);
  const Node* pos = producer(q.graph, "pos");
  const Node* table = producer(q.graph, "table");
  ASSERT_NE(pos, nullptr);
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(pos->op_type, "DequantizeLinear");
  EXPECT_EQ(table->op_type, "DequantizeLinear");
  EXPECT_EQ(q.graph.initializers.at(pos->inputs[0]).dtype(), DType::kInt8);
  EXPECT_EQ(q.graph.initializers.at(pos->inputs[1]).numel(), 1) << "per tensor";
  EXPECT_EQ(q.graph.initializers.at(table->inputs[1]).numel(), 40) << "one scale per row";
  EXPECT_EQ(table->attr_int("axis", 1), 0);
  EXPECT_FALSE(q.graph.initializers.count("pos"));
  ASSERT_TRUE(q.graph.initializers.count("long_bias"));
  EXPECT_EQ(q.graph.initializers.at("long_bias").dtype(), DType::kFloat32) << "a [1, 1, C] vector is not data";
  EXPECT_FALSE(summary.notes.empty());

  std::mt19937 rng(10);
  Tensor ids(DType::kInt64, {2, 3});
  for (int64_t i = 0; i < 6; ++i) ids.data<int64_t>()[i] = (i * 7) % 40;  // row 0 too
  const std::map<std::string, Tensor> feed = {
      {"tokens", random_tensor({2, 16, 64}, rng)}, {"ids", ids}, {"v", random_tensor({2, 1, 2048}, rng)}};
  const auto a = ReferenceExecutor(fp32).run(feed);
  const auto b = ReferenceExecutor(q).run(feed);
  EXPECT_GT(cosine(a.at("y"), b.at("y")), 0.999);
  // Per-row scales: each looked-up value within half a step of its row's max / 127.
  const Tensor& t = fp32.graph.initializers.at("table");
  for (int64_t i = 0; i < 6; ++i) {
    const int64_t row = ids.data<int64_t>()[i];
    double row_max = 0;
    for (int64_t d = 0; d < 32; ++d) row_max = std::max(row_max, std::fabs(t.get_as_double(row * 32 + d)));
    for (int64_t d = 0; d < 32; ++d) {
      EXPECT_NEAR(a.at("e").get_as_double(i * 32 + d), b.at("e").get_as_double(i * 32 + d), row_max / 127 / 2 * 1.001)
          << "row " << row;
    }
  }
  EXPECT_EQ(cosine(a.at("s"), b.at("s")), 1.0);
}

TEST(DynamicQuantData, PerTensorGivesOneScaleAndOldOpsetsAreUpgraded) {
  QuantizeOptions options;
  options.per_channel = false;
  const Model q = quantize_dynamic(embedding_model(13), options, nullptr);
  const Node* table = producer(q.graph, "table");
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(q.graph.initializers.at(table->inputs[1]).numel(), 1);
  EXPECT_FALSE(table->has_attr("axis"));
  // Opset 11 is upgraded to 13 first, so the table keeps one scale per row.
  const Model old = quantize_dynamic(embedding_model(11), QuantizeOptions{}, nullptr);
  EXPECT_EQ(old.opset(), 13);
  const Node* rows = producer(old.graph, "table");
  ASSERT_NE(rows, nullptr);
  EXPECT_GT(old.graph.initializers.at(rows->inputs[1]).numel(), 1);
  EXPECT_TRUE(rows->has_attr("axis"));
}

TEST(CompactNames, NamesMadeUpByBatchNormFoldingAreShortToo) {
  std::mt19937 rng(4);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {3, ""}, {4, ""}, {4, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {}}});
  g.initializers["W"] = random_tensor({2, 3, 1, 1}, rng);
  g.initializers["scale"] = random_tensor({2}, rng);
  g.initializers["bias"] = random_tensor({2}, rng);
  g.initializers["mean"] = random_tensor({2}, rng);
  g.initializers["var"] = Tensor::from_vector(std::vector<float>{1.5f, 0.7f}, {2});
  g.nodes = {make_node("conv", "Conv", {"x", "W"}, {"c"}),
             make_node("bn", "BatchNormalization", {"c", "scale", "bias", "mean", "var"}, {"y"})};
  const Model prepared = prepare_for_quantization(m);
  const Model q = quantize_dynamic(prepared, QuantizeOptions{}, nullptr);
  auto longest_new_name = [&](const Model& c) {
    size_t longest = 0;
    for (const auto& [name, t] : c.graph.initializers) {
      if (!m.graph.initializers.count(name)) longest = std::max(longest, name.size());
    }
    return longest;
  };
  Model against_prepared = q, against_original = q;
  compact_new_names(prepared, against_prepared);
  compact_new_names(m, against_original);
  EXPECT_GT(longest_new_name(against_prepared), 10u) << "the folded bias keeps its made-up name";
  EXPECT_LE(longest_new_name(against_original), 3u);
  const Tensor x = random_tensor({1, 3, 4, 4}, rng);
  const Tensor a = ReferenceExecutor(q).run({{"x", x}}).at("y");
  const Tensor b = ReferenceExecutor(against_original).run({{"x", x}}).at("y");
  for (int64_t i = 0; i < a.numel(); ++i) EXPECT_EQ(a.get_as_double(i), b.get_as_double(i));
}

}  // namespace
}  // namespace kvant
