// The quantization algorithms on small graphs built here: the QDQ structure
// they produce, and that the QDQ simulation stays close to FP32.
#include "quant/quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvant/status.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

Tensor random_tensor(Shape shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// x[1,2,6,6] -> Conv(4x2x3x3, pad 1) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4x3) -> y
Model conv_model() {
  std::mt19937 rng(7);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {2, ""}, {6, ""}, {6, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {3, ""}}}});
  g.initializers["W"] = random_tensor({4, 2, 3, 3}, rng);
  g.initializers["b"] = random_tensor({4}, rng);
  g.initializers["W2"] = random_tensor({4, 3}, rng);
  g.initializers["b2"] = random_tensor({3}, rng);
  Node conv = make_node("conv", "Conv", {"x", "W", "b"}, {"c"});
  set_attr(conv, "pads", {1, 1, 1, 1});
  g.nodes = {conv, make_node("relu", "Relu", {"c"}, {"r"}), make_node("gap", "GlobalAveragePool", {"r"}, {"p"}),
             make_node("flatten", "Flatten", {"p"}, {"f"}), make_node("fc", "Gemm", {"f", "W2", "b2"}, {"y"})};
  return m;
}

VectorSource random_samples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < n; ++i) v.push_back({{"x", random_tensor({1, 2, 6, 6}, rng)}});
  return VectorSource(v);
}

const Node* find_node(const Graph& g, const std::string& name) {
  for (const Node& n : g.nodes) {
    if (n.name == name) return &n;
  }
  return nullptr;
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

TEST(StaticPtq, PlacesQdqAfterTheFusedActivationAndQuantizesWeightsPerChannel) {
  const Model fp32 = conv_model();
  VectorSource calib = random_samples(16, 1);
  QuantizeOptions options;
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, options, &summary);
  const Graph& g = q.graph;
  EXPECT_NE(find_node(g, "x/QuantizeLinear"), nullptr);
  EXPECT_NE(find_node(g, "r/QuantizeLinear"), nullptr);
  EXPECT_EQ(find_node(g, "c/QuantizeLinear"), nullptr) << "no Q/DQ between Conv and its Relu";
  ASSERT_TRUE(g.initializers.count("W/q"));
  EXPECT_EQ(g.initializers.at("W/q").dtype(), DType::kInt8);
  EXPECT_EQ(g.initializers.at("W/scale").numel(), 4);  // one per output channel
  EXPECT_EQ(g.initializers.at("b/q").dtype(), DType::kInt32);
  EXPECT_FALSE(g.initializers.count("W")) << "the float weight is gone";
  // Flatten shares its input's parameters: no separate observer range.
  // Flatten moves values only: its output shares the pool output's parameters,
  // the very same initializers.
  ASSERT_NE(find_node(g, "f/QuantizeLinear"), nullptr);
  ASSERT_NE(find_node(g, "p/QuantizeLinear"), nullptr);
  EXPECT_EQ(find_node(g, "f/QuantizeLinear")->inputs[1], find_node(g, "p/QuantizeLinear")->inputs[1]);
  EXPECT_EQ(find_node(g, "f/QuantizeLinear")->inputs[2], find_node(g, "p/QuantizeLinear")->inputs[2]);
  EXPECT_EQ(summary.calibration_samples, 16);

  // Bias scale = input scale * weight scale, per channel.
  const float x_scale = g.initializers.at("x/scale").data<float>()[0];
  for (int c = 0; c < 4; ++c) {
    EXPECT_FLOAT_EQ(g.initializers.at("b/scale").data<float>()[c],
                    x_scale * g.initializers.at("W/scale").data<float>()[c]);
  }

  VectorSource test = random_samples(4, 99);
  ReferenceExecutor a(fp32), b(q);
  while (auto feed = test.next()) {
    const Tensor ya = a.run(*feed).at("y");
    const Tensor yb = b.run(*feed).at("y");
    EXPECT_GT(cosine(ya, yb), 0.995);
  }
}

