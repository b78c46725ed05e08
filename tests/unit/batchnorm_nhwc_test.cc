// FP32 channels-last BatchNormalization (the layout pass's
// NhwcBatchNormalization twin, runtime/steps_norm2.cc) against the NCHW
// compiled step: the same a[c], b[c] and float expression, so the NHWC output
// transposed back is the NCHW step's output bit for bit, with and without a
// fused Relu / Clip, channel counts 1, 3, 17, 40, NaN, infinities and signed
// zeros in the input, 1 and 3 threads. Then a DenseNet-like Concat -> BN ->
// Relu -> Conv chain compiled: the BN runs NHWC (batchnorm_nhwc_f32+clamp),
// the group keeps one Transpose at each end, no fallback, within float
// rounding of the reference executor. And BNs between NCHW-only nodes stay
// NCHW: a BN takes its group's layout and does not vote for NHWC (as a twin
// it did, and put transposes around DenseNet's dynamic-quantized convs).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "nhwc_chain_check.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "runtime/steps_fp32.h"
#include "runtime/thread_pool.h"
#include "test_graphs.h"

namespace kvant {
namespace {

// [N, C, H, W] -> [N, H, W, C] (to_nhwc) or back.
Tensor permute(const Tensor& x, bool to_nhwc) {
  const Shape& s = x.shape();
  const int64_t n = s[0], c = to_nhwc ? s[1] : s[3], h = to_nhwc ? s[2] : s[1], w = to_nhwc ? s[3] : s[2];
  Tensor y(DType::kFloat32, to_nhwc ? Shape{n, h, w, c} : Shape{n, c, h, w});
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < c; ++k) {
      for (int64_t r = 0; r < h * w; ++r) {
        const int64_t nchw = (i * c + k) * h * w + r, nhwc = (i * h * w + r) * c + k;
        if (to_nhwc) {
          yp[nhwc] = xp[nchw];
        } else {
          yp[nchw] = xp[nhwc];
        }
      }
    }
  }
  return y;
}

Tensor run_step(Step& step, const Tensor& x, ThreadPool* pool) {
  const Tensor* in[] = {&x};
  std::vector<TensorSpec> specs;
  step.infer(in, specs);
  EXPECT_EQ(specs.size(), 1u);
  Tensor y(specs[0].dtype, specs[0].shape);
  Tensor* out[] = {&y};
  step.run(in, out, nullptr, pool);
  return y;
}

TEST(BatchNormNhwc, BitIdenticalToTheNchwStep) {
  std::mt19937 rng(11);
  ThreadPool three(3);
  const float inf = std::numeric_limits<float>::infinity();
  const FloatClamp none{}, relu{0.0f, inf}, clip{-1.0f, 6.0f};
  for (int64_t channels : {1, 3, 17, 40}) {
    for (const FloatClamp& clamp : {none, relu, clip}) {
      std::vector<float> a(static_cast<size_t>(channels)), b(a.size());
      std::uniform_real_distribution<float> dist(-3.0f, 3.0f);
      for (size_t c = 0; c < a.size(); ++c) {
        a[c] = dist(rng);
        b[c] = dist(rng);
      }
      Tensor x = uniform({2, channels, 5, 7}, rng, -4.0f, 4.0f);
      float* xp = x.data<float>();
      xp[0] = std::numeric_limits<float>::quiet_NaN();
      xp[3] = inf;
      xp[5] = -inf;
      xp[8] = -0.0f;
      xp[x.numel() - 1] = std::numeric_limits<float>::quiet_NaN();
      auto nchw = make_batchnorm_step(a, b, clamp, false);
      auto nhwc = make_batchnorm_step(a, b, clamp, true);
      EXPECT_EQ(nhwc->kernel(), clamp.active() ? "batchnorm_nhwc_f32+clamp" : "batchnorm_nhwc_f32");
      const Tensor want = run_step(*nchw, x, nullptr);
      const Tensor xn = permute(x, true);
      for (ThreadPool* pool : {static_cast<ThreadPool*>(nullptr), &three}) {
        const Tensor got = permute(run_step(*nhwc, xn, pool), false);
        ASSERT_EQ(got.shape(), want.shape());
        EXPECT_EQ(std::memcmp(got.raw(), want.raw(), static_cast<size_t>(want.numel()) * sizeof(float)), 0)
            << "channels " << channels << " clamp [" << clamp.lo << ", " << clamp.hi << "] threads " << (pool ? 3 : 1);
      }
    }
  }
}

TEST(BatchNormNhwc, WrongInputIsAClearError) {
  auto step = make_batchnorm_step({1.0f, 2.0f, 3.0f}, {0.0f, 0.0f, 0.0f}, FloatClamp{}, true);
  step->name = "bn";
  std::mt19937 rng(1);
  const Tensor wrong_c = uniform({1, 3, 4, 4}, rng, -1.0f, 1.0f);  // NCHW: last dim 4, not 3
  const Tensor* in[] = {&wrong_c};
  std::vector<TensorSpec> specs;
  try {
    step->infer(in, specs);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("NHWC [N, H, W, 3]"), std::string::npos) << e.what();
  }
  const Tensor rank3 = uniform({1, 4, 3}, rng, -1.0f, 1.0f);
  const Tensor* in3[] = {&rank3};
  EXPECT_THROW(step->infer(in3, specs), Error);
}

