// Per-input-channel scaling (quant/algorithms/channel_scaling.h), AWQ
// (awq.h) and SmoothQuant (smooth_quant.h) on a small transformer-like graph
// built here: the rescaled FP32 model computes what the original does (the
// key check), each way of folding is taken where it is legal and an explicit
// Mul where it is not, the original Model is left untouched, AWQ's layer
// error is at most round to nearest's (and well below it on inputs with
// outlier channels), and bad values are named errors.
#include "quant/algorithms/channel_scaling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvant/status.h"
#include "quant/algorithms/awq.h"
#include "quant/algorithms/smooth_quant.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

constexpr int64_t kHidden = 64, kFf = 128, kBatch = 2, kSeq = 6;

Tensor random_tensor(Shape shape, std::mt19937& rng, float scale = 1.0f) {
  Tensor t(DType::kFloat32, std::move(shape));
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng) * scale;
  return t;
}

// x [2, 6, 64], z [2, 6, 64] ->
//   h1 = LayerNormalization(x, g1, b1)          group h1: q (MatMul Wq), v (Gemm transB Bv + cv), t2 (MatMul Ws)
//   r  = Reshape(q + v)                          group r: o (MatMul Wo)            -> explicit Mul (Reshape)
//   n  = Mul(o, g2) + b2                         group n: f (MatMul W1)            -> folded into g2, b2
//   fb = Relu(f + bf)                            group fb: y2 (MatMul W2)          -> folded into W1's columns, bf
//   t1 = MatMul(y2, Ws)                          group y2: t1 (Ws shared with t2), gate (Wg), up (Wu)
//                                                                                  -> folded into W2's columns
//   hs = gate * Sigmoid(gate) * up               group hs: d (MatMul Wd)           -> folded into Wu's columns
//   tz = MatMul(z, Wz)                           group z: tz                       -> explicit Mul (graph input)
//   y  = t1 + t2 + tz + o + d;  h1_shape = Shape(h1)
// `outliers`: LayerNorm gamma 30x larger on 3 channels (as LLM norms have).
Model block(uint32_t seed, bool outliers = false) {
  std::mt19937 rng(seed);
  Model m;
  m.opset_imports[""] = 17;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {kBatch, kSeq, kHidden})});
  g.inputs.push_back({"z", type_of(DType::kFloat32, {kBatch, kSeq, kHidden})});
  g.outputs.push_back({"y", type_of(DType::kFloat32, {kBatch, kSeq, kHidden})});
  g.outputs.push_back({"h1_shape", type_of(DType::kInt64, {3})});
  const float w = 1.0f / std::sqrt(static_cast<float>(kHidden));
  g.initializers["g1"] = random_tensor({kHidden}, rng, 0.3f);
  for (int64_t c = 0; c < kHidden; ++c) g.initializers["g1"].data<float>()[c] += 1.0f;
  if (outliers) {
    for (int64_t c : {3, 17, 40}) g.initializers["g1"].data<float>()[c] *= 30.0f;
  }
  g.initializers["b1"] = random_tensor({kHidden}, rng, 0.1f);
  g.initializers["Wq"] = random_tensor({kHidden, kHidden}, rng, w);
  g.initializers["Bv"] = random_tensor({kHidden, kHidden}, rng, w);  // [N, K], transB
  g.initializers["cv"] = random_tensor({kHidden}, rng, 0.1f);
  g.initializers["Ws"] = random_tensor({kHidden, kHidden}, rng, w);
  g.initializers["shape"] = Tensor::from_vector<int64_t>({kBatch, kSeq, kHidden}, {3});
  g.initializers["Wo"] = random_tensor({kHidden, kHidden}, rng, w);
  g.initializers["g2"] = random_tensor({1, kHidden}, rng, 0.5f);
  g.initializers["b2"] = random_tensor({kHidden}, rng, 0.1f);
  g.initializers["W1"] = random_tensor({kHidden, kFf}, rng, w);
  g.initializers["bf"] = random_tensor({kFf}, rng, 0.1f);
  g.initializers["W2"] = random_tensor({kFf, kHidden}, rng, w);
  g.initializers["Wz"] = random_tensor({kHidden, kHidden}, rng, w);
  g.initializers["Wg"] = random_tensor({kHidden, kFf}, rng, w);
  g.initializers["Wu"] = random_tensor({kHidden, kFf}, rng, w);
  g.initializers["Wd"] = random_tensor({kFf, kHidden}, rng, w);
  Node v = make_node("v", "Gemm", {"h1_2d", "Bv", "cv"}, {"v2d"});
  set_attr(v, "transB", 1);
  g.initializers["flat"] = Tensor::from_vector<int64_t>({kBatch * kSeq, kHidden}, {2});
  g.nodes = {
      make_node("ln1", "LayerNormalization", {"x", "g1", "b1"}, {"h1"}),
      make_node("shape_of_h1", "Shape", {"h1"}, {"h1_shape"}),
      make_node("q", "MatMul", {"h1", "Wq"}, {"q"}),
      make_node("t2", "MatMul", {"h1", "Ws"}, {"t2"}),
      // Gemm wants 2-D: h1 is flattened first, so v reads "h1_2d", its own group.
      make_node("flatten_h1", "Reshape", {"h1", "flat"}, {"h1_2d"}),
      v,
      make_node("unflatten_v", "Reshape", {"v2d", "shape"}, {"v"}),
      make_node("qv", "Add", {"q", "v"}, {"a"}),
      make_node("reshape", "Reshape", {"a", "shape"}, {"r"}),
      make_node("o", "MatMul", {"r", "Wo"}, {"o"}),
      make_node("norm_mul", "Mul", {"o", "g2"}, {"m"}),
      make_node("norm_add", "Add", {"b2", "m"}, {"n"}),
      make_node("f", "MatMul", {"n", "W1"}, {"f"}),
      make_node("f_bias", "Add", {"f", "bf"}, {"fbb"}),
      make_node("f_relu", "Relu", {"fbb"}, {"fb"}),
      make_node("y2", "MatMul", {"fb", "W2"}, {"y2"}),
      make_node("t1", "MatMul", {"y2", "Ws"}, {"t1"}),
      make_node("gate", "MatMul", {"y2", "Wg"}, {"gate"}),
      make_node("up", "MatMul", {"y2", "Wu"}, {"up"}),
      make_node("sigmoid", "Sigmoid", {"gate"}, {"sg"}),
      make_node("silu", "Mul", {"gate", "sg"}, {"silu"}),
      make_node("swiglu", "Mul", {"silu", "up"}, {"hs"}),
      make_node("d", "MatMul", {"hs", "Wd"}, {"d"}),
      make_node("tz", "MatMul", {"z", "Wz"}, {"tz"}),
      make_node("sum1", "Add", {"t1", "t2"}, {"s1"}),
      make_node("sum2", "Add", {"s1", "tz"}, {"s2"}),
      make_node("sum3", "Add", {"s2", "o"}, {"s3"}),
      make_node("sum4", "Add", {"s3", "d"}, {"y"}),
  };
  return m;
}