TEST(StaticPtq, ExcludeFirstKeepsTheConvInFloat) {
  VectorSource calib = random_samples(4, 1);
  QuantizeOptions options;
  options.exclude = {"first"};
  QuantizeSummary summary;
  const Model q = quantize_static(conv_model(), calib, options, &summary);
  EXPECT_TRUE(q.graph.initializers.count("W"));
  EXPECT_TRUE(q.graph.initializers.count("W2/q"));
  ASSERT_EQ(summary.kept_fp32.size(), 1u);
  EXPECT_EQ(summary.kept_fp32[0], "conv");
}

// Static W4A8 with one layer moved back up to 8-bit weights (the accuracy
// target's INT4 -> INT8 step): that layer's weight codes are int8, the
// other's int4, both on one opset-21 file.
TEST(StaticPtq, W4A8KeepsTheListedLayersAtEightBitWeights) {
  VectorSource calib = random_samples(4, 1);
  QuantizeOptions options;
  options.weight_type = DType::kInt4;
  options.int8_weight_layers = {"fc"};
  QuantizeSummary summary;
  const Model q = quantize_static(conv_model(), calib, options, &summary);
  EXPECT_GE(q.opset(), 21);
  ASSERT_TRUE(q.graph.initializers.count("W/q"));
  ASSERT_TRUE(q.graph.initializers.count("W2/q"));
  EXPECT_EQ(q.graph.initializers.at("W/q").dtype(), DType::kInt4);
  EXPECT_EQ(q.graph.initializers.at("W2/q").dtype(), DType::kInt8);
  // The 8-bit layer's codes use the int8 range: its largest weight maps to 127.
  const Tensor& w2 = q.graph.initializers.at("W2/q");
  int max_code = 0;
  for (int64_t i = 0; i < w2.numel(); ++i)
    max_code = std::max(max_code, std::abs(static_cast<int>(w2.get_as_double(i))));
  EXPECT_EQ(max_code, 127);
  EXPECT_EQ(summary.kept_fp32.size(), 0u);
}

// x -> Conv -> Relu -> MaxPool -> Concat -> Conv 1x1 -> y
// x -> Conv (k 2, stride 2: a signed output) -^
// The Concat's signed range must not reach back over the MaxPool into the
// Relu (densenet121's first block, docs/zoo.md finding 9): the Relu's Q
// keeps zero point 0, and the Concat requantizes the pooled values.
const Node* quantize_of(const Graph& g, const std::string& value) { return find_node(g, value + "/QuantizeLinear"); }

TEST(StaticPtq, ConcatOfSignedValuesDoesNotShiftAReluZeroPoint) {
  std::mt19937 rng(3);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {2, ""}, {6, ""}, {6, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {2, ""}, {3, ""}, {3, ""}}}});
  g.initializers["Wa"] = random_tensor({4, 2, 3, 3}, rng);
  g.initializers["Wb"] = random_tensor({4, 2, 2, 2}, rng);
  g.initializers["Wc"] = random_tensor({2, 8, 1, 1}, rng);
  Node conv_a = make_node("conv_a", "Conv", {"x", "Wa"}, {"a"});
  set_attr(conv_a, "pads", {1, 1, 1, 1});
  Node pool = make_node("pool", "MaxPool", {"r"}, {"p"});
  set_attr(pool, "kernel_shape", {2, 2});
  set_attr(pool, "strides", {2, 2});
  Node conv_b = make_node("conv_b", "Conv", {"x", "Wb"}, {"s"});
  set_attr(conv_b, "strides", {2, 2});
  Node cat = make_node("cat", "Concat", {"p", "s"}, {"c"});
  set_attr(cat, "axis", int64_t{1});
  g.nodes = {conv_a, make_node("relu", "Relu", {"a"}, {"r"}),        pool, conv_b,
             cat,    make_node("conv_c", "Conv", {"c", "Wc"}, {"y"})};
  VectorSource calib = random_samples(8, 1);
  const Model q = quantize_static(m, calib, QuantizeOptions{}, nullptr);
  const Graph& qg = q.graph;
  const Node* relu_q = quantize_of(qg, "r");
  const Node* pool_q = quantize_of(qg, "p");
  const Node* signed_q = quantize_of(qg, "s");
  const Node* cat_q = quantize_of(qg, "c");
  ASSERT_TRUE(relu_q && pool_q && signed_q && cat_q) << print_graph(qg);
  const Tensor& relu_zp = qg.initializers.at(relu_q->inputs[2]);
  EXPECT_EQ(relu_zp.dtype(), DType::kUInt8);
  EXPECT_EQ(relu_zp.get_as_int64(0), 0) << "the Relu's range was widened by the Concat's signed inputs";
  // The MaxPool still shares the Relu's parameters (it only selects values);
  // the signed input shares the Concat's.
  EXPECT_EQ(pool_q->inputs[1], relu_q->inputs[1]);
  EXPECT_EQ(signed_q->inputs[1], cat_q->inputs[1]);
  EXPECT_NE(cat_q->inputs[1], relu_q->inputs[1]);
  EXPECT_GT(qg.initializers.at(cat_q->inputs[2]).get_as_int64(0), 0) << "the Concat's range is signed";
  // And the simulation stays close to FP32.
  VectorSource test = random_samples(4, 42);
  ReferenceExecutor a(m), b(q);
  while (auto feed = test.next()) EXPECT_GT(cosine(a.run(*feed).at("y"), b.run(*feed).at("y")), 0.99);
}

