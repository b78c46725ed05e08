// Sensitivity analysis (quant/sensitivity.h): the metric with only layer i
// quantized, from partial runs over kept FP32 values, equals quantizing only
// layer i with the normal quantizer (every other layer and the Add/pool nodes
// excluded) and running the whole model; bad input is refused before work.
#include "quant/sensitivity.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvant/status.h"
#include "quant/quantize.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

Node conv(const std::string& name, const std::string& x, const std::string& w, const std::string& b,
          const std::string& y, int64_t k) {
  Node n = make_node(name, "Conv", {x, w, b}, {y});
  set_attr(n, "kernel_shape", std::vector<int64_t>{k, k});
  set_attr(n, "pads", std::vector<int64_t>{k / 2, k / 2, k / 2, k / 2});
  return n;
}

// x[1,4,8,8] -> c1 (3x3) -> Relu -> c2 (3x3) -> Relu -> Add <- side (1x1 on x)
//   -> c3 (1x1) -> GlobalAveragePool -> Flatten -> Gemm g -> y[1,10]
// x feeds two layers (its Q/DQ reaches both), c1/c2 have fused Relus, and
// the Add joins two branches. Channel 0 of c3's weight is large, so layers
// differ in how much they cost.
Model network() {
  std::mt19937 rng(7);
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {4, ""}, {8, ""}, {8, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {10, ""}}}});
  g.initializers["W1"] = uniform({8, 4, 3, 3}, rng, -0.4f, 0.4f);
  g.initializers["B1"] = uniform({8}, rng, -0.1f, 0.1f);
  g.initializers["W2"] = uniform({8, 8, 3, 3}, rng, -0.3f, 0.3f);
  g.initializers["B2"] = uniform({8}, rng, -0.1f, 0.1f);
  g.initializers["WS"] = uniform({8, 4, 1, 1}, rng, -0.5f, 0.5f);
  g.initializers["BS"] = uniform({8}, rng, -0.1f, 0.1f);
  Tensor w3 = uniform({8, 8, 1, 1}, rng, -0.5f, 0.5f);
  for (int i = 0; i < 8; ++i) w3.data<float>()[i] *= 8;  // output channel 0
  g.initializers["W3"] = w3;
  g.initializers["B3"] = uniform({8}, rng, -0.1f, 0.1f);
  g.initializers["WG"] = uniform({10, 8}, rng, -0.6f, 0.6f);
  g.initializers["BG"] = uniform({10}, rng, -0.1f, 0.1f);
  Node gemm = make_node("g", "Gemm", {"f", "WG", "BG"}, {"y"});
  set_attr(gemm, "transB", int64_t{1});
  g.nodes = {conv("c1", "x", "W1", "B1", "h1", 3),       make_node("r1", "Relu", {"h1"}, {"a1"}),
             conv("c2", "a1", "W2", "B2", "h2", 3),      make_node("r2", "Relu", {"h2"}, {"a2"}),
             conv("side", "x", "WS", "BS", "s", 1),      make_node("add", "Add", {"a2", "s"}, {"sum"}),
             conv("c3", "sum", "W3", "B3", "h3", 1),     make_node("gap", "GlobalAveragePool", {"h3"}, {"p"}),
             make_node("flat", "Flatten", {"p"}, {"f"}), gemm};
  return m;
}

VectorSource samples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < n; ++i) v.push_back({{"x", uniform({1, 4, 8, 8}, rng, -1.0f, 1.0f)}});
  return VectorSource(v);
}

std::vector<float> run(const Model& model, const std::map<std::string, Tensor>& feed, bool reference) {
  if (reference) {
    ReferenceExecutor exec(model);
    return exec.run(feed).at("y").to_float_vector();
  }
  CompiledModel compiled(model);
  return compiled.run(feed).at("y").to_float_vector();
}

// Brute force: quantize only `layer` with the normal quantizer, run the whole model.
OutputScores brute_force(const Model& fp32, const std::string& layer, const std::vector<int64_t>& labels,
                         bool reference) {
  QuantizeOptions options;
  for (const char* other : {"c1", "c2", "side", "c3", "g"}) {
    if (layer != other) options.exclude.push_back(other);
  }
  options.exclude.push_back("Add");  // the static quantizer gives these their own scales
  options.exclude.push_back("GlobalAveragePool");
  VectorSource calib = samples(16, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, options, &summary);
  VectorSource eval = samples(24, 2);
  OutputScores scores;
  size_t i = 0;
  while (auto feed = eval.next()) {
    const std::vector<float> x = run(fp32, *feed, reference), y = run(q, *feed, reference);
    scores.add(x.data(), y.data(), static_cast<int64_t>(x.size()), true, labels[i++]);
  }
  return scores;
}

