// Cross-layer equalization (quant/algorithms/equalize.cc) and bias
// correction (quant/algorithms/bias_correction.cc) on small graphs built
// here: the FP32 function is kept, the ranges become equal, illegal pairs are
// left alone, and both make per-tensor INT8 closer to FP32.
#include "quant/algorithms/equalize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "quant/algorithms/adaround.h"
#include "quant/algorithms/bias_correction.h"
#include "quant/qdq.h"
#include "quant/quantize.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

Tensor random_tensor(Shape shape, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::uniform_real_distribution<float> dist(lo, hi);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = dist(rng);
  return t;
}

// Multiplies the rows of `t` (first axis) by 10^u, u uniform in [lo, hi]:
// channels whose ranges differ by orders of magnitude, as BatchNorm folding
// leaves them.
void spread_rows(Tensor& t, std::mt19937& rng, float lo = -2.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  const int64_t per = t.numel() / t.dim(0);
  for (int64_t o = 0; o < t.dim(0); ++o) {
    const float f = std::pow(10.0f, u(rng));
    for (int64_t k = 0; k < per; ++k) t.data<float>()[o * per + k] *= f;
  }
}

// x[1,4,8,8] -> Conv 1x1 4->8 -> Relu -> depthwise Conv 3x3 (group 8, pad 1)
// -> Relu -> Conv 1x1 8->6 -> y: a MobileNetV2 block (two pairs, one chain).
Model depthwise_chain(uint32_t seed) {
  std::mt19937 rng(seed);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {1, 4, 8, 8})});
  g.outputs.push_back({"y", type_of(DType::kFloat32, {1, 6, 8, 8})});
  g.initializers["W1"] = random_tensor({8, 4, 1, 1}, rng);
  g.initializers["b1"] = random_tensor({8}, rng, -0.1f, 0.3f);
  g.initializers["Wd"] = random_tensor({8, 1, 3, 3}, rng);
  g.initializers["bd"] = random_tensor({8}, rng, -0.1f, 0.3f);
  g.initializers["W3"] = random_tensor({6, 8, 1, 1}, rng);
  g.initializers["b3"] = random_tensor({6}, rng);
  spread_rows(g.initializers["W1"], rng);
  spread_rows(g.initializers["Wd"], rng);
  Node expand = make_node("expand", "Conv", {"x", "W1", "b1"}, {"e"});
  Node dw = make_node("dw", "Conv", {"er", "Wd", "bd"}, {"d"});
  set_attr(dw, "group", 8);
  set_attr(dw, "pads", {1, 1, 1, 1});
  g.nodes = {expand, make_node("relu1", "Relu", {"e"}, {"er"}), dw, make_node("relu2", "Relu", {"d"}, {"dr"}),
             make_node("project", "Conv", {"dr", "W3", "b3"}, {"y"})};
  return m;
}

// x[3,5] -> Gemm (transB 1, 5->7) -> LeakyRelu -> Gemm (transB 0, 7->6) -> MatMul [6,4] -> y
Model matrix_chain(uint32_t seed) {
  std::mt19937 rng(seed);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {3, 5})});
  g.outputs.push_back({"y", type_of(DType::kFloat32, {3, 4})});
  g.initializers["B1"] = random_tensor({7, 5}, rng);
  spread_rows(g.initializers["B1"], rng);
  g.initializers["C1"] = random_tensor({7}, rng);
  g.initializers["B2"] = random_tensor({7, 6}, rng);
  g.initializers["C2"] = random_tensor({6}, rng);
  g.initializers["B3"] = random_tensor({6, 4}, rng);
  Node fc1 = make_node("fc1", "Gemm", {"x", "B1", "C1"}, {"h"});
  set_attr(fc1, "transB", 1);
  Node act = make_node("leaky", "LeakyRelu", {"h"}, {"hr"});
  act.attributes["alpha"] = float_attr(0.1f);
  g.nodes = {fc1, act, make_node("fc2", "Gemm", {"hr", "B2", "C2"}, {"z"}),
             make_node("mm", "MatMul", {"z", "B3"}, {"y"})};
  return m;
}

Tensor run_model(const Model& m, const std::map<std::string, Tensor>& feed) {
  ReferenceExecutor exec(m);
  return exec.run(feed).at(m.graph.outputs[0].name);
}

double max_relative_error(const Tensor& want, const Tensor& got) {
  double peak = 0, err = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    peak = std::max(peak, std::fabs(want.get_as_double(i)));
    err = std::max(err, std::fabs(want.get_as_double(i) - got.get_as_double(i)));
  }
  return err / peak;
}