std::map<std::string, Tensor> random_feed(std::mt19937& rng) {
  return {{"x", random_tensor({kBatch, kSeq, kHidden}, rng)}, {"z", random_tensor({kBatch, kSeq, kHidden}, rng)}};
}

// max |a - b| / max |a| over y.
double relative_difference(const Tensor& a, const Tensor& b) {
  double diff = 0, top = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a.data<float>()[i]) - b.data<float>()[i]));
    top = std::max(top, std::fabs(static_cast<double>(a.data<float>()[i])));
  }
  return diff / top;
}

// The two models' outputs on `samples` random feeds: y within `tolerance`
// (relative to its largest value), h1_shape equal.
void expect_same_function(const Model& a, const Model& b, double tolerance, uint32_t seed) {
  std::mt19937 rng(seed);
  ReferenceExecutor ea(a), eb(b);
  for (int s = 0; s < 4; ++s) {
    const auto feed = random_feed(rng);
    const auto ya = ea.run(feed), yb = eb.run(feed);
    EXPECT_LE(relative_difference(ya.at("y"), yb.at("y")), tolerance) << "sample " << s;
    EXPECT_EQ(ya.at("h1_shape").to_int64_vector(), yb.at("h1_shape").to_int64_vector());
  }
}

const ScaleApplied* applied_to(const std::vector<ScaleGroup>& groups, const std::vector<ScaleApplied>& applied,
                               const std::string& input) {
  for (size_t i = 0; i < groups.size(); ++i) {
    if (groups[i].input == input) return &applied[i];
  }
  return nullptr;
}