std::vector<int64_t> some_labels(int n) {
  std::vector<int64_t> labels;
  for (int i = 0; i < n; ++i) labels.push_back(i % 10);
  return labels;
}

void check_against_brute_force(bool reference, double tolerance) {
  const Model fp32 = network();
  VectorSource calib = samples(16, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
  const std::vector<QuantizedLayer> layers = quantized_layers(fp32, q);
  ASSERT_EQ(layers.size(), 5u);
  EXPECT_EQ(layers[0].node, "c1");
  EXPECT_EQ(layers[0].tensor, "a1");  // the fused Relu's output
  EXPECT_EQ(layers[0].activation, "r1");
  VectorSource eval = samples(24, 2);
  const std::vector<int64_t> labels = some_labels(24);
  SensitivityOptions options;
  options.metric = TaskMetric::kMse;
  options.reference = reference;
  options.leave_one_out = true;
  const SensitivityResult r = analyze_sensitivity(fp32, q, layers, eval, labels, options);
  EXPECT_EQ(r.samples, 24);
  ASSERT_EQ(r.layers.size(), 5u);
  double previous = INFINITY;
  for (const LayerSensitivity& ls : r.layers) {
    SCOPED_TRACE(ls.layer.node + (reference ? " (reference)" : " (compiled)"));
    ASSERT_TRUE(ls.measured) << ls.note;
    const OutputScores expected = brute_force(fp32, ls.layer.node, labels, reference);
    EXPECT_GT(expected.mse(), 0);
    EXPECT_NEAR(ls.only.mse(), expected.mse(), tolerance * expected.mse());
    EXPECT_NEAR(ls.only.sqnr_db(), expected.sqnr_db(), 0.01);
    EXPECT_EQ(ls.only.agree, expected.agree);
    EXPECT_EQ(ls.only.correct1, expected.correct1);
    EXPECT_EQ(ls.only.correct5, expected.correct5);
    EXPECT_LE(ls.only.mse(), previous);  // ranked: the largest error first
    previous = ls.only.mse();
    // All but this layer: between nothing and everything quantized.
    EXPECT_GT(ls.all_but.mse(), 0);
    EXPECT_LT(ls.all_but.mse(), 2 * r.quantized.mse());
  }
}

TEST(Sensitivity, OnlyOneLayerEqualsBruteForceReference) { check_against_brute_force(true, 1e-5); }

TEST(Sensitivity, OnlyOneLayerEqualsBruteForceCompiled) { check_against_brute_force(false, 1e-3); }

// Kept values over the budget: samples go in chunks, each partial model is
// compiled again per chunk, and the sums come out the same.
TEST(Sensitivity, ChunksGiveTheSameSums) {
  const Model fp32 = network();
  VectorSource calib = samples(8, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
  const auto layers = quantized_layers(fp32, q);
  SensitivityOptions options;
  options.metric = TaskMetric::kSqnr;
  options.reference = true;
  VectorSource eval = samples(7, 2);
  const SensitivityResult one = analyze_sensitivity(fp32, q, layers, eval, {}, options);
  options.cache_bytes = 1;  // one sample per chunk
  const SensitivityResult many = analyze_sensitivity(fp32, q, layers, eval, {}, options);
  EXPECT_EQ(one.chunks, 1);
  EXPECT_EQ(many.chunks, 7);
  ASSERT_EQ(one.layers.size(), many.layers.size());
  for (size_t i = 0; i < one.layers.size(); ++i) {
    EXPECT_EQ(one.layers[i].layer.node, many.layers[i].layer.node);
    EXPECT_EQ(one.layers[i].only.samples, 7);
    EXPECT_DOUBLE_EQ(one.layers[i].only.noise, many.layers[i].only.noise);
  }
}

// A layer that does not reach the scored output costs nothing there; the
// other output can be scored instead.
TEST(Sensitivity, LayerOffTheScoredOutput) {
  Model fp32 = network();
  std::mt19937 rng(9);
  fp32.graph.initializers["WA"] = uniform({2, 4, 1, 1}, rng, -0.5f, 0.5f);
  fp32.graph.initializers["BA"] = uniform({2}, rng, -0.1f, 0.1f);
  // aux reads a value of its own (a quantized input is read quantized by all its readers).
  fp32.graph.nodes.push_back(make_node("sig", "Sigmoid", {"x"}, {"xs"}));
  fp32.graph.nodes.push_back(conv("aux", "xs", "WA", "BA", "z", 1));
  fp32.graph.outputs.push_back({"z", {DType::kFloat32, true, {{1, ""}, {2, ""}, {8, ""}, {8, ""}}}});
  VectorSource calib = samples(8, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
  const auto layers = quantized_layers(fp32, q);
  ASSERT_EQ(layers.size(), 6u);
  SensitivityOptions options;
  options.metric = TaskMetric::kSqnr;
  options.reference = true;
  VectorSource eval = samples(5, 2);
  const SensitivityResult on_y = analyze_sensitivity(fp32, q, layers, eval, {}, options);
  options.output = "z";
  const SensitivityResult on_z = analyze_sensitivity(fp32, q, layers, eval, {}, options);
  for (const LayerSensitivity& ls : on_y.layers) {
    SCOPED_TRACE(ls.layer.node);
    ASSERT_TRUE(ls.measured);
    if (ls.layer.node == "aux") {
      EXPECT_EQ(ls.only.noise, 0);  // the output y is FP32's
    } else {
      EXPECT_GT(ls.only.noise, 0);
    }
  }
  for (const LayerSensitivity& ls : on_z.layers) {
    SCOPED_TRACE(ls.layer.node);
    // c1 and side quantize the graph input x, and the QDQ model re-points
    // every reader of x to its Q/DQ (qdq.h), the Sigmoid before aux too.
    const bool reaches = ls.layer.node == "aux" || ls.layer.node == "c1" || ls.layer.node == "side";
    EXPECT_EQ(ls.only.noise > 0, reaches);
  }
  options.output = "nope";
  EXPECT_THROW(analyze_sensitivity(fp32, q, layers, eval, {}, options), Error);
}

// Weight-only INT4 (kvant sensitivity --bits 4): the layer is its weight's
// DequantizeLinear and the op; the same equality with a separate quantization.
TEST(Sensitivity, WeightOnlyInt4EqualsBruteForce) {
  const Model fp32 = network();
  QuantizeOptions options;
  options.mode = QuantMode::kWeightOnly;
  options.group_size = 32;
  QuantizeSummary summary;
  const Model q = quantize_weight_only(fp32, 4, options, &summary);
  const std::vector<QuantizedLayer> layers = quantized_layers(fp32, q);
  ASSERT_EQ(layers.size(), 5u);
  EXPECT_EQ(layers[0].tensor, "h1");  // no output Q/DQ: the op's own output
  VectorSource eval = samples(12, 2);
  SensitivityOptions so;
  so.metric = TaskMetric::kSqnr;
  so.reference = true;
  const SensitivityResult r = analyze_sensitivity(fp32, q, layers, eval, {}, so);
  ASSERT_EQ(r.layers.size(), 5u);
  for (const LayerSensitivity& ls : r.layers) {
    SCOPED_TRACE(ls.layer.node);
    ASSERT_TRUE(ls.measured) << ls.note;
    QuantizeOptions only = options;
    for (const char* other : {"c1", "c2", "side", "c3", "g"}) {
      if (ls.layer.node != other) only.exclude.push_back(other);
    }
    const Model qi = quantize_weight_only(fp32, 4, only, &summary);
    OutputScores expected;
    eval.reset();
    while (auto feed = eval.next()) {
      const std::vector<float> x = run(fp32, *feed, true), y = run(qi, *feed, true);
      expected.add(x.data(), y.data(), static_cast<int64_t>(x.size()), true, -1);
    }
    EXPECT_TRUE(std::isfinite(expected.sqnr_db()));
    EXPECT_NEAR(ls.only.sqnr_db(), expected.sqnr_db(), 1e-4);
  }
}

TEST(Sensitivity, BadInputIsRefusedBeforeWork) {
  const Model fp32 = network();
  VectorSource calib = samples(4, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
  const auto layers = quantized_layers(fp32, q);
  SensitivityOptions options;
  options.metric = TaskMetric::kTop1;
  VectorSource eval = samples(6, 2);
  int progress_calls = 0;
  options.progress = [&](const SensitivityProgress&) { ++progress_calls; };
  // Labels of another length.
  EXPECT_THROW(analyze_sensitivity(fp32, q, layers, eval, some_labels(5), options), Error);
  // top1 without labels.
  EXPECT_THROW(analyze_sensitivity(fp32, q, layers, eval, {}, options), Error);
  // A sample the model does not take.
  std::mt19937 rng(1);
  VectorSource wrong({{{"x", uniform({1, 3, 8, 8}, rng, -1, 1)}}});
  options.metric = TaskMetric::kSqnr;
  EXPECT_THROW(analyze_sensitivity(fp32, q, layers, wrong, {}, options), Error);
  EXPECT_EQ(progress_calls, 0);
}

}  // namespace
}  // namespace kvant
