// ProgressCallback (kvant.h): calibration, sensitivity and accuracy-target
// progress from quantize_static / sensitivity on the bundled CNN. Each
// stage's `done` never goes down and ends at its `total` when the reader
// says its size; a callback that returns false or throws ends the call with
// kCancelled / kInternal and no model.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "api_test_util.h"
#include "kvant/kvant.h"

namespace kvant {
namespace {

using namespace api_test;  // NOLINT: kCnn, contains, Samples

// The bundled samples, saying how many there are.
class SizedSamples : public Samples {
 public:
  int64_t size() override { return 3; }
};

OnnxModel cnn() {
  auto model = OnnxModel::load(kCnn);
  EXPECT_TRUE(model.ok()) << model.status().message();
  return *model;
}

// Every report, by stage.
struct Recorder {
  std::map<ProgressStage, std::vector<Progress>> seen;
  ProgressCallback callback() {
    return [this](const Progress& p) {
      seen[p.stage].push_back(p);
      return true;
    };
  }
};

// done never decreases; the total stays the same; the last call is done == total.
void expect_counts(const std::vector<Progress>& calls, int64_t total, const char* stage) {
  SCOPED_TRACE(stage);
  ASSERT_FALSE(calls.empty());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].total, total) << "call " << i;
    EXPECT_GE(calls[i].done, i == 0 ? 1 : calls[i - 1].done) << "call " << i;
    EXPECT_LE(calls[i].done, total) << "call " << i;
  }
  EXPECT_EQ(calls.back().done, total);
}

TEST(ApiProgress, CalibrationCountsSamples) {
  Recorder r;
  QuantizationOptions o;
  o.progress = r.callback();
  SizedSamples sized;
  auto q = quantize_static(cnn(), sized, o);
  ASSERT_TRUE(q.ok()) << q.status().message();
  ASSERT_EQ(r.seen.size(), 1u);
  expect_counts(r.seen[ProgressStage::kCalibration], 3, "calibration");
  EXPECT_EQ(r.seen[ProgressStage::kCalibration].size(), 3u);  // one call per sample

  // max_samples caps the total.
  Recorder capped;
  o.progress = capped.callback();
  o.max_samples = 2;
  SizedSamples two;
  ASSERT_TRUE(quantize_static(cnn(), two, o).ok());
  expect_counts(capped.seen[ProgressStage::kCalibration], 2, "max_samples 2");

  // A reader that does not say its size: the total is unknown (-1), the
  // counts still go 1, 2, 3.
  Recorder unsized;
  QuantizationOptions u;
  u.progress = unsized.callback();
  Samples plain;
  ASSERT_TRUE(quantize_static(cnn(), plain, u).ok());
  const auto& calls = unsized.seen[ProgressStage::kCalibration];
  ASSERT_EQ(calls.size(), 3u);
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_EQ(calls[i].done, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(calls[i].total, -1);
  }
}

TEST(ApiProgress, StatisticsPassesCountSamples) {
  // AWQ then GPTQ (weight-only), SmoothQuant (dynamic): each pass over the
  // calibration data is its own stage.
  Recorder r;
  QuantizationOptions o;
  o.progress = r.callback();
  o.group_size = 32;  // the CNN's Gemm has K = 1568
  o.awq = true;
  o.rounding = RoundingMethod::kGptq;
  SizedSamples calib;
  auto w = quantize_weight_only(cnn(), calib, o);
  ASSERT_TRUE(w.ok()) << w.status().message();
  expect_counts(r.seen[ProgressStage::kAwq], 3, "awq");
  expect_counts(r.seen[ProgressStage::kGptq], 3, "gptq");
  EXPECT_EQ(r.seen.count(ProgressStage::kCalibration), 0u);

  Recorder d;
  QuantizationOptions so;
  so.progress = d.callback();
  so.smooth_quant = true;
  SizedSamples calib2;
  auto q = quantize_dynamic(cnn(), calib2, so);
  ASSERT_TRUE(q.ok()) << q.status().message();
  ASSERT_EQ(d.seen.size(), 1u);
  expect_counts(d.seen[ProgressStage::kSmoothQuant], 3, "smooth_quant");
}

TEST(ApiProgress, ReportsDoNotChangeTheModel) {
  Samples a, b;
  auto plain = quantize_static(cnn(), a);
  QuantizationOptions o;
  o.progress = [](const Progress&) { return true; };
  auto watched = quantize_static(cnn(), b, o);
  ASSERT_TRUE(plain.ok() && watched.ok());
  EXPECT_TRUE(*plain->to_bytes() == *watched->to_bytes());
}