TEST(ChannelScaling, FindsOneGroupPerLayerInput) {
  const Model m = block(1);
  const std::vector<ScaleGroup> groups = find_scale_groups(m.graph, {});
  std::map<std::string, size_t> layers;
  for (const ScaleGroup& g : groups) layers[g.input] = g.layers.size();
  const std::map<std::string, size_t> expected = {{"h1", 2}, {"h1_2d", 1}, {"r", 1},  {"n", 1},
                                                  {"fb", 1}, {"y2", 3},    {"hs", 1}, {"z", 1}};
  EXPECT_EQ(layers, expected);
  // An excluded layer leaves its group.
  for (const ScaleGroup& g : find_scale_groups(m.graph, {"t2"})) {
    if (g.input == "h1") {
      EXPECT_EQ(g.layers.size(), 1u);
    }
  }
}

TEST(ChannelScaling, RandomScalesKeepTheFunctionAndFoldWhereExact) {
  const Model original = block(2);
  const Model before = block(2);  // the same values, to see that `original` is left alone
  Model scaled = original;
  const std::vector<ScaleGroup> groups = find_scale_groups(scaled.graph, {});
  std::mt19937 rng(5);
  std::uniform_real_distribution<double> log_s(std::log(0.05), std::log(20.0));
  std::vector<std::vector<double>> scales;
  for (const ScaleGroup& g : groups) {
    std::vector<double> s(static_cast<size_t>(layer_in_features(scaled.graph, scaled.graph.nodes[g.layers[0]])));
    for (double& v : s) v = std::exp(log_s(rng));
    scales.push_back(s);
  }
  const std::vector<ScaleApplied> applied = apply_input_scales(scaled.graph, groups, scales, "test");
  ASSERT_EQ(applied.size(), groups.size());
  // The key check: the same FP32 function, within float rounding.
  expect_same_function(original, scaled, 1e-5, 9);
  // How each division was done.
  const auto* h1 = applied_to(groups, applied, "h1");
  ASSERT_NE(h1, nullptr);
  EXPECT_FALSE(h1->folded) << "h1 is also read by the Reshape that feeds the Gemm";
  EXPECT_NE(h1->into.find("flatten_h1"), std::string::npos) << h1->into;
  EXPECT_FALSE(applied_to(groups, applied, "h1_2d")->folded);
  EXPECT_FALSE(applied_to(groups, applied, "r")->folded);
  EXPECT_FALSE(applied_to(groups, applied, "z")->folded);
  EXPECT_NE(applied_to(groups, applied, "z")->into.find("graph input"), std::string::npos);
  EXPECT_TRUE(applied_to(groups, applied, "n")->folded);
  EXPECT_NE(applied_to(groups, applied, "n")->into.find("norm_mul"), std::string::npos);
  EXPECT_TRUE(applied_to(groups, applied, "fb")->folded);
  EXPECT_NE(applied_to(groups, applied, "fb")->into.find("\"f\""), std::string::npos);
  EXPECT_TRUE(applied_to(groups, applied, "y2")->folded);
  EXPECT_TRUE(applied_to(groups, applied, "hs")->folded);
  EXPECT_NE(applied_to(groups, applied, "hs")->into.find("\"up\""), std::string::npos);
  // Four explicit Muls were added (the graph had 3); the original Model's tensors are unchanged.
  size_t muls = 0;
  for (const Node& n : scaled.graph.nodes) muls += n.op_type == "Mul";
  EXPECT_EQ(muls, 3u + 4u);
  for (const auto& [name, t] : before.graph.initializers) {
    ASSERT_TRUE(original.graph.initializers.count(name));
    EXPECT_EQ(original.graph.initializers.at(name).to_float_vector(), t.to_float_vector()) << name;
  }
  // Ws is read by t1 (group y2) and t2 (group h1) with different scales: each
  // got its own copy.
  std::string ws_t1, ws_t2;
  for (const Node& n : scaled.graph.nodes) {
    if (n.name == "t1") ws_t1 = n.inputs[1];
    if (n.name == "t2") ws_t2 = n.inputs[1];
  }
  EXPECT_NE(ws_t1, ws_t2);
}