// x[1,8] -> MatMul(8x8) -> scores; Add(scores, mask) -> Softmax -> MatMul(8x3) -> y, the mask 0 or -1e9
// per key as decoders export it: the Add feeding Softmax stays FP32 (a scale set by -1e9 would round every
// score to one value), its MatMuls are still quantized.
TEST(StaticPtq, AddOfAnAttentionMaskBeforeSoftmaxStaysFloat) {
  std::mt19937 rng(5);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {8, ""}}}});
  g.inputs.push_back({"mask", {DType::kFloat32, true, {{1, ""}, {8, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {3, ""}}}});
  g.initializers["Wq"] = random_tensor({8, 8}, rng, -2.0f, 2.0f);
  g.initializers["Wv"] = random_tensor({8, 3}, rng);
  Node softmax = make_node("softmax", "Softmax", {"a"}, {"p"});
  set_attr(softmax, "axis", int64_t{-1});
  g.nodes = {make_node("scores", "MatMul", {"x", "Wq"}, {"s"}), make_node("add_mask", "Add", {"s", "mask"}, {"a"}),
             softmax, make_node("values", "MatMul", {"p", "Wv"}, {"y"})};
  auto samples = [](int n, uint32_t seed) {
    std::mt19937 r(seed);
    std::vector<std::map<std::string, Tensor>> v;
    for (int i = 0; i < n; ++i) {
      Tensor mask(DType::kFloat32, {1, 8});
      for (int k = 0; k < 8; ++k) mask.data<float>()[k] = k <= i % 8 ? 0.0f : -1e9f;  // causal: keys 0..i
      v.push_back({{"x", random_tensor({1, 8}, r)}, {"mask", mask}});
    }
    return VectorSource(v);
  };
  VectorSource calib = samples(16, 1);
  const Model q = quantize_static(m, calib, QuantizeOptions{}, nullptr);
  const Graph& qg = q.graph;
  EXPECT_EQ(quantize_of(qg, "a"), nullptr) << print_graph(qg);
  EXPECT_NE(quantize_of(qg, "x"), nullptr) << print_graph(qg);
  EXPECT_NE(quantize_of(qg, "p"), nullptr) << "the second MatMul is still quantized\n" << print_graph(qg);
  VectorSource test = samples(8, 42);
  ReferenceExecutor a(m), b(q);
  while (auto feed = test.next()) EXPECT_GT(cosine(a.run(*feed).at("y"), b.run(*feed).at("y")), 0.99);
}

