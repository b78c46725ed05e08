// The quantize report's per-layer errors (layer_report.cc): a layer's own
// error (the layer alone on FP32 inputs) apart from what it inherits, and
// near-constant outputs flagged instead of scored.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>

#include "quant/quantize.h"
#include "test_graphs.h"

namespace kvant {
namespace {

// x[1,8] -> Gemm "a" (W1 [8,8], b1) -> h -> Gemm "b" (W2 [8,8], b2) -> z -> Identity -> y
// (the Identity keeps "b"'s output quantized: a Gemm writing a graph output
// leaves it float, design decision 68)
Model two_gemms(const Tensor& w1, const Tensor& w2, const Tensor& b2) {
  std::mt19937 rng(3);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {8, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {8, ""}}}});
  g.initializers["W1"] = w1;
  g.initializers["b1"] = uniform({8}, rng, -0.1f, 0.1f);
  g.initializers["W2"] = w2;
  g.initializers["b2"] = b2;
  g.nodes = {make_node("a", "Gemm", {"x", "W1", "b1"}, {"h"}), make_node("b", "Gemm", {"h", "W2", "b2"}, {"z"}),
             make_node("id", "Identity", {"z"}, {"y"})};
  return m;
}

// Samples whose input channel 7 is always 0 (so a huge weight on it does
// not show in the FP32 outputs).
VectorSource samples(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < n; ++i) {
    Tensor x = uniform({1, 8}, rng, -1.0f, 1.0f);
    x.data<float>()[7] = 0.0f;
    v.push_back({{"x", x}});
  }
  return VectorSource(v);
}

const LayerError& find(const std::vector<LayerError>& errors, const std::string& node) {
  for (const auto& e : errors) {
    if (e.node == node) return e;
  }
  throw std::runtime_error("no layer " + node);
}

std::vector<LayerError> report(const Model& fp32) {
  VectorSource calib = samples(32, 1);
  QuantizeOptions options;
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, options, &summary);
  VectorSource eval = samples(16, 2);
  return compare_layers(fp32, q, summary.layer_outputs, eval, 16);
}

TEST(LayerReport, SeparatesALayersOwnErrorFromTheErrorItInherits) {
  std::mt19937 rng(5);
  // Row 7 of W1 (input channel 7, always 0) is huge: every column's int8
  // scale is set by it, so the useful weights of "a" round to a few levels.
  Tensor w1 = uniform({8, 8}, rng, -0.05f, 0.05f);
  for (int n = 0; n < 8; ++n) w1.data<float>()[7 * 8 + n] = 1000.0f;
  const Model fp32 = two_gemms(w1, uniform({8, 8}, rng, -1.0f, 1.0f), uniform({8}, rng, -0.1f, 0.1f));
  const auto errors = report(fp32);
  ASSERT_EQ(errors.size(), 2u);
  const LayerError& a = find(errors, "a");
  const LayerError& b = find(errors, "b");
  ASSERT_FALSE(std::isnan(a.own_sqnr_db));
  ASSERT_FALSE(std::isnan(b.own_sqnr_db));
  // "a" reads the graph input: alone or not, it is the same computation.
  EXPECT_NEAR(a.own_sqnr_db, a.sqnr_db, 1e-6);
  EXPECT_LT(a.own_sqnr_db, 10.0);
  // "b" itself quantizes well; what it outputs in the quantized model is bad
  // because of "a".
  EXPECT_GT(b.own_sqnr_db, 30.0);
  EXPECT_LT(b.sqnr_db, 10.0);
  EXPECT_GT(b.own_cosine, 0.999);
  EXPECT_FALSE(a.near_constant);
  EXPECT_FALSE(b.near_constant);
  EXPECT_EQ(errors.front().node, "a") << "worst own error first";
}

TEST(LayerReport, OwnEqualsAccumulatedWhenNothingIsInherited) {
  std::mt19937 rng(9);
  const Model fp32 =
      two_gemms(uniform({8, 8}, rng, -1.0f, 1.0f), uniform({8, 8}, rng, -1.0f, 1.0f), uniform({8}, rng, -0.1f, 0.1f));
  const auto errors = report(fp32);
  ASSERT_EQ(errors.size(), 2u);
  for (const auto& e : errors) {
    EXPECT_GT(e.own_sqnr_db, 25.0) << e.node;
    EXPECT_GT(e.sqnr_db, 20.0) << e.node;
    // Inheriting can only add noise here (both layers are well conditioned).
    EXPECT_GE(e.own_sqnr_db, e.sqnr_db - 1.0) << e.node;
  }
}

TEST(LayerReport, FlagsANearConstantOutputInsteadOfScoringIt) {
  std::mt19937 rng(11);
  // "b" outputs 5 plus a wobble of about 1e-4: a near-constant signal whose
  // variation is far below one quantization step of its range [0, 5].
  Tensor w2 = uniform({8, 8}, rng, -1e-4f, 1e-4f);
  Tensor b2(DType::kFloat32, {8});
  for (int i = 0; i < 8; ++i) b2.data<float>()[i] = 5.0f;
  const Model fp32 = two_gemms(uniform({8, 8}, rng, -1.0f, 1.0f), w2, b2);
  const auto errors = report(fp32);
  ASSERT_EQ(errors.size(), 2u);
  const LayerError& b = find(errors, "b");
  EXPECT_TRUE(b.near_constant);
  EXPECT_GT(b.output_step, 0.0);
  EXPECT_LT(b.fp32_std, kNearConstantSteps * b.output_step);
  EXPECT_FALSE(find(errors, "a").near_constant);
  EXPECT_EQ(errors.back().node, "b") << "near-constant layers are listed last";
}

TEST(LayerReport, AnExactlyConstantOutputIsNearConstant) {
  std::mt19937 rng(13);
  Tensor b2(DType::kFloat32, {8});
  for (int i = 0; i < 8; ++i) b2.data<float>()[i] = -2.0f;
  const Model fp32 = two_gemms(uniform({8, 8}, rng, -1.0f, 1.0f), Tensor(DType::kFloat32, {8, 8}), b2);
  const auto errors = report(fp32);
  const LayerError& b = find(errors, "b");
  EXPECT_TRUE(b.near_constant);
  EXPECT_EQ(b.fp32_std, 0.0);
}

}  // namespace
}  // namespace kvant