const Node& node_named(const Graph& g, const std::string& name) {
  for (const Node& n : g.nodes) {
    if (n.name == name) return n;
  }
  throw std::runtime_error("no node " + name);
}

// Largest |r1 - r2| / max(r1, r2) over the channels of pair first -> second.
double range_mismatch(const Graph& g, const std::string& first, const std::string& second) {
  const auto r1 = output_channel_ranges(g, node_named(g, first));
  const auto r2 = input_channel_ranges(g, node_named(g, second));
  EXPECT_EQ(r1.size(), r2.size());
  double worst = 0;
  for (size_t c = 0; c < r1.size() && c < r2.size(); ++c) {
    worst = std::max(worst, std::fabs(r1[c] - r2[c]) / std::max(r1[c], r2[c]));
  }
  return worst;
}

TEST(Equalize, DepthwiseChainKeepsTheFunctionAndEqualizesRanges) {
  const Model original = depthwise_chain(3);
  Model eq = original;
  ASSERT_GT(range_mismatch(eq.graph, "expand", "dw"), 0.5) << "the fixture starts unequal";
  const EqualizeResult r = equalize_cross_layer(eq.graph);
  ASSERT_EQ(r.pairs.size(), 2u);
  EXPECT_TRUE(r.skipped.empty());
  EXPECT_LT(r.last_change, 1e-4) << "converged within " << r.sweeps << " sweeps";
  EXPECT_LT(range_mismatch(eq.graph, "expand", "dw"), 1e-3);
  EXPECT_LT(range_mismatch(eq.graph, "dw", "project"), 1e-3);
  std::mt19937 rng(11);
  for (int i = 0; i < 4; ++i) {
    const std::map<std::string, Tensor> feed = {{"x", random_tensor({1, 4, 8, 8}, rng)}};
    EXPECT_LT(max_relative_error(run_model(original, feed), run_model(eq, feed)), 1e-4);
  }
  // The original model's weights are untouched (eq shared their storage).
  EXPECT_GT(range_mismatch(original.graph, "expand", "dw"), 0.5);
}

TEST(Equalize, GemmAndMatMulPairsKeepTheFunction) {
  const Model original = matrix_chain(5);
  Model eq = original;
  const EqualizeResult r = equalize_cross_layer(eq.graph);
  ASSERT_EQ(r.pairs.size(), 2u);  // fc1 -> LeakyRelu -> fc2, fc2 -> mm
  EXPECT_EQ(r.pairs[0].activation, "LeakyRelu");
  EXPECT_LT(range_mismatch(eq.graph, "fc1", "fc2"), 1e-3);
  EXPECT_LT(range_mismatch(eq.graph, "fc2", "mm"), 1e-3);
  std::mt19937 rng(12);
  for (int i = 0; i < 4; ++i) {
    const std::map<std::string, Tensor> feed = {{"x", random_tensor({3, 5}, rng)}};
    EXPECT_LT(max_relative_error(run_model(original, feed), run_model(eq, feed)), 1e-4);
  }
}

TEST(Equalize, SkipsClipWithMaxAndIntermediatesReadElsewhere) {
  Model m = depthwise_chain(3);
  Graph& g = m.graph;
  // relu1 becomes Clip(0, 6): not positively homogeneous.
  g.initializers["lo"] = Tensor::scalar(0.0f);
  g.initializers["hi"] = Tensor::scalar(6.0f);
  g.nodes[1] = make_node("relu1", "Clip", {"e", "lo", "hi"}, {"er"});
  // relu2's output is also a model output.
  g.outputs.push_back({"dr", type_of(DType::kFloat32, {1, 8, 8, 8})});
  const Model before = m;
  const EqualizeResult r = equalize_cross_layer(g);
  EXPECT_TRUE(r.pairs.empty());
  ASSERT_EQ(r.skipped.size(), 2u);
  EXPECT_NE(r.skipped[0].second.find("Clip with a max"), std::string::npos) << r.skipped[0].second;
  EXPECT_NE(r.skipped[1].second.find("other readers or is a model output"), std::string::npos) << r.skipped[1].second;
  EXPECT_EQ(range_mismatch(g, "expand", "dw"), range_mismatch(before.graph, "expand", "dw"));

  // Clip with min 0 and no max is a Relu: equalized.
  Model relu_clip = depthwise_chain(3);
  relu_clip.graph.initializers["lo"] = Tensor::scalar(0.0f);
  relu_clip.graph.nodes[1] = make_node("relu1", "Clip", {"e", "lo"}, {"er"});
  EXPECT_EQ(equalize_cross_layer(relu_clip.graph).pairs.size(), 2u);
}

