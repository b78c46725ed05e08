// The quantization options of the public API that rewrite or round the
// weights (kvant.h: weight_bits, equalize, bias_correction, rounding, awq,
// smooth_quant, and the dynamic / weight-only overloads with calibration
// data): the API's model is the bytes `kvant quantize` writes with the same
// options on the same three samples, and misuse is a Status naming it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "api_test_util.h"
#include "kvant/kvant.h"

namespace kvant {
namespace {

using namespace api_test;  // NOLINT: kRoot, kCnn, contains, Samples, fs

// `kvant quantize MODEL -o FILE --no-speed-check ARGS` on the three samples:
// the file's bytes ("" when the command failed).
std::string command_file(const std::string& args) {
#ifdef KVANT_CLI_PATH
  const fs::path out = fs::temp_directory_path() / ("kvant_api_options_" + std::to_string(::getpid()) + ".onnx");
  const std::string cmd = std::string(KVANT_CLI_PATH) + " quantize " + kCnn + " -o " + out.string() +
                          " -f --no-speed-check " + args + " >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0) return "";
  std::ifstream file(out, std::ios::binary);
  std::stringstream bytes;
  bytes << file.rdbuf();
  fs::remove(out);
  return bytes.str();
#else
  (void)args;
  return "";
#endif
}

const std::string kCalib = "--calib " + kRoot + "/models/samples";

void expect_command_bytes(const Result<OnnxModel>& model, const std::string& args) {
  ASSERT_TRUE(model.ok()) << model.status().message();
#ifndef KVANT_CLI_PATH
  GTEST_SKIP() << "built without the kvant command";
#endif
  const std::string expected = command_file(args);
  ASSERT_FALSE(expected.empty()) << "kvant quantize " << args << " failed";
  auto bytes = model->to_bytes();
  ASSERT_TRUE(bytes.ok());
  EXPECT_TRUE(*bytes == expected) << "the API's model differs from `kvant quantize " << args << "`";
}

OnnxModel cnn() {
  auto model = OnnxModel::load(kCnn);
  EXPECT_TRUE(model.ok()) << model.status().message();
  return *model;
}

TEST(ApiOptions, StaticEqualizeBiasCorrectionAdaRoundMatchTheCommand) {
  Samples reader;
  QuantizationOptions o;
  o.equalize = true;
  o.bias_correction = true;
  o.rounding = RoundingMethod::kAdaRound;
  QuantizationReport report;
  auto q = quantize_static(cnn(), reader, o, &report);
  expect_command_bytes(q, kCalib + " --equalize --bias-correction --rounding adaround");
  ASSERT_GE(report.notes.size(), 3u);
  EXPECT_TRUE(contains(report.notes[0], "cross-layer equalization")) << report.notes[0];
}

TEST(ApiOptions, W4A8WithSmoothQuantSearchMatchesTheCommand) {
  Samples reader;
  QuantizationOptions o;
  o.weight_bits = 4;
  o.smooth_quant = true;
  o.smooth_quant_alpha = std::nullopt;
  QuantizationReport report;
  auto q = quantize_static(cnn(), reader, o, &report);
  expect_command_bytes(q, kCalib + " --weight-bits 4 --smooth-quant search");
  ASSERT_FALSE(report.notes.empty());
  EXPECT_TRUE(contains(report.notes[0], "SmoothQuant (alpha searched")) << report.notes[0];
  EXPECT_EQ(q->opset(), 21);
}

TEST(ApiOptions, DynamicWithCalibrationMatchesTheCommand) {
  Samples reader;
  QuantizationOptions o;
  o.equalize = true;
  o.smooth_quant = true;
  o.smooth_quant_alpha = 0.7;
  auto q = quantize_dynamic(cnn(), reader, o);
  expect_command_bytes(q, "--mode dynamic " + kCalib + " --equalize --smooth-quant 0.7");
}

TEST(ApiOptions, WeightOnlyAwqGptqMatchesTheCommand) {
  Samples reader;
  QuantizationOptions o;
  o.group_size = 32;
  o.awq = true;
  o.rounding = RoundingMethod::kGptq;
  o.max_samples = 2;
  QuantizationReport report;
  auto q = quantize_weight_only(cnn(), reader, o, &report);
  expect_command_bytes(q, "--mode weight-only --group-size 32 " + kCalib + " --awq --rounding gptq --samples 2");
  ASSERT_FALSE(report.notes.empty());
  EXPECT_TRUE(contains(report.notes[0], "AWQ")) << report.notes[0];
}

TEST(ApiOptions, MisuseIsAStatusNamingTheOption) {
  const OnnxModel model = cnn();
  auto expect_error = [](const Result<OnnxModel>& r, const std::string& part) {
    ASSERT_FALSE(r.ok()) << "expected an error naming " << part;
    EXPECT_TRUE(contains(r.status().message(), part)) << r.status().message();
  };
  QuantizationOptions awq;
  awq.awq = true;
  expect_error(quantize_weight_only(model, awq), "needs calibration data");
  QuantizationOptions gptq;
  gptq.rounding = RoundingMethod::kGptq;
  expect_error(quantize_weight_only(model, gptq), "needs calibration data");
  Samples r1, r2, r3, r4, r5;
  expect_error(quantize_static(model, r1, gptq), "kGptq applies to weight-only");
  QuantizationOptions ada;
  ada.rounding = RoundingMethod::kAdaRound;
  expect_error(quantize_weight_only(model, r2, ada), "kAdaRound applies to static");
  QuantizationOptions sq;
  sq.smooth_quant = true;
  expect_error(quantize_dynamic(model, sq), "needs calibration data");
  expect_error(quantize_weight_only(model, r3, sq), "smooth_quant applies to static and dynamic");
  sq.smooth_quant_alpha = 1.5;
  expect_error(quantize_static(model, r4, sq), "smooth_quant_alpha must be in [0, 1]");
  QuantizationOptions w;
  w.weight_bits = 3;
  expect_error(quantize_static(model, r5, w), "weight_bits must be 8 or 4");
  w.weight_bits = 4;
  expect_error(quantize_dynamic(model, w), "weight_bits applies to static");
  QuantizationOptions alpha_only;
  alpha_only.smooth_quant_alpha = 0.3;
  expect_error(quantize_dynamic(model, alpha_only), "with smooth_quant = true only");
}

}  // namespace
}  // namespace kvant
