// The report's value histograms and chosen ranges (quant/range_histograms.cc):
// every quantized activation and weight is found, its range is the one the
// quantized model's scale and zero point represent, counts add up, and
// values outside a range are counted as clipped (against their own channel
// for per-channel weights).
#include "quant/range_histograms.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "quant/quantize.h"
#include "test_graphs.h"

namespace kvant {
namespace {

// x[1,8] -> Gemm "a" (W1 [8,8], b1) -> h -> Relu -> r -> Gemm "b" (W2 [8,4], b2) -> y
Model gemm_relu_gemm() {
  std::mt19937 rng(5);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {8, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {4, ""}}}});
  g.initializers["W1"] = uniform({8, 8}, rng, -1.0f, 1.0f);
  g.initializers["b1"] = uniform({8}, rng, -0.1f, 0.1f);
  // Column 3 of W2 is 10x the others: per-channel ranges differ 10x.
  Tensor w2 = uniform({8, 4}, rng, -0.5f, 0.5f);
  for (int k = 0; k < 8; ++k) w2.data<float>()[k * 4 + 3] *= 10.0f;
  g.initializers["W2"] = w2;
  g.initializers["b2"] = uniform({4}, rng, -0.1f, 0.1f);
  g.nodes = {make_node("a", "Gemm", {"x", "W1", "b1"}, {"h"}), make_node("relu", "Relu", {"h"}, {"r"}),
             make_node("b", "Gemm", {"r", "W2", "b2"}, {"y"})};
  return m;
}

VectorSource samples(int n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < n; ++i) v.push_back({{"x", uniform({1, 8}, rng, -scale, scale)}});
  return VectorSource(v);
}

const RangeHistogram& find(const std::vector<RangeHistogram>& hs, const std::string& tensor, bool weight) {
  for (const auto& h : hs) {
    if (h.tensor == tensor && h.weight == weight) return h;
  }
  ADD_FAILURE() << "no histogram of " << tensor;
  static const RangeHistogram kNone;
  return kNone;
}

float scalar(const Graph& g, const std::string& name) { return g.initializers.at(name).get_as_double(0); }

TEST(RangeHistograms, ActivationRangeIsWhatTheQuantizeNodeRepresents) {
  const Model fp32 = gemm_relu_gemm();
  VectorSource calib = samples(16, 1);
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, nullptr);
  const auto hs = range_histograms(fp32, q, &calib, 16);
  const RangeHistogram& x = find(hs, "x", false);
  // The graph input's QuantizeLinear: (0 - zp) * s .. (255 - zp) * s (uint8).
  const Node* qx = nullptr;
  for (const Node& n : q.graph.nodes)
    if (n.op_type == "QuantizeLinear" && n.inputs[0] == "x") qx = &n;
  ASSERT_NE(qx, nullptr);
  const double s = scalar(q.graph, qx->inputs[1]), zp = scalar(q.graph, qx->inputs[2]);
  EXPECT_NEAR(x.lo, (0 - zp) * s, 1e-9);
  EXPECT_NEAR(x.hi, (255 - zp) * s, 1e-9);
  EXPECT_EQ(x.values, 16 * 8);
  EXPECT_EQ(x.binned, x.values);  // small tensors are binned whole
  EXPECT_EQ(std::accumulate(x.counts.begin(), x.counts.end(), int64_t{0}), x.binned);
  EXPECT_EQ(x.clipped, 0);  // min/max calibration on these very samples covers them
  EXPECT_LE(x.plot_lo, std::min(x.lo, x.min));
  EXPECT_GE(x.plot_hi, std::max(x.hi, x.max));
  EXPECT_EQ(x.node, "a");  // the layer that reads it, past its DequantizeLinear
  // The Relu's output is quantized too, and non-negative.
  const RangeHistogram& r = find(hs, "r", false);
  EXPECT_GE(r.min, 0.0);
  EXPECT_EQ(r.values, 16 * 8);

  // Samples 3x wider than calibration: most values fall outside the range.
  VectorSource wide = samples(16, 2, 3.0f);
  const auto hw = range_histograms(fp32, q, &wide, 16);
  const RangeHistogram& xw = find(hw, "x", false);
  int64_t outside = 0;
  wide.reset();
  while (auto f = wide.next()) {
    const Tensor& t = f->at("x");
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double v = t.data<float>()[i];
      outside += (v < x.lo - s / 2 || v > x.hi + s / 2) ? 1 : 0;
    }
  }
  EXPECT_GT(outside, 16 * 8 / 3);
  EXPECT_EQ(xw.clipped, outside);
}

