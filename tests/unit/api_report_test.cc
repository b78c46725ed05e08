// What the API reports beside the model (kvant.h: QuantizationReport's
// per-layer comparison and FP32 model, AccuracyTargetReport's frontier and
// AccuracyTarget::log) — what `kvant quantize` prints and writes with
// --report, now that the command is a layer over the API.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "kvant/kvant.h"

namespace kvant {
namespace {

using namespace api_test;  // NOLINT: kRoot, kCnn, contains, Samples

OnnxModel cnn() {
  auto model = OnnxModel::load(kCnn);
  EXPECT_TRUE(model.ok()) << model.status().message();
  return *model;
}

TEST(ApiReport, LayersAreComparedOnTheCalibrationSamplesWorstFirst) {
  Samples reader;
  QuantizationOptions o;
  o.report_samples = 2;
  QuantizationReport report;
  auto q = quantize_static(cnn(), reader, o, &report);
  ASSERT_TRUE(q.ok()) << q.status().message();
  ASSERT_FALSE(report.layer_outputs.empty());
  EXPECT_EQ(report.layer_samples, 2);
  ASSERT_EQ(report.layers.size(), report.layer_outputs.size());
  // The names are the FP32 model's (not the short ones the returned model's
  // new values get), every layer of layer_outputs once.
  auto bytes = report.fp32.to_bytes();
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  std::set<int64_t> orders;
  for (size_t i = 0; i < report.layers.size(); ++i) {
    const LayerComparison& c = report.layers[i];
    EXPECT_FALSE(c.node.empty());
    EXPECT_TRUE(contains(*bytes, c.node)) << c.node << " is not a node of the FP32 model";
    ASSERT_GE(c.order, 0);
    ASSERT_LT(c.order, static_cast<int64_t>(report.layer_outputs.size()));
    EXPECT_EQ(report.layer_outputs[static_cast<size_t>(c.order)].first, c.node);
    EXPECT_EQ(report.layer_outputs[static_cast<size_t>(c.order)].second, c.tensor);
    orders.insert(c.order);
    // INT8 on this CNN: measured, and well above noise.
    EXPECT_GT(c.sqnr_db, 20) << c.node;
    EXPECT_GT(c.cosine, 0.99) << c.node;
    EXPECT_FALSE(std::isnan(c.own_sqnr_db)) << c.node;
    EXPECT_LE(c.cosine, 1.0 + 1e-9);
    if (i > 0 && !c.near_constant) {  // worst own SQNR first, near-constant outputs last
      EXPECT_FALSE(report.layers[i - 1].near_constant);
      EXPECT_LE(report.layers[i - 1].own_sqnr_db, c.own_sqnr_db) << "not worst first at " << i;
    }
  }
  EXPECT_EQ(orders.size(), report.layers.size());
  // The FP32 model compared against: prepared, not quantized, and it runs.
  EXPECT_FALSE(report.fp32.is_quantized());
  EXPECT_TRUE(Session::create(report.fp32).ok());

  // Not asked: not compared (the default), and the model is the same bytes.
  Samples again;
  QuantizationReport plain;
  auto q2 = quantize_static(cnn(), again, {}, &plain);
  ASSERT_TRUE(q2.ok());
  EXPECT_TRUE(plain.layers.empty());
  EXPECT_EQ(plain.layer_samples, 0);
  EXPECT_EQ(plain.layer_outputs, report.layer_outputs);
  EXPECT_TRUE(*q->to_bytes() == *q2->to_bytes()) << "comparing the layers changed the model";
}

TEST(ApiReport, ReportSamplesNeedsDataAndIsNotNegative) {
  QuantizationOptions o;
  o.report_samples = 4;
  auto dynamic = quantize_dynamic(cnn(), o);
  ASSERT_FALSE(dynamic.ok());
  EXPECT_TRUE(contains(dynamic.status().message(), "report_samples needs calibration data"))
      << dynamic.status().message();
  o.report_samples = -1;
  Samples reader;
  auto negative = quantize_static(cnn(), reader, o);
  ASSERT_FALSE(negative.ok());
  EXPECT_TRUE(contains(negative.status().message(), "report_samples must be at least 0"))
      << negative.status().message();
  // With a reader, dynamic mode compares too.
  o.report_samples = 3;
  Samples calib;
  QuantizationReport report;
  auto q = quantize_dynamic(cnn(), calib, o, &report);
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_EQ(report.layer_samples, 3);
  EXPECT_EQ(report.layers.size(), report.layer_outputs.size());
}

TEST(ApiReport, FrontierHoldsEveryStepAndTheLogHasALinePerStep) {
  AccuracyTarget target;
  target.metric = Metric::kSqnr;
  target.drop = 200;  // never met: every step walked
  std::vector<std::string> lines;
  target.log = [&lines](const std::string& line) { lines.push_back(line); };
  Samples calib;
  AccuracyTargetReport r;
  QuantizationReport report;
  auto q = quantize_static(cnn(), calib, calib, target, {}, &report, &r);
  ASSERT_TRUE(q.ok()) << q.status().message();
  EXPECT_FALSE(r.met);
  ASSERT_EQ(static_cast<int64_t>(r.frontier.size()), r.steps);
  ASSERT_GE(r.frontier.size(), 2u);
  const AccuracyTargetStep& chosen = r.frontier.at(static_cast<size_t>(r.chosen_step));
  EXPECT_EQ(chosen.value, r.value);
  EXPECT_EQ(chosen.kept_fp32, r.kept_fp32);
  EXPECT_TRUE(r.frontier[0].kept_fp32.empty());
  EXPECT_TRUE(r.frontier[0].moved.empty());
  for (size_t i = 0; i < r.frontier.size(); ++i) {
    const AccuracyTargetStep& st = r.frontier[i];
    EXPECT_GT(st.bytes, 0);
    EXPECT_FALSE(st.meets);
    EXPECT_EQ(st.value, st.scores.value) << "step " << i;  // sqnr steers: the value is its score
    EXPECT_EQ(st.scores.output_sqnr_db, st.value) << "step " << i;
    EXPECT_TRUE(st.scores.agreement.has_value());  // a classifier's output
    EXPECT_FALSE(st.scores.top1.has_value());      // no labels
    if (i > 0) {
      EXPECT_FALSE(st.moved.empty());
      EXPECT_EQ(st.kept_fp32.size(), i) << "one more layer kept FP32 per step";
    }
  }
  EXPECT_TRUE(std::isinf(r.fp32_scores.output_sqnr_db));
  // The search's log: no newlines inside, at least a line per step.
  EXPECT_GE(lines.size(), r.frontier.size());
  for (const std::string& line : lines) EXPECT_EQ(line.find('\n'), std::string::npos);

  // A log callback that throws ends the call with its message.
  target.log = [](const std::string&) { throw std::runtime_error("log sink full"); };
  Samples again;
  auto thrown = quantize_static(cnn(), again, again, target);
  ASSERT_FALSE(thrown.ok());
  EXPECT_TRUE(contains(thrown.status().message(), "log sink full")) << thrown.status().message();
}

TEST(ApiReport, SensitivityCarriesEveryScoreTheCommandWrites) {
  Samples calib, eval;
  SensitivityAnalysisOptions o;
  o.metric = Metric::kSqnr;
  o.leave_one_out = true;
  auto r = sensitivity(cnn(), &calib, eval, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_GE(r->chunks, 1);
  EXPECT_EQ(r->fp32_scores.value, r->fp32);
  EXPECT_EQ(r->quantized_scores.value, r->quantized);
  EXPECT_EQ(r->quantized_scores.output_sqnr_db, r->quantized_sqnr_db);
  EXPECT_TRUE(r->quantized_scores.agreement.has_value());  // a classifier's output
  EXPECT_FALSE(r->quantized_scores.top1.has_value());      // no labels
  ASSERT_FALSE(r->layers.empty());
  for (const LayerScore& l : r->layers) {
    ASSERT_TRUE(l.measured) << l.node << ": " << l.note;
    EXPECT_EQ(l.scores.value, l.value) << l.node;
    EXPECT_EQ(l.scores.output_sqnr_db, l.output_sqnr_db) << l.node;
    EXPECT_GT(l.partial_nodes, 0) << l.node;
    ASSERT_TRUE(l.all_but_scores.has_value()) << l.node;
    EXPECT_EQ(l.all_but_scores->value, l.all_but) << l.node;
  }
  o.leave_one_out = false;
  Samples calib2, eval2;
  auto plain = sensitivity(cnn(), &calib2, eval2, o);
  ASSERT_TRUE(plain.ok());
  for (const LayerScore& l : plain->layers) EXPECT_FALSE(l.all_but_scores.has_value()) << l.node;
}

}  // namespace
}  // namespace kvant
