// Task metrics (quant/task_metric.h): the segmentation mean IoU on maps worked
// out by hand, and sensitivity scored by it.
#include "quant/task_metric.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "io/sample_source.h"
#include "kvant/status.h"
#include "quant/quantize.h"
#include "quant/sensitivity.h"
#include "test_graphs.h"

namespace kvant {
namespace {

// Scores [1, 3, 1, 4] whose per-pixel argmax is `classes` (4 pixels).
std::vector<float> scores_for(const std::vector<int>& classes) {
  std::vector<float> v(12, 0.0f);
  for (size_t p = 0; p < classes.size(); ++p) v[static_cast<size_t>(classes[p]) * 4 + p] = 1.0f;
  return v;
}

TEST(TaskMetric, MeanIouOfClassMapsByHand) {
  const ClassMap map = class_map_of(Tensor(DType::kFloat32, {1, 3, 1, 4}));
  EXPECT_EQ(map.classes, 3);
  EXPECT_EQ(map.inner, 4);
  OutputScores s;
  // Reference map 0 0 1 1, this model's 0 1 1 1: class 0 I=1 U=2, class 1 I=2
  // U=3, class 2 occurs in neither map (left out).
  const auto ref = scores_for({0, 0, 1, 1}), y = scores_for({0, 1, 1, 1});
  s.add(ref.data(), y.data(), 12, false, -1, map);
  EXPECT_EQ(s.map_samples, 1);
  EXPECT_DOUBLE_EQ(s.miou(), (1.0 / 2 + 2.0 / 3) / 2);
  // A second sample: sums over the set, not a mean of per-sample values.
  // Reference 2 2 2 2, this 2 2 2 0: class 2 I=3 U=4, class 0 U grows by 1.
  const auto ref2 = scores_for({2, 2, 2, 2}), y2 = scores_for({2, 2, 2, 0});
  s.add(ref2.data(), y2.data(), 12, false, -1, map);
  EXPECT_DOUBLE_EQ(s.miou(), (1.0 / 3 + 2.0 / 3 + 3.0 / 4) / 3);
  EXPECT_DOUBLE_EQ(s.value(TaskMetric::kMiou), s.miou());
  // Against itself: 1.
  OutputScores same;
  same.add(ref.data(), ref.data(), 12, false, -1, map);
  EXPECT_DOUBLE_EQ(same.miou(), 1.0);
}

TEST(TaskMetric, ClassMapsNeedRankFourAndClasses) {
  EXPECT_EQ(class_map_of(Tensor(DType::kFloat32, {1, 10})).classes, 0);       // a classifier
  EXPECT_EQ(class_map_of(Tensor(DType::kFloat32, {1, 1, 8, 8})).classes, 0);  // one channel
  EXPECT_EQ(class_map_of(Tensor(DType::kFloat32, {1, 16, 512})).classes, 0);  // a language model's logits
  const ClassMap batch = class_map_of(Tensor(DType::kFloat32, {2, 5, 3, 3}));
  EXPECT_EQ(batch.classes, 5);
  EXPECT_EQ(batch.inner, 9);
  EXPECT_EQ(parse_task_metric("miou"), TaskMetric::kMiou);
  EXPECT_TRUE(higher_is_better(TaskMetric::kMiou));
  EXPECT_TRUE(needs_class_map(TaskMetric::kMiou));
  EXPECT_FALSE(needs_labels(TaskMetric::kMiou));
  try {
    parse_task_metric("iou");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("miou"), std::string::npos) << e.what();
  }
}

// Perplexity from logits [1, T, V] and the ids themselves, worked out by
// hand: row t predicts id t + 1; rows restart with each sequence of a batch.
TEST(TaskMetric, PerplexityOfTheNextTokensByHand) {
  // V = 2, T = 3, ids 0 1 1: row 0 predicts 1, row 1 predicts 1.
  const std::vector<float> logits = {0.0f, 0.0f, 2.0f, 0.0f, 5.0f, 5.0f};
  std::map<std::string, Tensor> feed;
  Tensor ids(DType::kInt64, {1, 3});
  ids.data<int64_t>()[0] = 0;
  ids.data<int64_t>()[1] = 1;
  ids.data<int64_t>()[2] = 1;
  feed["input_ids"] = ids;
  feed["attention_mask"] = Tensor(DType::kInt64, {1, 3});  // a second int64 input: input_ids is the one meant
  const TokenIds tokens = token_ids_of(feed);
  ASSERT_EQ(tokens.ids.size(), 3u);
  EXPECT_EQ(tokens.seq, 3);
  OutputScores s;
  s.add(logits.data(), logits.data(), 6, false, -1, {}, &tokens);
  EXPECT_EQ(s.scored_tokens, 2);
  const double nll0 = std::log(2.0);                  // p(1) = 1/2
  const double nll1 = std::log(1.0 + std::exp(2.0));  // p(1) = 1 / (1 + e^2)
  EXPECT_NEAR(s.perplexity(), std::exp((nll0 + nll1) / 2), 1e-9);
  EXPECT_DOUBLE_EQ(s.value(TaskMetric::kPerplexity), s.perplexity());
  EXPECT_FALSE(higher_is_better(TaskMetric::kPerplexity));
  EXPECT_EQ(parse_task_metric("perplexity"), TaskMetric::kPerplexity);
  // A batch of two sequences of 2: the last row of the first does not
  // predict the first id of the second.
  Tensor two(DType::kInt64, {2, 2});
  for (int i = 0; i < 4; ++i) two.data<int64_t>()[i] = 1;
  const TokenIds batch = token_ids_of({{"ids", two}});
  EXPECT_EQ(batch.seq, 2);
  const std::vector<float> rows = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  OutputScores b;
  b.add(rows.data(), rows.data(), 8, false, -1, {}, &batch);
  EXPECT_EQ(b.scored_tokens, 2);
  EXPECT_NEAR(b.perplexity(), 2.0, 1e-12);  // uniform over V = 2
  // Two int64 inputs, neither named input_ids: no ids.
  EXPECT_TRUE(token_ids_of({{"a", two}, {"b", two}}).ids.empty());
}

// x[1,4,8,8] -> Conv 3x3 -> Relu -> Conv 1x1 -> y[1,5,8,8] class scores.
Model segmenter() {
  std::mt19937 rng(3);
  Model m;
  m.ir_version = 8;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {4, ""}, {8, ""}, {8, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {5, ""}, {8, ""}, {8, ""}}}});
  g.initializers["W1"] = uniform({8, 4, 3, 3}, rng, -0.4f, 0.4f);
  g.initializers["B1"] = uniform({8}, rng, -0.1f, 0.1f);
  g.initializers["W2"] = uniform({5, 8, 1, 1}, rng, -0.5f, 0.5f);
  g.initializers["B2"] = uniform({5}, rng, -0.1f, 0.1f);
  Node c1 = make_node("c1", "Conv", {"x", "W1", "B1"}, {"h"});
  set_attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  g.nodes = {c1, make_node("r1", "Relu", {"h"}, {"a"}), make_node("c2", "Conv", {"a", "W2", "B2"}, {"y"})};
  return m;
}