TEST(ChannelScaling, FoldsIntoLayerNormWhenOnlyLayersAndShapeReadIt) {
  Model m = block(3);
  // v reads h1 directly as a MatMul (no flattening): h1's readers are then
  // q, t2, v and Shape, so its division folds into the LayerNorm.
  for (Node& n : m.graph.nodes) {
    if (n.name == "v") {
      n = make_node("v", "MatMul", {"h1", "Wq"}, {"v"});
    }
  }
  std::erase_if(m.graph.nodes, [](const Node& n) { return n.name == "flatten_h1" || n.name == "unflatten_v"; });
  const Model original = m;
  const std::vector<ScaleGroup> groups = find_scale_groups(m.graph, {});
  std::vector<std::vector<double>> scales;
  for (size_t i = 0; i < groups.size(); ++i) {
    const int64_t k = layer_in_features(m.graph, m.graph.nodes[groups[i].layers[0]]);
    scales.emplace_back(static_cast<size_t>(k), 1.0 + 0.1 * static_cast<double>(i));
  }
  scales[0][7] = 25.0;
  const std::vector<ScaleApplied> applied = apply_input_scales(m.graph, groups, scales, "test");
  const auto* h1 = applied_to(groups, applied, "h1");
  ASSERT_NE(h1, nullptr);
  EXPECT_TRUE(h1->folded) << h1->into;
  EXPECT_NE(h1->into.find("LayerNormalization"), std::string::npos) << h1->into;
  expect_same_function(original, m, 1e-5, 4);
}

// Rows of layer inputs with three channels 40x larger than the rest.
std::vector<float> outlier_rows(std::mt19937& rng, int64_t rows, int64_t k) {
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(rows * k));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      x[static_cast<size_t>(r * k + c)] = normal(rng) * ((c == 5 || c == 20 || c == 51) ? 40.0f : 1.0f);
    }
  }
  return x;
}

ChannelStats stats_of(const std::vector<float>& x, int64_t k) {
  ChannelStats s;
  s.k = k;
  s.abs_sum.assign(static_cast<size_t>(k), 0.0);
  s.abs_max.assign(static_cast<size_t>(k), 0.0);
  s.moment.k = k;
  s.moment.h.assign(static_cast<size_t>(k * k), 0.0);
  const int64_t rows = static_cast<int64_t>(x.size()) / k;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < k; ++c) {
      const double v = std::fabs(x[static_cast<size_t>(r * k + c)]);
      s.abs_sum[static_cast<size_t>(c)] += v;
      s.abs_max[static_cast<size_t>(c)] = std::max(s.abs_max[static_cast<size_t>(c)], v);
    }
  }
  s.rows = rows;
  accumulate_moment(s.moment, x.data(), rows);
  mirror_moment(s.moment);
  return s;
}

