// Task metrics (quant/task_metric.h): the segmentation mean IoU on maps worked
// out by hand, and sensitivity scored by it.
#include "quant/task_metric.h"

#include <gtest/gtest.h>

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

TEST(TaskMetric, ClassMapsNeedRankThreeAndClasses) {
  EXPECT_EQ(class_map_of(Tensor(DType::kFloat32, {1, 10})).classes, 0);       // a classifier
  EXPECT_EQ(class_map_of(Tensor(DType::kFloat32, {1, 1, 8, 8})).classes, 0);  // one channel
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