TEST(RangeHistograms, PerChannelWeightsAreClippedAgainstTheirOwnChannel) {
  const Model fp32 = gemm_relu_gemm();
  VectorSource calib = samples(8, 1);
  const Model q = quantize_static(fp32, calib, QuantizeOptions{}, nullptr);
  // Without samples: weights only.
  const auto hs = range_histograms(fp32, q, nullptr, 0);
  for (const auto& h : hs) EXPECT_TRUE(h.weight) << h.tensor;
  const RangeHistogram& w2 = find(hs, "W2", true);
  EXPECT_EQ(w2.ranges, 4);  // one scale per output column
  EXPECT_EQ(w2.values, 32);
  EXPECT_EQ(w2.clipped, 0);
  EXPECT_EQ(w2.node, "b");
  // The widest channel (column 3, 10x) sets the plotted range.
  float widest = 0;
  for (int k = 0; k < 8; ++k)
    widest = std::max(widest, std::abs(fp32.graph.initializers.at("W2").data<float>()[k * 4 + 3]));
  EXPECT_NEAR(w2.hi, widest, 0.02 * widest);

  // Narrow column 3's scale 10x in the quantized file: its values now fall
  // outside their own range although they are inside the widest one.
  Model narrowed = q;
  double s3 = 0;
  for (Node& n : narrowed.graph.nodes) {
    if (n.op_type != "DequantizeLinear" || n.outputs[0] != "W2") continue;
    Tensor& scale = narrowed.graph.initializers.at(n.inputs[1]);
    scale = scale.clone();
    scale.data<float>()[3] /= 10.0f;
    s3 = scale.data<float>()[3];
  }
  ASSERT_GT(s3, 0);
  const auto narrowed_hs = range_histograms(fp32, narrowed, nullptr, 0);
  const RangeHistogram& cut = find(narrowed_hs, "W2", true);
  int64_t expected = 0;  // int8 codes -128..127, zero point 0, half a step of rounding slack
  for (int k = 0; k < 8; ++k) {
    const double v = fp32.graph.initializers.at("W2").data<float>()[k * 4 + 3];
    expected += (v < -128.5 * s3 || v > 127.5 * s3) ? 1 : 0;
  }
  EXPECT_GT(expected, 0);
  EXPECT_EQ(cut.clipped, expected);
}

TEST(RangeHistograms, SevenBitWeightsArePlottedOnTheirGrid) {
  const Model fp32 = gemm_relu_gemm();
  VectorSource calib = samples(8, 1);
  QuantizeOptions options;
  options.reduce_range = true;
  const Model q = quantize_static(fp32, calib, options, nullptr);
  const auto hs = range_histograms(fp32, q, nullptr, 0);
  const RangeHistogram& w1 = find(hs, "W1", true);
  // Symmetric 7-bit: max |w| = 63 steps, so the range ends near the data's.
  const double amax = std::max(std::abs(w1.min), std::abs(w1.max));
  EXPECT_NEAR(w1.hi, amax, 0.02 * amax);
  EXPECT_EQ(w1.clipped, 0);
}

TEST(RangeHistograms, DynamicModeWeightsAreFoundThroughTheIntegerGemm) {
  // x[1,64] -> Gemm "b" (W [32, 64], transB) -> y: codes are [64, 32].
  std::mt19937 rng(9);
  Model fp32;
  fp32.opset_imports[""] = 13;
  Graph& g = fp32.graph;
  g.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {64, ""}}}});
  g.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {32, ""}}}});
  Tensor w = uniform({32, 64}, rng, -0.5f, 0.5f);
  for (int k = 0; k < 64; ++k) w.data<float>()[3 * 64 + k] *= 10.0f;  // output 3: a 10x wider range
  g.initializers["W"] = w;
  Node gemm = make_node("b", "Gemm", {"x", "W"}, {"y"});
  set_attr(gemm, "transB", int64_t{1});
  g.nodes = {gemm};
  const Model q = quantize_dynamic(fp32, QuantizeOptions{}, nullptr);
  const auto hs = range_histograms(fp32, q, nullptr, 0);
  ASSERT_EQ(hs.size(), 1u);
  const RangeHistogram& h = find(hs, "W", true);
  EXPECT_EQ(h.node, "b");
  EXPECT_EQ(h.ranges, 32);
  EXPECT_EQ(h.values, 32 * 64);
  // Each output against its own scale: none clipped. Were the transpose
  // missed, output 3's large values would meet the narrow outputs' ranges.
  EXPECT_EQ(h.clipped, 0);
  float widest = 0;
  for (int i = 0; i < 32 * 64; ++i) widest = std::max(widest, std::abs(w.data<float>()[i]));
  EXPECT_NEAR(h.hi, widest, 0.02 * widest);
}

}  // namespace
}  // namespace kvant