TEST(Equalize, SharedWeightIsCopiedNotChangedForItsOtherReader) {
  Model m = depthwise_chain(3);
  // A second Conv reads W1 as well (a side branch to a second output).
  m.graph.nodes.push_back(make_node("side", "Conv", {"x", "W1"}, {"s"}));
  m.graph.outputs.push_back({"s", type_of(DType::kFloat32, {1, 8, 8, 8})});
  const Model original = m;
  const EqualizeResult r = equalize_cross_layer(m.graph);
  ASSERT_EQ(r.pairs.size(), 2u);
  EXPECT_NE(node_named(m.graph, "expand").inputs[1], "W1");
  EXPECT_EQ(node_named(m.graph, "side").inputs[1], "W1");
  std::mt19937 rng(13);
  const std::map<std::string, Tensor> feed = {{"x", random_tensor({1, 4, 8, 8}, rng)}};
  ReferenceExecutor a(original), b(m);
  const auto want = a.run(feed), got = b.run(feed);
  EXPECT_LT(max_relative_error(want.at("y"), got.at("y")), 1e-4);
  EXPECT_LT(max_relative_error(want.at("s"), got.at("s")), 1e-6);
}

// Output SQNR (dB) of `quantized` against `fp32` over `n` random inputs.
double output_sqnr(const Model& fp32, const Model& quantized, const Shape& shape, int n, uint32_t seed,
                   float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  double signal = 0, noise = 0;
  for (int i = 0; i < n; ++i) {
    const std::map<std::string, Tensor> feed = {{"x", random_tensor(shape, rng, lo, hi)}};
    const Tensor want = run_model(fp32, feed), got = run_model(quantized, feed);
    for (int64_t k = 0; k < want.numel(); ++k) {
      const double d = want.get_as_double(k) - got.get_as_double(k);
      signal += want.get_as_double(k) * want.get_as_double(k);
      noise += d * d;
    }
  }
  return 10 * std::log10(signal / noise);
}

VectorSource random_samples(const Shape& shape, int n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> v;
  for (int i = 0; i < n; ++i) v.push_back({{"x", random_tensor(shape, rng, lo, hi)}});
  return VectorSource(v);
}

TEST(Equalize, PerTensorInt8IsCloserToFp32AfterEqualization) {
  const Model fp32 = depthwise_chain(3);
  Model eq = fp32;
  equalize_cross_layer(eq.graph);
  QuantizeOptions options;
  options.per_channel = false;
  VectorSource calib_a = random_samples({1, 4, 8, 8}, 16, 1), calib_b = random_samples({1, 4, 8, 8}, 16, 1);
  const Model plain = quantize_static(fp32, calib_a, options, nullptr);
  const Model equalized = quantize_static(eq, calib_b, options, nullptr);
  const double before = output_sqnr(fp32, plain, {1, 4, 8, 8}, 8, 21);
  const double after = output_sqnr(fp32, equalized, {1, 4, 8, 8}, 8, 21);
  EXPECT_GT(after, before + 2.0) << "per-tensor SQNR " << before << " dB -> " << after << " dB";
}

// x[1,3,8,8] (positive, mean ~1) -> Conv 3->4 3x3 (no pad) [-> y], weights
// per tensor quantized: one channel holds a weight 40x the others, so the
// step is large for the rest, whose weights lie around 0.3 step and round
// the same way.
Model biased_conv(bool with_bias) {
  std::mt19937 rng(17);
  Model m;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {1, 3, 8, 8})});
  g.outputs.push_back({"y", type_of(DType::kFloat32, {1, 4, 6, 6})});
  Tensor w = random_tensor({4, 3, 3, 3}, rng, 0.002f, 0.005f);
  w.data<float>()[0] = 1.0f;  // step 1/127 ~ 0.0079: the others are 0.25..0.63 of a step
  g.initializers["W"] = w;
  std::vector<std::string> inputs = {"x", "W"};
  if (with_bias) {
    g.initializers["b"] = random_tensor({4}, rng);
    inputs.push_back("b");
  }
  g.nodes = {make_node("conv", "Conv", inputs, {"y"})};
  return m;
}