// DenseNet's dense layer: Concat -> BatchNormalization -> Relu -> Conv, the
// BN not foldable into a conv. Its twin keeps the whole chain NHWC.
TEST(BatchNormNhwc, LayoutTwinCompilesToTheNhwcStep) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {1, 5, 9, 11})});
  std::mt19937 rng(5);
  auto& init = m.graph.initializers;
  init["w0"] = uniform({7, 5, 3, 3}, rng, -0.5f, 0.5f);
  init["w1"] = uniform({10, 5, 1, 1}, rng, -0.5f, 0.5f);
  init["w2"] = uniform({6, 17, 3, 3}, rng, -0.5f, 0.5f);
  init["scale"] = uniform({17}, rng, 0.5f, 1.5f);
  init["bias"] = uniform({17}, rng, -0.5f, 0.5f);
  init["mean"] = uniform({17}, rng, -0.3f, 0.3f);
  init["var"] = uniform({17}, rng, 0.2f, 2.0f);
  Node c0 = make_node("c0", "Conv", {"x", "w0"}, {"a"});
  set_attr(c0, "pads", std::vector<int64_t>{1, 1, 1, 1});
  Node cat = make_node("cat", "Concat", {"a", "b"}, {"c"});
  set_attr(cat, "axis", int64_t{1});
  Node bn = make_node("bn", "BatchNormalization", {"c", "scale", "bias", "mean", "var"}, {"n"});
  Node c2 = make_node("c2", "Conv", {"r", "w2"}, {"y"});
  set_attr(c2, "pads", std::vector<int64_t>{1, 1, 1, 1});
  m.graph.nodes = {c0, make_node("c1", "Conv", {"x", "w1"}, {"b"}), cat,
                   bn, make_node("relu", "Relu", {"n"}, {"r"}),     c2};
  m.graph.outputs.push_back({"y", type_of(DType::kFloat32, {1, 6, 9, 11})});
  const Tensor x = uniform({1, 5, 9, 11}, rng, -1.0f, 1.0f);
  test::expect_fp32_nhwc_chain(m, "x", x, {"batchnorm_nhwc_f32+clamp"}, {"batchnorm_f32"});
}

// x -> Conv -> LRN -> l; l -> BN -> Relu -> LRN and l -> BN -> Relu -> LRN:
// every 4-D value meets NCHW-only LRNs, so nothing goes NHWC, no Transpose.
TEST(BatchNormNhwc, BetweenNchwOnlyNodesStaysNchw) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {1, 3, 6, 5})});
  std::mt19937 rng(8);
  auto& init = m.graph.initializers;
  init["w0"] = uniform({8, 3, 3, 3}, rng, -0.5f, 0.5f);
  init["scale"] = uniform({8}, rng, 0.5f, 1.5f);
  init["bias"] = uniform({8}, rng, -0.5f, 0.5f);
  init["mean"] = uniform({8}, rng, -0.3f, 0.3f);
  init["var"] = uniform({8}, rng, 0.2f, 2.0f);
  Node c0 = make_node("c0", "Conv", {"x", "w0"}, {"a"});
  set_attr(c0, "pads", std::vector<int64_t>{1, 1, 1, 1});
  const auto lrn = [](const std::string& name, const std::string& in, const std::string& out) {
    Node n = make_node(name, "LRN", {in}, {out});
    set_attr(n, "size", int64_t{3});
    return n;
  };
  m.graph.nodes = {c0, lrn("l0", "a", "l")};
  for (const std::string k : {"1", "2"}) {
    m.graph.nodes.push_back(
        make_node("bn" + k, "BatchNormalization", {"l", "scale", "bias", "mean", "var"}, {"n" + k}));
    m.graph.nodes.push_back(make_node("relu" + k, "Relu", {"n" + k}, {"r" + k}));
    m.graph.nodes.push_back(lrn("lrn" + k, "r" + k, "y" + k));
    m.graph.outputs.push_back({"y" + k, type_of(DType::kFloat32, {1, 8, 6, 5})});
  }
  auto bytes = serialize_onnx(m);
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  auto shaped = load_onnx_bytes(bytes->data(), bytes->size());
  ASSERT_TRUE(shaped.ok()) << shaped.status().message();
  const Tensor x = uniform({1, 3, 6, 5}, rng, -1.0f, 1.0f);
  CompiledModel compiled(*shaped, default_compile_options(1));
  const auto got = compiled.run({{"x", x}});
  const auto want = ReferenceExecutor(*shaped).run({{"x", x}});
  const std::string plan = compiled.describe_plan();
  EXPECT_EQ(plan.find(" transpose "), std::string::npos) << plan;
  EXPECT_EQ(plan.find("batchnorm_nhwc_f32"), std::string::npos) << plan;
  EXPECT_NE(plan.find("batchnorm_f32+clamp"), std::string::npos) << plan;
  for (const char* y : {"y1", "y2"}) {
    const Tensor& g = got.at(y);
    const Tensor& w = want.at(y);
    ASSERT_EQ(g.shape(), w.shape());
    for (int64_t i = 0; i < w.numel(); ++i) {
      ASSERT_NEAR(g.data<float>()[i], w.data<float>()[i], 1e-5f) << y << " element " << i;
    }
  }
}

}  // namespace
}  // namespace kvant