// sum over rows of |x (W - diag(1/s) Q(diag(s) W))|^2, computed directly.
double direct_error(const std::vector<float>& x, const std::vector<float>& w, int64_t k, int64_t n,
                    const std::vector<double>& s, const WeightGrid& grid) {
  std::vector<float> ws(w.size());
  for (int64_t r = 0; r < k; ++r) {
    for (int64_t c = 0; c < n; ++c) ws[r * n + c] = static_cast<float>(w[r * n + c] * s[r]);
  }
  const std::vector<float> q = fake_quantize_kn(ws, k, n, grid);
  double e = 0;
  const int64_t rows = static_cast<int64_t>(x.size()) / k;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      double d = 0;
      for (int64_t i = 0; i < k; ++i) d += double(x[r * k + i]) * (double(w[i * n + c]) - q[i * n + c] / s[i]);
      e += d * d;
    }
  }
  return e;
}

TEST(Awq, LayerErrorBelowRoundToNearestOnOutlierChannels) {
  constexpr int64_t k = 64, n = 48;
  std::mt19937 rng(17);
  const std::vector<float> calib = outlier_rows(rng, 400, k), held_out = outlier_rows(rng, 200, k);
  const ChannelStats st = stats_of(calib, k);
  std::normal_distribution<float> normal;
  std::vector<float> w(static_cast<size_t>(k * n));
  for (float& v : w) v = normal(rng) * 0.05f;
  for (int bits : {4, 8}) {
    QuantizeOptions options;
    options.group_size = 32;
    const WeightGrid grid = weight_only_grid(bits, options);
    const AwqSearch a = awq_search({w}, {n}, st, grid);
    EXPECT_LE(a.error, a.rtn_error);
    EXPECT_GT(a.alpha, 0) << bits << " bits";
    const std::vector<double> ones(static_cast<size_t>(k), 1.0);
    // The moment-form error is the direct one (float H D: 1e-4 relative).
    EXPECT_NEAR(a.rtn_error, direct_error(calib, w, k, n, ones, grid), 1e-4 * a.rtn_error);
    EXPECT_NEAR(a.error, direct_error(calib, w, k, n, a.scale, grid), 1e-4 * a.error);
    // On rows the search did not see it is better too, by a margin.
    const double rtn = direct_error(held_out, w, k, n, ones, grid);
    const double awq = direct_error(held_out, w, k, n, a.scale, grid);
    EXPECT_LT(awq, 0.8 * rtn) << bits << " bits: AWQ " << awq << " vs RTN " << rtn;
  }
}

TEST(Awq, NeverWorseThanRoundToNearestWithoutOutliers) {
  constexpr int64_t k = 32, n = 16;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(300 * k)), w(static_cast<size_t>(k * n));
  for (float& v : x) v = normal(rng);
  for (float& v : w) v = normal(rng);
  QuantizeOptions options;
  options.group_size = 16;
  const AwqSearch a = awq_search({w}, {n}, stats_of(x, k), weight_only_grid(4, options));
  EXPECT_LE(a.error, a.rtn_error);
  if (a.alpha == 0) {
    EXPECT_EQ(a.scale, std::vector<double>(static_cast<size_t>(k), 1.0));
  }
}

std::vector<std::map<std::string, Tensor>> samples(uint32_t seed, int count) {
  std::mt19937 rng(seed);
  std::vector<std::map<std::string, Tensor>> out;
  for (int i = 0; i < count; ++i) out.push_back(random_feed(rng));
  return out;
}

TEST(Awq, RewriteKeepsTheFunction) {
  const Model original = block(4, /*outliers=*/true);
  Model m = original;
  VectorSource calib(samples(21, 8));
  QuantizeOptions options;
  options.group_size = 32;
  const AwqResult r = apply_awq(m, calib, 4, options);
  ASSERT_EQ(r.groups.size(), 8u);
  double rtn = 0, awq = 0;
  int scaled = 0;
  for (const AwqGroupResult& g : r.groups) {
    EXPECT_LE(g.search.error, g.search.rtn_error) << g.input;
    rtn += g.search.rtn_error;
    awq += g.search.error;
    scaled += g.search.alpha > 0;
  }
  EXPECT_GT(scaled, 0);
  EXPECT_LT(awq, rtn);
  expect_same_function(original, m, 1e-5, 8);
}

