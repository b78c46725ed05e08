// kvant::sensitivity (kvant.h): the ranking `kvant sensitivity --json`
// writes for the same data, a metric callback that ranks the layers and
// sees each variant's outputs and labels, and a callback's exception as the
// call's Status.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "api_test_util.h"
#include "kvant/kvant.h"

namespace kvant {
namespace {

using namespace api_test;  // NOLINT: kRoot, kCnn, contains, Samples, fs

OnnxModel cnn() {
  auto model = OnnxModel::load(kCnn);
  EXPECT_TRUE(model.ok()) << model.status().message();
  return *model;
}

TEST(ApiSensitivity, RankingIsTheCommands) {
  Samples calib, eval;
  SensitivityAnalysisOptions o;
  o.metric = Metric::kSqnr;
  auto r = sensitivity(cnn(), &calib, eval, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->metric, Metric::kSqnr);
  EXPECT_EQ(r->samples, 3);
  ASSERT_EQ(r->layers.size(), 5u);
  for (size_t i = 1; i < r->layers.size(); ++i) {
    EXPECT_TRUE(r->layers[i].measured);
    EXPECT_LE(r->layers[i - 1].value, r->layers[i].value);  // lowest SQNR (most sensitive) first
    EXPECT_TRUE(std::isnan(r->layers[i].all_but));
  }
  EXPECT_LT(r->quantized, r->layers[0].value);  // every layer quantized costs more than one

  // The same reader for calibration and evaluation: read once, the same ranking.
  Samples both;
  auto same = sensitivity(cnn(), &both, both, o);
  ASSERT_TRUE(same.ok()) << same.status().message();
  ASSERT_EQ(same->layers.size(), r->layers.size());
  for (size_t i = 0; i < r->layers.size(); ++i) {
    EXPECT_EQ(same->layers[i].node, r->layers[i].node);
    EXPECT_EQ(same->layers[i].value, r->layers[i].value);
  }

#ifdef KVANT_CLI_PATH
  // The command's JSON lists the layers in the same order.
  const fs::path json = fs::temp_directory_path() / ("kvant_api_sens_" + std::to_string(::getpid()) + ".json");
  const std::string cmd = std::string(KVANT_CLI_PATH) + " sensitivity " + kCnn + " --calib " + kRoot +
                          "/models/samples --metric sqnr -f --json " + json.string() + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream file(json);
  std::stringstream text;
  text << file.rdbuf();
  fs::remove(json);
  size_t at = 0;
  for (const LayerScore& layer : r->layers) {
    const size_t found = text.str().find("\"" + layer.node + "\"", at);
    ASSERT_NE(found, std::string::npos) << layer.node << " not in the command's order:\n" << text.str();
    at = found;
  }
#endif
}

TEST(ApiSensitivity, MetricCallbackRanksTheLayers) {
  Samples reader;
  SensitivityAnalysisOptions o;
  o.labels = {9, 2, 1};
  std::vector<std::string> variants;
  // The mean of the first logit: a number that differs per variant.
  o.custom_metric = [&](const std::vector<TensorView>& outputs, const std::vector<int64_t>& labels,
                        const std::string& variant) {
    variants.push_back(variant);
    EXPECT_EQ(outputs.size(), 3u);
    EXPECT_EQ(labels, (std::vector<int64_t>{9, 2, 1}));
    double sum = 0;
    for (const TensorView& y : outputs) {
      EXPECT_EQ(y.dtype, DataType::kFloat32);
      sum += static_cast<const float*>(y.data)[0];
    }
    return sum / 3;
  };
  o.higher_is_better = false;
  auto r = sensitivity(cnn(), &reader, reader, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->metric, Metric::kTop1);  // labels given: the built-in metric is still measured
  ASSERT_EQ(variants.size(), 2u + r->layers.size());
  EXPECT_EQ(variants[0], "fp32");
  EXPECT_EQ(variants[1], "quantized");
  for (size_t i = 1; i < r->layers.size(); ++i) EXPECT_GE(r->layers[i - 1].custom, r->layers[i].custom);
  EXPECT_FALSE(std::isnan(r->custom_quantized));
}

TEST(ApiSensitivity, ErrorsAreStatuses) {
  const OnnxModel model = cnn();
  Samples a, b, c, d;
  SensitivityAnalysisOptions o;
  o.custom_metric = [](const std::vector<TensorView>&, const std::vector<int64_t>&, const std::string&) -> double {
    throw std::runtime_error("metric server unreachable");
  };
  auto thrown = sensitivity(model, &a, a, o);
  ASSERT_FALSE(thrown.ok());
  EXPECT_TRUE(contains(thrown.status().message(), "metric server unreachable")) << thrown.status().message();

  SensitivityAnalysisOptions top1;
  top1.metric = Metric::kTop1;
  auto no_labels = sensitivity(model, &b, b, top1);
  ASSERT_FALSE(no_labels.ok());
  EXPECT_TRUE(contains(no_labels.status().message(), "needs labels")) << no_labels.status().message();

  auto no_calibration = sensitivity(model, nullptr, c);
  ASSERT_FALSE(no_calibration.ok());
  EXPECT_TRUE(contains(no_calibration.status().message(), "calibration reader"));

  SensitivityAnalysisOptions int4;
  int4.bits = 4;
  int4.metric = Metric::kMse;
  auto weight_only = sensitivity(model, nullptr, d, int4);
  ASSERT_TRUE(weight_only.ok()) << weight_only.status().message();
  EXPECT_FALSE(weight_only->layers.empty());
  EXPECT_STREQ(metric_name(Metric::kAgreement), "agreement");
}

// `kvant quantize --accuracy-target`: a target plain INT8 misses by 1 dB of
// output SQNR is met by keeping the ranking's first layers FP32, and the
// model is the command's bytes.
TEST(ApiSensitivity, AccuracyTargetIsTheCommands) {
  const OnnxModel model = cnn();
  AccuracyTarget loose;
  loose.metric = Metric::kSqnr;
  loose.drop = 10;
  Samples r1;
  AccuracyTargetReport plain;
  auto q0 = quantize_static(model, r1, r1, loose, {}, nullptr, &plain);
  ASSERT_TRUE(q0.ok()) << q0.status().message();
  EXPECT_TRUE(plain.met);
  EXPECT_EQ(plain.chosen_step, 0);
  EXPECT_TRUE(plain.kept_fp32.empty());

  char text[32];
  std::snprintf(text, sizeof text, "%.3f", plain.value + 1.0);
  AccuracyTarget tight = loose;
  tight.drop = std::strtod(text, nullptr);
  Samples calib, eval;
  AccuracyTargetReport met;
  QuantizationReport report;
  auto q1 = quantize_static(model, calib, eval, tight, {}, &report, &met);
  ASSERT_TRUE(q1.ok()) << q1.status().message();
  EXPECT_TRUE(met.met);
  EXPECT_GE(met.chosen_step, 1);
  EXPECT_GE(met.value, tight.drop);
  ASSERT_EQ(met.kept_fp32.size(), static_cast<size_t>(met.chosen_step));
  EXPECT_TRUE(std::equal(met.kept_fp32.begin(), met.kept_fp32.end(), met.ranking.begin()));
  EXPECT_EQ(report.kept_fp32.size(), met.kept_fp32.size());

#ifdef KVANT_CLI_PATH
  const fs::path out = fs::temp_directory_path() / ("kvant_api_target_" + std::to_string(::getpid()) + ".onnx");
  const std::string cmd = std::string(KVANT_CLI_PATH) + " quantize " + kCnn + " -o " + out.string() + " --calib " +
                          kRoot + "/models/samples --eval " + kRoot +
                          "/models/samples --metric sqnr --no-speed-check --report-samples 0 -f --accuracy-target " +
                          text + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream file(out, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  fs::remove(out);
  auto mine = q1->to_bytes();
  ASSERT_TRUE(mine.ok());
  EXPECT_TRUE(*mine == bytes.str()) << "the API's model differs from the command's";
#endif

  // An impossible target: the closest model, met false, a warning.
  AccuracyTarget impossible = loose;
  impossible.drop = 200;
  Samples r2;
  AccuracyTargetReport missed;
  QuantizationReport warned;
  auto q2 = quantize_static(model, r2, r2, impossible, {}, &warned, &missed);
  ASSERT_TRUE(q2.ok()) << q2.status().message();
  EXPECT_FALSE(missed.met);
  ASSERT_FALSE(warned.warnings.empty());
  EXPECT_TRUE(contains(warned.warnings.back(), "accuracy target not met")) << warned.warnings.back();

  // A custom metric steers; what it throws is the Status.
  AccuracyTarget custom;
  custom.custom_metric = [](const std::vector<TensorView>&, const std::vector<int64_t>&,
                            const std::string& variant) -> double {
    if (variant == "step 0") throw std::runtime_error("scorer offline");
    return 1.0;
  };
  Samples r3;
  auto thrown = quantize_static(model, r3, r3, custom);
  ASSERT_FALSE(thrown.ok());
  EXPECT_TRUE(contains(thrown.status().message(), "scorer offline")) << thrown.status().message();
}

}  // namespace
}  // namespace kvant
