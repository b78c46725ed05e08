// Round to nearest with MSE-optimal clipping (quant/mse_clip.h): the chosen
// range is the least-error point of the stated grid (recomputed here by
// brute force), clipping wins on groups with an outlier and stays off where
// min/max is already exact, and the weight-only exports (both formats) lower
// the weight's squared error against plain min/max.
#include "quant/mse_clip.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "quant/qdq.h"
#include "quant/quantize.h"

namespace kvant {
namespace {

double group_error(const std::vector<float>& v, float lo, float hi, DType storage, Symmetry symmetry) {
  float scale = 1.0f;
  int32_t zp = 0;
  choose_qparams(lo, hi, storage, symmetry, false, &scale, &zp);
  double err = 0;
  for (float x : v) {
    const double d = x - static_cast<float>(quantize_value(x, scale, zp, quant_range(storage)) - zp) * scale;
    err += d * d;
  }
  return err;
}

void min_max(const std::vector<float>& v, float& lo, float& hi) {
  lo = 0.0f;
  hi = 0.0f;
  for (float x : v) {
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
}

TEST(MseClip, ChoosesTheLeastErrorRatioOfTheGrid) {
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  int clipped = 0;
  for (Symmetry symmetry : {Symmetry::kSymmetric, Symmetry::kAffine}) {
    const DType storage = symmetry == Symmetry::kSymmetric ? DType::kInt4 : DType::kUInt4;
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<float> v(32);
      for (float& x : v) x = normal(rng);
      float lo0 = 0, hi0 = 0;
      min_max(v, lo0, hi0);
      float lo = lo0, hi = hi0;
      mse_clip_range(v.data(), 32, 1, storage, symmetry, &lo, &hi);
      const double got = group_error(v, lo, hi, storage, symmetry);
      double best = 1e300;
      for (int step = 0; step <= 25; ++step) {
        const float r = 1.0f - 0.02f * static_cast<float>(step);
        best = std::min(best, group_error(v, r * lo0, r * hi0, storage, symmetry));
      }
      EXPECT_EQ(got, best) << "trial " << trial;
      EXPECT_LE(got, group_error(v, lo0, hi0, storage, symmetry));
      clipped += hi < hi0 || lo > lo0;
    }
  }
  EXPECT_GT(clipped, 50) << "Gaussian groups of 32 at 4 bits usually gain from clipping";
}

TEST(MseClip, ClipsAnOutlierAndKeepsAnExactGrid) {
  // 31 values within +-1 and one at 7: clipping the outlier refines the rest.
  std::vector<float> v;
  for (int i = 0; i < 31; ++i) v.push_back(-1.0f + 2.0f * static_cast<float>(i) / 30.0f);
  v.push_back(7.0f);
  float lo = -1.0f, hi = 7.0f;
  mse_clip_range(v.data(), 32, 1, DType::kInt4, Symmetry::kSymmetric, &lo, &hi);
  EXPECT_LT(hi, 7.0f);
  EXPECT_LT(group_error(v, lo, hi, DType::kInt4, Symmetry::kSymmetric),
            0.95 * group_error(v, -1.0f, 7.0f, DType::kInt4, Symmetry::kSymmetric));
  // Values on the int4 grid of max|w| / 7 reconstruct exactly at r = 1: kept.
  std::vector<float> exact;
  for (int q = -7; q <= 7; ++q) exact.push_back(0.25f * static_cast<float>(q));
  lo = -1.75f;
  hi = 1.75f;
  mse_clip_range(exact.data(), static_cast<int64_t>(exact.size()), 1, DType::kInt4, Symmetry::kSymmetric, &lo, &hi);
  EXPECT_EQ(hi, 1.75f);
  EXPECT_EQ(lo, -1.75f);
}

// The weight-only exports: squared weight error with the search below that
// of plain min/max, and both formats choose the same scales.
TEST(MseClip, WeightOnlyExportsLowerTheWeightError) {
  std::mt19937 rng(23);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  Model m;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", {DType::kFloat32, true, {{1, ""}, {128, ""}}}});
  m.graph.outputs.push_back({"y", {DType::kFloat32, true, {{1, ""}, {16, ""}}}});
  Tensor w(DType::kFloat32, {128, 16});
  for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = normal(rng);
  m.graph.initializers["W"] = w;
  m.graph.nodes = {make_node("mm", "MatMul", {"x", "W"}, {"y"})};
  QuantizeOptions options;
  options.mode = QuantMode::kWeightOnly;
  options.group_size = 32;
  auto error = [&](const Model& q) {
    const Tensor& wq = q.graph.initializers.at("W/q");
    const Tensor& s = q.graph.initializers.at("W/scale");
    double e = 0;
    for (int64_t k = 0; k < 128; ++k) {
      for (int64_t n = 0; n < 16; ++n) {
        const double d =
            w.data<float>()[k * 16 + n] - wq.get_as_double(k * 16 + n) * s.data<float>()[(k / 32) * 16 + n];
        e += d * d;
      }
    }
    return e;
  };
  const Model clipped = quantize_weight_only(m, 4, options, nullptr);
  const Model ort = quantize_matmul_nbits(m, 4, options, nullptr);
  options.weight_clip_search = false;
  const Model plain = quantize_weight_only(m, 4, options, nullptr);
  EXPECT_LT(error(clipped), 0.9 * error(plain));
  const Tensor& qdq_scale = clipped.graph.initializers.at("W/scale");                 // [4 blocks, 16]
  const Tensor& ort_scale = ort.graph.initializers.at(ort.graph.nodes[0].inputs[2]);  // [16 * 4]
  for (int64_t n = 0; n < 16; ++n) {
    for (int64_t b = 0; b < 4; ++b)
      EXPECT_EQ(qdq_scale.data<float>()[b * 16 + n], ort_scale.data<float>()[n * 4 + b]) << n << "," << b;
  }
}

// Static W4A8 (--weight-bits 4): 4-bit per-channel weight params are each
// channel's MSE-clipped range, never worse than its min/max; 8-bit ones stay
// min/max.
TEST(MseClip, FourBitPerChannelWeightParamsClipEachChannel) {
  std::mt19937 rng(31);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t m = 8, k = 3 * 3 * 4;  // a Conv weight [8, 4, 3, 3], channels along axis 0
  Tensor w(DType::kFloat32, {m, 4, 3, 3});
  for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = normal(rng) * static_cast<float>(1 + i / k);
  const QuantParams p4 = weight_params(w, 0, DType::kInt4, Symmetry::kSymmetric);
  const QuantParams p8 = weight_params(w, 0, DType::kInt8, Symmetry::kSymmetric);
  ASSERT_EQ(p4.scale.size(), static_cast<size_t>(m));
  int clipped = 0;
  for (int64_t c = 0; c < m; ++c) {
    const std::vector<float> v(w.data<float>() + c * k, w.data<float>() + (c + 1) * k);
    float lo = 0, hi = 0;
    min_max(v, lo, hi);
    const float amax = std::max(-lo, hi);
    const auto ci = static_cast<size_t>(c);
    EXPECT_FLOAT_EQ(p8.scale[ci], amax / 127.0f);  // 8-bit: plain min/max
    EXPECT_LE(p4.scale[ci], amax / 7.0f * 1.0001f);
    clipped += p4.scale[ci] < amax / 7.0f * 0.999f ? 1 : 0;
    // The chosen scale reconstructs the channel at least as well as min/max.
    const double chosen = group_error(v, -7.0f * p4.scale[ci], 7.0f * p4.scale[ci], DType::kInt4, Symmetry::kSymmetric);
    EXPECT_LE(chosen, group_error(v, lo, hi, DType::kInt4, Symmetry::kSymmetric) * 1.0001) << c;
  }
  EXPECT_GT(clipped, 0);  // Gaussian channels of 36 values: clipping pays on some
}

}  // namespace
}  // namespace kvant