TEST(SmoothQuant, ScalesFollowTheFormula) {
  const std::vector<double> s = smooth_quant_scales({4.0, 9.0, 0.0, 1.0}, {1.0, 4.0, 2.0, 0.0}, 0.5);
  EXPECT_DOUBLE_EQ(s[0], 2.0);        // sqrt(4) / sqrt(1)
  EXPECT_DOUBLE_EQ(s[1], 3.0 / 2.0);  // sqrt(9) / sqrt(4)
  EXPECT_EQ(s[2], 1.0);               // dead activation channel
  EXPECT_EQ(s[3], 1.0);               // all-zero weight row
  const std::vector<double> all_act = smooth_quant_scales({8.0}, {3.0}, 1.0);
  EXPECT_DOUBLE_EQ(all_act[0], 8.0);
}

TEST(SmoothQuant, RewriteKeepsTheFunctionAndFlattensOutliers) {
  const Model original = block(6, /*outliers=*/true);
  Model m = original;
  VectorSource calib(samples(22, 6));
  const SmoothQuantResult r = apply_smooth_quant(m, calib, 0.5, QuantizeOptions{}, {"MatMul", "Gemm", "Conv"});
  ASSERT_EQ(r.groups.size(), 8u);
  for (const SmoothQuantGroup& g : r.groups) {
    if (g.input == "h1") {
      EXPECT_GT(g.outlier_ratio_before, 10.0);
      EXPECT_LT(g.outlier_ratio_after, g.outlier_ratio_before / 3);
    }
  }
  expect_same_function(original, m, 1e-5, 7);
}

TEST(SmoothQuant, SearchPicksAnAlphaNoWorseThanHalfAndKeepsTheFunction) {
  const Model original = block(8, /*outliers=*/true);
  Model m = original;
  VectorSource calib(samples(23, 6));
  const SmoothQuantResult r = apply_smooth_quant(m, calib, std::nullopt, QuantizeOptions{}, {"MatMul", "Gemm"});
  ASSERT_EQ(r.groups.size(), 8u);
  for (const SmoothQuantGroup& g : r.groups) {
    EXPECT_GE(g.alpha, 0.0);
    EXPECT_LE(g.alpha, 1.0);
    EXPECT_GT(g.error_at_half, 0.0) << g.input;
    EXPECT_LE(g.error, g.error_at_half) << g.input;
  }
  expect_same_function(original, m, 1e-5, 10);
}

TEST(ChannelScaling, BadValuesAreNamedErrors) {
  Model m = block(7);
  VectorSource calib(samples(1, 2));
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] {
              apply_smooth_quant(m, calib, 1.5, QuantizeOptions{}, {"MatMul"});
            }).find("migration strength must be in [0, 1], got 1.5"),
            std::string::npos);
  EXPECT_NE(message([&] { apply_awq(m, calib, 3, QuantizeOptions{}); }).find("--bits must be 4 or 8"),
            std::string::npos);
  QuantizeOptions odd;
  odd.group_size = 24;
  EXPECT_NE(message([&] { apply_awq(m, calib, 4, odd); }).find("--group-size must be a power of two"),
            std::string::npos);
  VectorSource wrong({{{"x", random_tensor({kBatch, kSeq, 8}, *std::make_unique<std::mt19937>(1))}}});
  EXPECT_NE(message([&] { apply_awq(m, wrong, 4, QuantizeOptions{}); }), "no error");
  const std::vector<ScaleGroup> groups = find_scale_groups(m.graph, {});
  std::vector<std::vector<double>> zeros(groups.size(), std::vector<double>(kHidden, 1.0));
  zeros[0][3] = 0.0;
  EXPECT_NE(message([&] { apply_input_scales(m.graph, groups, zeros, "t"); }).find("not a positive number"),
            std::string::npos);
}

}  // namespace
}  // namespace kvant