// Mean over output channels of |mean over samples and positions of (yq - y)|.
double mean_output_error(const Model& fp32, const Model& q, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<double> per_channel(4, 0.0);
  int64_t count = 0;
  for (int i = 0; i < n; ++i) {
    const std::map<std::string, Tensor> feed = {{"x", random_tensor({1, 3, 8, 8}, rng, 0.5f, 1.5f)}};
    const Tensor want = run_model(fp32, feed), got = run_model(q, feed);
    for (int64_t k = 0; k < want.numel(); ++k)
      per_channel[static_cast<size_t>(k / 36)] += got.get_as_double(k) - want.get_as_double(k);
    count += 36;
  }
  double sum = 0;
  for (double e : per_channel) sum += std::fabs(e / static_cast<double>(count));
  return sum / 4;
}

TEST(BiasCorrection, RemovesTheMeanShiftOfPerTensorWeightRounding) {
  for (bool with_bias : {true, false}) {
    const Model fp32 = biased_conv(with_bias);
    QuantizeOptions options;
    options.per_channel = false;
    VectorSource calib_a = random_samples({1, 3, 8, 8}, 32, 2, 0.5f, 1.5f);
    VectorSource calib_b = random_samples({1, 3, 8, 8}, 32, 2, 0.5f, 1.5f);
    const Model plain = quantize_static(fp32, calib_a, options, nullptr);
    options.bias_correction = true;
    QuantizeSummary summary;
    const Model corrected = quantize_static(fp32, calib_b, options, &summary);
    ASSERT_FALSE(summary.notes.empty());
    EXPECT_EQ(summary.notes.back(),
              "bias correction: 1 Conv/Gemm bias(es) corrected for the mean shift of weight rounding");
    const double before = mean_output_error(fp32, plain, 16, 9);
    const double after = mean_output_error(fp32, corrected, 16, 9);
    EXPECT_LT(after, 0.25 * before) << "with bias " << with_bias << ": mean error " << before << " -> " << after;
    // The corrected bias is an int32 DequantizeLinear input like any other.
    bool bias_dq = false;
    for (const Node& n : corrected.graph.nodes) {
      if (n.op_type == "Conv") {
        ASSERT_EQ(n.inputs.size(), 3u);
        for (const Node& d : corrected.graph.nodes) {
          if (d.op_type == "DequantizeLinear" && d.outputs[0] == n.inputs[2])
            bias_dq = corrected.graph.initializers.at(d.inputs[0]).dtype() == DType::kInt32;
        }
      }
    }
    EXPECT_TRUE(bias_dq);
  }
}

TEST(BiasCorrection, GemmShiftIsWeightErrorTimesInputMean) {
  Node gemm = make_node("fc", "Gemm", {"a", "B"}, {"y"});
  set_attr(gemm, "transB", 1);
  gemm.attributes["alpha"] = float_attr(2.0f);
  Tensor w = Tensor::from_vector<float>({0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f}, {2, 3});  // [N 2, K 3]
  Tensor wq = Tensor::from_vector<float>({0.1f, 0.25f, 0.3f, 0.4f, 0.5f, 0.5f}, {2, 3});
  const std::vector<double> shift = expected_output_shift(gemm, w, wq, {1.0, 2.0, 3.0});
  ASSERT_EQ(shift.size(), 2u);
  EXPECT_NEAR(shift[0], 2.0 * 0.05 * 2.0, 1e-6);
  EXPECT_NEAR(shift[1], 2.0 * -0.1 * 3.0, 1e-6);
  // Mismatched mean length: no shift, not a crash.
  EXPECT_TRUE(expected_output_shift(gemm, w, wq, {1.0}).empty());
}

TEST(BiasCorrection, ChannelMeansOverAxisOneAndLastAxis) {
  ChannelMeans means;
  means.track("conv_in", ChannelMeans::Axis::kOne);
  means.track("fc_in", ChannelMeans::Axis::kLast);
  means.observe("conv_in", Tensor::from_vector<float>({1, 1, 3, 3, 2, 2, 4, 4}, {2, 2, 2}));  // [N 2, C 2, 2]
  means.observe("fc_in", Tensor::from_vector<float>({1, 10, 3, 30}, {2, 2}));
  means.observe("other", Tensor::from_vector<float>({1}, {1}));
  ASSERT_NE(means.mean("conv_in"), nullptr);
  EXPECT_DOUBLE_EQ((*means.mean("conv_in"))[0], 1.5);
  EXPECT_DOUBLE_EQ((*means.mean("conv_in"))[1], 3.5);
  EXPECT_DOUBLE_EQ((*means.mean("fc_in"))[0], 2.0);
  EXPECT_DOUBLE_EQ((*means.mean("fc_in"))[1], 20.0);
  EXPECT_EQ(means.mean("other"), nullptr);
}

}  // namespace
}  // namespace kvant