TEST(StaticPtq, BadInputGetsClearErrors) {
  QuantizeOptions options;
  options.exclude = {"no_such_node"};
  VectorSource calib = random_samples(2, 1);
  try {
    quantize_static(conv_model(), calib, options, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no_such_node"), std::string::npos) << e.what();
  }

  Tensor nan_input(DType::kFloat32, {1, 2, 6, 6});
  nan_input.data<float>()[5] = NAN;
  VectorSource bad({{{"x", nan_input}}});
  try {
    quantize_static(conv_model(), bad, QuantizeOptions{}, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
  }

  VectorSource wrong_shape({{{"x", Tensor(DType::kFloat32, {1, 3, 6, 6})}}});
  EXPECT_THROW(quantize_static(conv_model(), wrong_shape, QuantizeOptions{}, nullptr), Error);

  VectorSource empty({});
  EXPECT_THROW(quantize_static(conv_model(), empty, QuantizeOptions{}, nullptr), Error);

  VectorSource calib2 = random_samples(2, 1);
  const Model q = quantize_static(conv_model(), calib2, QuantizeOptions{}, nullptr);
  VectorSource calib3 = random_samples(2, 1);
  try {
    quantize_static(q, calib3, QuantizeOptions{}, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("already quantized"), std::string::npos) << e.what();
  }
}

TEST(StaticPtq, LayerReportRanksLayers) {
  const Model fp32 = conv_model();
  VectorSource calib = random_samples(8, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
  VectorSource test = random_samples(4, 5);
  const auto layers = compare_layers(fp32, q, summary.layer_outputs, test, 4);
  ASSERT_FALSE(layers.empty());
  for (size_t i = 1; i < layers.size(); ++i) EXPECT_LE(layers[i - 1].sqnr_db, layers[i].sqnr_db);
  for (const auto& l : layers) {
    EXPECT_GT(l.sqnr_db, 20.0) << l.node;  // 8-bit: ~40 dB ideal; well above 20 on this tiny net
    EXPECT_GT(l.cosine, 0.99) << l.node;
  }
}

// x[2,8] -> MatMul(W 8x4) -> Add(b) -> y
Model matmul_model() {
  std::mt19937 rng(3);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{2, ""}, {64, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{2, ""}, {8, ""}}}});
  g.initializers["W"] = random_tensor({64, 8}, rng);
  g.initializers["b"] = random_tensor({8}, rng);
  g.nodes = {make_node("mm", "MatMul", {"x", "W"}, {"m"}), make_node("add", "Add", {"m", "b"}, {"y"})};
  return m;
}

TEST(DynamicQuant, RewritesMatMulToMatMulInteger) {
  const Model fp32 = matmul_model();
  QuantizeSummary summary;
  const Model q = quantize_dynamic(fp32, QuantizeOptions{}, &summary);
  EXPECT_NE(find_node(q.graph, "mm/MatMulInteger"), nullptr);
  EXPECT_NE(find_node(q.graph, "mm/DynamicQuantizeLinear"), nullptr);
  EXPECT_EQ(q.graph.initializers.at("mm/W_q").dtype(), DType::kInt8);
  std::mt19937 rng(11);
  const std::map<std::string, Tensor> feed = {{"x", random_tensor({2, 64}, rng)}};
  ReferenceExecutor a(fp32), b(q);
  EXPECT_GT(cosine(a.run(feed).at("y"), b.run(feed).at("y")), 0.999);
}

TEST(WeightOnly, Int4BlockedWeightsWithinHalfAStepOfFloat) {
  const Model fp32 = matmul_model();
  QuantizeOptions options;
  options.group_size = 32;
  options.weight_clip_search = false;  // plain min/max: every weight within half a step
  QuantizeSummary summary;
  const Model q = quantize_weight_only(fp32, 4, options, &summary);
  EXPECT_EQ(q.opset(), 21);
  const Tensor& wq = q.graph.initializers.at("W/q");
  EXPECT_EQ(wq.dtype(), DType::kInt4);
  EXPECT_EQ(wq.nbytes(), 64u * 8 / 2);  // two values per byte
  const Tensor& scale = q.graph.initializers.at("W/scale");
  EXPECT_EQ(scale.shape(), (Shape{2, 8}));  // K / group_size blocks x N
  const Tensor& w = fp32.graph.initializers.at("W");
  for (int64_t k = 0; k < 64; ++k) {
    for (int64_t n = 0; n < 8; ++n) {
      const float s = scale.data<float>()[(k / 32) * 8 + n];
      const double dq = wq.get_as_double(k * 8 + n) * s;
      EXPECT_LE(std::fabs(dq - w.data<float>()[k * 8 + n]), s / 2 + 1e-6) << k << "," << n;
    }
  }
  std::mt19937 rng(11);
  const std::map<std::string, Tensor> feed = {{"x", random_tensor({2, 64}, rng)}};
  ReferenceExecutor a(fp32), b(q);
  EXPECT_GT(cosine(a.run(feed).at("y"), b.run(feed).at("y")), 0.98);
}

}  // namespace
}  // namespace kvant