TEST(ApiProgress, SensitivityCountsItsWork) {
  Recorder r;
  SensitivityAnalysisOptions o;
  o.metric = Metric::kSqnr;
  o.progress = r.callback();
  SizedSamples calib, eval;
  auto s = sensitivity(cnn(), &calib, eval, o);
  ASSERT_TRUE(s.ok()) << s.status().message();
  expect_counts(r.seen[ProgressStage::kCalibration], 3, "calibration");
  const auto& calls = r.seen[ProgressStage::kSensitivity];
  ASSERT_FALSE(calls.empty());
  expect_counts(calls, calls.back().total, "sensitivity");
  EXPECT_GT(calls.back().total, 0);
  // Every measured layer is named, each on one partial run per sample.
  std::map<std::string, int> per_layer;
  for (const Progress& p : calls) ++per_layer[p.layer];
  for (const LayerScore& layer : s->layers) {
    if (layer.measured) {
      EXPECT_EQ(per_layer[layer.node], 3) << layer.node;
    }
  }
}

TEST(ApiProgress, AccuracyTargetReportsEachStep) {
  // A target step 0 misses (SQNR 1 dB above the fully quantized model's):
  // a ranking, then steps with more layers kept FP32.
  Samples probe;
  AccuracyTarget loose;
  loose.metric = Metric::kSqnr;
  AccuracyTargetReport first;
  ASSERT_TRUE(quantize_static(cnn(), probe, probe, loose, {}, nullptr, &first).ok());
  AccuracyTarget target = loose;
  target.drop = first.value + 1.0;

  Recorder r;
  QuantizationOptions o;
  o.progress = r.callback();
  SizedSamples calib, eval;
  AccuracyTargetReport report;
  auto q = quantize_static(cnn(), calib, eval, target, o, nullptr, &report);
  ASSERT_TRUE(q.ok()) << q.status().message();
  ASSERT_GE(report.steps, 2);
  expect_counts(r.seen[ProgressStage::kCalibration], 3, "calibration");
  ASSERT_FALSE(r.seen[ProgressStage::kSensitivity].empty());
  const auto& steps = r.seen[ProgressStage::kAccuracyTarget];
  ASSERT_EQ(static_cast<int64_t>(steps.size()), report.steps);
  for (size_t i = 0; i < steps.size(); ++i) {
    EXPECT_EQ(steps[i].done, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(steps[i].total, -1);
    EXPECT_EQ(steps[i].kept_fp32, static_cast<int64_t>(i));  // one more layer FP32 per step
    EXPECT_EQ(steps[i].layer.empty(), i == 0);
    EXPECT_EQ(steps[i].meets, i + 1 == steps.size());
  }
  EXPECT_DOUBLE_EQ(steps.back().value, report.value);
  EXPECT_LT(steps.front().value, target.drop);
}

TEST(ApiProgress, FalseCancels) {
  int calls = 0;
  QuantizationOptions o;
  o.progress = [&calls](const Progress&) { return ++calls < 2; };
  SizedSamples sized;
  auto q = quantize_static(cnn(), sized, o);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), ErrorCode::kCancelled);
  EXPECT_EQ(q.status().message(), "cancelled by the progress callback (calibration 2/3)");
  EXPECT_EQ(calls, 2);  // nothing ran after the cancel

  // Sensitivity, cancelled in the partial runs.
  SensitivityAnalysisOptions so;
  so.progress = [](const Progress& p) { return p.stage != ProgressStage::kSensitivity; };
  SizedSamples calib, eval;
  auto s = sensitivity(cnn(), &calib, eval, so);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), ErrorCode::kCancelled);
  EXPECT_TRUE(contains(s.status().message(), "(sensitivity ")) << s.status().message();

  // The accuracy target, cancelled at its first step.
  AccuracyTarget target;
  target.metric = Metric::kSqnr;
  target.drop = 1000;
  QuantizationOptions to;
  to.progress = [](const Progress& p) { return p.stage != ProgressStage::kAccuracyTarget; };
  SizedSamples c2, e2;
  auto t = quantize_static(cnn(), c2, e2, target, to);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), ErrorCode::kCancelled);
  EXPECT_TRUE(contains(t.status().message(), "(accuracy_target 1)")) << t.status().message();
}

TEST(ApiProgress, AThrowIsTheStatus) {
  QuantizationOptions o;
  o.progress = [](const Progress&) -> bool { throw std::runtime_error("progress bar gone"); };
  SizedSamples sized;
  auto q = quantize_static(cnn(), sized, o);
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.status().code(), ErrorCode::kInternal);
  EXPECT_EQ(q.status().message(), "progress bar gone");
}

TEST(ApiProgress, StageNames) {
  EXPECT_STREQ(progress_stage_name(ProgressStage::kCalibration), "calibration");
  EXPECT_STREQ(progress_stage_name(ProgressStage::kAwq), "awq");
  EXPECT_STREQ(progress_stage_name(ProgressStage::kSmoothQuant), "smooth_quant");
  EXPECT_STREQ(progress_stage_name(ProgressStage::kGptq), "gptq");
  EXPECT_STREQ(progress_stage_name(ProgressStage::kSensitivity), "sensitivity");
  EXPECT_STREQ(progress_stage_name(ProgressStage::kAccuracyTarget), "accuracy_target");
}

}  // namespace
}  // namespace kvant