namespace kvant {
namespace {

// x [rows, 16] with correlated columns (a shared factor plus noise) -> Gemm
// (transB 1, 16 -> 8): AdaRound's rounding must give a smaller output error
// than round-to-nearest on held-out inputs, and only ever pick the floor or
// the ceiling of each weight.
TEST(AdaRound, BeatsNearestOnHeldOutInputsOfAGemm) {
  std::mt19937 rng(23);
  Node gemm = make_node("fc", "Gemm", {"a", "B"}, {"y"});
  set_attr(gemm, "transB", 1);
  Tensor w = random_tensor({8, 16}, rng);
  auto make_input = [&](int rows) {
    Tensor a(DType::kFloat32, {rows, 16});
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int r = 0; r < rows; ++r) {
      const float common = n(rng);
      for (int k = 0; k < 16; ++k) a.data<float>()[r * 16 + k] = common + 0.3f * n(rng) + 0.5f;
    }
    return a;
  };
  AdaRoundOptions options;
  options.samples = 16;
  options.positions = 64;
  std::string why;
  auto lg = LayerGram::make(gemm, w, options, &why);
  ASSERT_TRUE(lg.has_value()) << why;
  for (int s = 0; s < 16; ++s) lg->observe(make_input(64));
  EXPECT_EQ(lg->patches(), 16 * 64);
  const QuantParams wp = weight_params(w, -1, DType::kInt8, Symmetry::kSymmetric);  // per tensor
  const AdaRoundResult r = adaround_weight(gemm, w, wp, *lg, false, options);
  EXPECT_GT(r.changed, 0);
  EXPECT_LT(r.adaround_error, 0.9 * r.nearest_error);
  const Tensor nearest = dequantized_weight(w, wp);
  for (int64_t e = 0; e < w.numel(); ++e) {
    const double x = w.data<float>()[e] / wp.scale[0];
    const double code = r.dequantized.data<float>()[e] / wp.scale[0];
    EXPECT_TRUE(std::fabs(code - std::floor(x)) < 1e-3 || std::fabs(code - std::ceil(x)) < 1e-3) << e;
  }
  // Held-out inputs: the mean squared output error of each rounding.
  const Tensor test = make_input(512);
  auto error = [&](const Tensor& wq) {
    double sum = 0;
    for (int r2 = 0; r2 < 512; ++r2) {
      for (int o = 0; o < 8; ++o) {
        double acc = 0;
        for (int k = 0; k < 16; ++k) {
          acc += (wq.data<float>()[o * 16 + k] - w.data<float>()[o * 16 + k]) * test.data<float>()[r2 * 16 + k];
        }
        sum += acc * acc;
      }
    }
    return sum;
  };
  EXPECT_LT(error(r.dequantized), 0.9 * error(nearest));
}

TEST(AdaRound, StaticQuantizationRoundsEveryLayerWithTheSameScalesAndHigherSqnr) {
  const Model fp32 = depthwise_chain(3);
  QuantizeOptions options;
  options.per_channel = false;
  options.rounding = WeightRounding::kAdaRound;
  VectorSource calib = random_samples({1, 4, 8, 8}, 16, 1);
  QuantizeSummary summary;
  const Model q = quantize_static(fp32, calib, options, &summary);
  bool noted = false;
  for (const std::string& n : summary.notes) noted = noted || n.rfind("AdaRound: 3 layer(s)", 0) == 0;
  EXPECT_TRUE(noted);
  options.rounding = WeightRounding::kNearest;
  VectorSource calib2 = random_samples({1, 4, 8, 8}, 16, 1);
  const Model plain = quantize_static(fp32, calib2, options, nullptr);
  // Same activation ranges and weight scales: only weight codes differ.
  EXPECT_EQ(q.graph.initializers.at("W1/scale").data<float>()[0],
            plain.graph.initializers.at("W1/scale").data<float>()[0]);
  const double sqnr_ada = output_sqnr(fp32, q, {1, 4, 8, 8}, 8, 21);
  const double sqnr_plain = output_sqnr(fp32, plain, {1, 4, 8, 8}, 8, 21);
  EXPECT_GT(sqnr_ada, sqnr_plain) << "AdaRound " << sqnr_ada << " dB, nearest " << sqnr_plain << " dB";
}

}  // namespace
}  // namespace kvant