VectorSource images(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < n; ++i) v.push_back({{"x", uniform({1, 4, 8, 8}, rng, -1.0f, 1.0f)}});
  return VectorSource(v);
}

TEST(TaskMetric, SensitivityRanksBySegmentationMeanIou) {
  const Model fp32 = segmenter();
  VectorSource calib = images(8, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, &summary);
  const auto layers = quantized_layers(fp32, q);
  ASSERT_EQ(layers.size(), 2u);
  SensitivityOptions options;
  options.metric = TaskMetric::kMiou;
  options.reference = true;
  VectorSource eval = images(6, 2);
  const SensitivityResult r = analyze_sensitivity(fp32, q, layers, eval, {}, options);
  EXPECT_EQ(r.quantized.map_samples, 6);
  EXPECT_DOUBLE_EQ(r.fp32.miou(), 1.0);
  EXPECT_GT(r.quantized.miou(), 0.5);  // 8-bit keeps most pixels' classes
  EXPECT_LE(r.quantized.miou(), 1.0);
  for (const auto& ls : r.layers) {
    ASSERT_TRUE(ls.measured) << ls.note;
    EXPECT_GE(ls.only.miou(), r.quantized.miou() - 0.1) << ls.layer.node;
  }
  // A classifier's output has no class map: refused before any work.
  Model classifier = fp32;
  classifier.graph.nodes.push_back(make_node("gap", "GlobalAveragePool", {"y"}, {"p"}));
  classifier.graph.nodes.push_back(make_node("flat", "Flatten", {"p"}, {"f"}));
  classifier.graph.outputs[0] = {"f", {DType::kFloat32, true, {{1, ""}, {5, ""}}}};
  VectorSource calib2 = images(4, 1);
  const Model qc = quantize_static(classifier, calib2, QuantizeOptions{}, &summary);
  VectorSource eval2 = images(2, 2);
  try {
    analyze_sensitivity(classifier, qc, quantized_layers(classifier, qc), eval2, {}, options);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("class score map"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvant
