// The compiled Conv1D, ConvTranspose and GRU steps (steps_fp32.h) against
// the reference operators, with 1 and 3 threads (step_compare.h). Their
// GEMMs sum in another order than the reference, so each test states the
// bound it allows and why.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "step_compare.h"
#include "test_graphs.h"

namespace kvant {
namespace {

using test::compare;
using test::one_graph;
using test::random_tensor;

// ---- Conv1D ----

// x [2, 6, 17] -> Conv (1-D) [-> Relu]: the 2-D sconv on [N, C, 1, L]. The
// GEMM sums the products in another order than the reference, so each output
// may differ by the float rounding of its sum: at most n * 2^-24 * sum |x w|
// (+ |bias|) for n terms; the bound comes from the reference run on |x|, |W|, |b|.
TEST(Fp32Steps, Conv1DRunsAsTheTwoDimensionalConv) {
  struct Case {
    int64_t k, stride, dilation, group;
    std::vector<int64_t> pads;
    std::string auto_pad;
    bool bias, relu;
  };
  const Case cases[] = {
      {3, 1, 1, 1, {0, 0}, "NOTSET", true, false},   // text_cnn
      {5, 1, 1, 1, {2, 2}, "NOTSET", true, true},    // kws_gru
      {3, 2, 1, 1, {1, 1}, "NOTSET", false, true},   //
      {3, 1, 2, 2, {3, 1}, "NOTSET", true, false},   // dilated, grouped, asymmetric pads
      {4, 3, 1, 1, {}, "SAME_UPPER", true, false},   //
      {2, 1, 1, 6, {0, 1}, "NOTSET", false, false},  // depthwise
  };
  const Shape xs = {2, 6, 17};
  for (const Case& c : cases) {
    const int64_t m_out = c.group == 6 ? 6 : 4;
    const Shape ws = {m_out, 6 / c.group, c.k};
    auto build = [&](bool abs_values) {
      Model m = one_graph(13);
      m.graph.inputs.push_back({"x", type_of(DType::kFloat32, xs)});
      Tensor w = random_tensor(ws, 31);
      Tensor b = random_tensor({m_out}, 32);
      if (abs_values) {
        for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = std::fabs(w.data<float>()[i]);
        for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = std::fabs(b.data<float>()[i]);
      }
      m.graph.initializers["w"] = w;
      std::vector<std::string> ins = {"x", "w"};
      if (c.bias) {
        m.graph.initializers["b"] = b;
        ins.push_back("b");
      }
      Node n = make_node("conv", "Conv", ins, {c.relu && !abs_values ? "t" : "y"});
      n.attributes["kernel_shape"] = ints_attr({c.k});
      n.attributes["strides"] = ints_attr({c.stride});
      n.attributes["dilations"] = ints_attr({c.dilation});
      n.attributes["group"] = int_attr(c.group);
      if (!c.pads.empty()) n.attributes["pads"] = ints_attr(c.pads);
      n.attributes["auto_pad"] = string_attr(c.auto_pad);
      m.graph.nodes.push_back(n);
      if (c.relu && !abs_values) m.graph.nodes.push_back(make_node("relu", "Relu", {"t"}, {"y"}));
      m.graph.outputs.push_back({"y", TypeInfo{}});
      return m;
    };
    const Tensor x = random_tensor(xs, 33);
    Tensor ax = x.clone();
    for (int64_t i = 0; i < ax.numel(); ++i) ax.data<float>()[i] = std::fabs(ax.data<float>()[i]);
    const Model abs_model = build(true);
    ReferenceExecutor bound_run(abs_model);
    const Tensor abs_sum = bound_run.run({{"x", ax}}).at("y");
    const double terms = static_cast<double>(6 / c.group * c.k + 1);
    auto check = [&](const Tensor& got, const Tensor& want, const std::string& what) {
      for (int64_t i = 0; i < got.numel(); ++i) {
        const double bound = terms * std::ldexp(abs_sum.data<float>()[i], -23) + 1e-30;
        ASSERT_LE(std::fabs(got.data<float>()[i] - want.data<float>()[i]), bound) << what << " element " << i;
      }
    };
    SCOPED_TRACE("k " + std::to_string(c.k) + " stride " + std::to_string(c.stride) + " group " +
                 std::to_string(c.group) + " " + c.auto_pad);
    const std::string plan = compare(build(false), {{"x", x}}, "sconv", check);
    EXPECT_NE(plan.find("view (unit dim added)"), std::string::npos) << plan;
  }
}

// ---- Conv -> SiLU ----

// x [1, 24, 13, 17] -> Conv -> SiLU (x * Sigmoid(x)), for a depthwise 3x3,
// a depthwise 5x5/2, a 1x1 and a 3x3: one conv step with the SiLU in its
// store ("+silu" in the plan). It must equal, bit for bit, the same graph
// with the Conv's output also a model output, where the conv and the silu
// steps run apart; and the reference within the vmath sigmoid's error (the
// conv's own rounding as in Conv1DRunsAsTheTwoDimensionalConv is far below
// 1e-4 here: K <= 216 terms of |x w| <= 9). A planned run allocates nothing.
TEST(Fp32Steps, ConvThenSiluFusesBitIdenticalToTheSteps) {
  struct Case {
    int64_t m, k, stride, group;
  };
  const Case cases[] = {{24, 3, 1, 24}, {24, 5, 2, 24}, {16, 1, 1, 1}, {8, 3, 1, 1}};
  const Shape xs = {1, 24, 13, 17};
  for (const Case& c : cases) {
    auto build = [&](bool expose_conv) {
      Model m = one_graph(13);
      m.graph.inputs.push_back({"x", type_of(DType::kFloat32, xs)});
      m.graph.initializers["w"] = random_tensor({c.m, 24 / c.group, c.k, c.k}, 41);
      m.graph.initializers["b"] = random_tensor({c.m}, 42);
      Node n = make_node("conv", "Conv", {"x", "w", "b"}, {"c"});
      n.attributes["kernel_shape"] = ints_attr({c.k, c.k});
      n.attributes["strides"] = ints_attr({c.stride, c.stride});
      n.attributes["pads"] = ints_attr({c.k / 2, c.k / 2, c.k / 2, c.k / 2});
      n.attributes["group"] = int_attr(c.group);
      m.graph.nodes.push_back(n);
      m.graph.nodes.push_back(make_node("sig", "Sigmoid", {"c"}, {"s"}));
      m.graph.nodes.push_back(make_node("mul", "Mul", {"s", "c"}, {"y"}));
      m.graph.outputs.push_back({"y", TypeInfo{}});
      if (expose_conv) m.graph.outputs.push_back({"c", TypeInfo{}});
      return m;
    };
    SCOPED_TRACE("m " + std::to_string(c.m) + " k " + std::to_string(c.k) + " stride " + std::to_string(c.stride) +
                 " group " + std::to_string(c.group));
    const Tensor x = random_tensor(xs, 43, -1.0f, 1.0f);
    auto near = [&](const Tensor& got, const Tensor& want, const std::string& what) {
      for (int64_t i = 0; i < got.numel(); ++i) {
        const double w = want.data<float>()[i];
        ASSERT_LE(std::fabs(got.data<float>()[i] - w), 1e-4 * (1.0 + std::fabs(w))) << what << " element " << i;
      }
    };
    const std::string plan = compare(build(false), {{"x", x}}, "+silu", near);
    EXPECT_EQ(plan.find("silu_f32"), std::string::npos) << plan;
    for (int threads : {1, 3}) {
      CompiledModel fused(build(false), default_compile_options(threads));
      CompiledModel apart(build(true), default_compile_options(threads));
      const Tensor want = apart.run({{"x", x}}).at("y");
      EXPECT_NE(apart.describe_plan().find("silu_f32"), std::string::npos) << apart.describe_plan();
      test::expect_bytes_equal(fused.run({{"x", x}}).at("y"), want, "threads " + std::to_string(threads));
    }
    test::expect_planned_run_allocates_nothing(build(false), xs);
  }
}

// ---- ConvTranspose ----

// x [2, 4, 5, 6] -> ConvTranspose: a GEMM then a scatter. The sums differ in
// order from the reference (the GEMM's FMA chain over channels, then the
// overlapping taps), so each output is within n * 2^-23 * sum |x w| (+ |b|)
// of it, n the number of terms; the bound is the reference run on |x|, |W|, |b|.
TEST(Fp32Steps, ConvTransposeMatchesTheReferenceToItsSumsRounding) {
  struct Case {
    int64_t kh, kw, group;
    std::vector<int64_t> strides, pads, dilations, output_padding, output_shape;
    std::string auto_pad;
    bool bias;
  };
  const Case cases[] = {
      {2, 2, 1, {2, 2}, {0, 0, 0, 0}, {1, 1}, {0, 0}, {}, "NOTSET", true},       // unet's upsampling
      {3, 3, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, {1, 1}, {}, "NOTSET", true},       // overlapping taps
      {3, 2, 2, {1, 2}, {0, 1, 2, 0}, {2, 1}, {0, 1}, {}, "NOTSET", false},      // grouped, dilated
      {3, 3, 1, {2, 2}, {0, 0, 0, 0}, {1, 1}, {0, 0}, {}, "SAME_UPPER", true},   //
      {3, 3, 1, {2, 3}, {0, 0, 0, 0}, {1, 1}, {0, 0}, {9, 20}, "NOTSET", true},  // output_shape
  };
  const Shape xs = {2, 4, 5, 6};
  for (const Case& c : cases) {
    const int64_t out_per_group = 3;
    const Shape ws = {4, out_per_group, c.kh, c.kw};
    auto build = [&](bool abs_values) {
      Model m = one_graph(13);
      m.graph.inputs.push_back({"x", type_of(DType::kFloat32, xs)});
      Tensor w = random_tensor(ws, 41);
      Tensor b = random_tensor({out_per_group * c.group}, 42);
      if (abs_values) {
        for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = std::fabs(w.data<float>()[i]);
        for (int64_t i = 0; i < b.numel(); ++i) b.data<float>()[i] = std::fabs(b.data<float>()[i]);
      }
      m.graph.initializers["w"] = w;
      std::vector<std::string> ins = {"x", "w"};
      if (c.bias) {
        m.graph.initializers["b"] = b;
        ins.push_back("b");
      }
      Node n = make_node("convt", "ConvTranspose", ins, {"y"});
      n.attributes["kernel_shape"] = ints_attr({c.kh, c.kw});
      n.attributes["strides"] = ints_attr(c.strides);
      n.attributes["pads"] = ints_attr(c.pads);
      n.attributes["dilations"] = ints_attr(c.dilations);
      n.attributes["output_padding"] = ints_attr(c.output_padding);
      if (!c.output_shape.empty()) n.attributes["output_shape"] = ints_attr(c.output_shape);
      n.attributes["group"] = int_attr(c.group);
      n.attributes["auto_pad"] = string_attr(c.auto_pad);
      m.graph.nodes.push_back(n);
      m.graph.outputs.push_back({"y", TypeInfo{}});
      return m;
    };
    const Tensor x = random_tensor(xs, 43);
    Tensor ax = x.clone();
    for (int64_t i = 0; i < ax.numel(); ++i) ax.data<float>()[i] = std::fabs(ax.data<float>()[i]);
    const Model abs_model = build(true);
    ReferenceExecutor bound_run(abs_model);
    const Tensor abs_sum = bound_run.run({{"x", ax}}).at("y");
    const double terms = static_cast<double>(4 / c.group * c.kh * c.kw + 1);
    auto check = [&](const Tensor& got, const Tensor& want, const std::string& what) {
      for (int64_t i = 0; i < got.numel(); ++i) {
        const double bound = terms * std::ldexp(abs_sum.data<float>()[i], -23) + 1e-30;
        ASSERT_LE(std::fabs(got.data<float>()[i] - want.data<float>()[i]), bound) << what << " element " << i;
      }
    };
    SCOPED_TRACE("kernel " + std::to_string(c.kh) + "x" + std::to_string(c.kw) + " group " + std::to_string(c.group) +
                 " " + c.auto_pad);
    compare(build(false), {{"x", x}}, "conv_transpose_gemm", check);
  }
}

// ---- GRU ----

// X [7, 2, 5] -> GRU (hidden 6): every direction, both linear_before_reset
// forms, with and without bias and initial_h. The step's GEMMs sum in
// another order and its sigmoid/tanh are vmath's (relative error <= 5e-7,
// kernels/vmath.h); the state stays in (-1, 1), so 2e-5 absolute after 7
// steps is a tight bound (a wrong gate or bias is off by 1e-2 or more).
TEST(Fp32Steps, GruMatchesTheReference) {
  const int64_t t = 7, batch = 2, in = 5, hidden = 6;
  for (const char* direction : {"forward", "reverse", "bidirectional"}) {
    for (int lbr : {0, 1}) {
      for (bool extras : {false, true}) {
        const int64_t dirs = std::string(direction) == "bidirectional" ? 2 : 1;
        Model m = one_graph(14);
        m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {t, batch, in})});
        m.graph.initializers["W"] = random_tensor({dirs, 3 * hidden, in}, 61, -0.6f, 0.6f);
        m.graph.initializers["R"] = random_tensor({dirs, 3 * hidden, hidden}, 62, -0.6f, 0.6f);
        std::vector<std::string> ins = {"x", "W", "R"};
        std::map<std::string, Tensor> feeds = {{"x", random_tensor({t, batch, in}, 63)}};
        if (extras) {
          m.graph.initializers["B"] = random_tensor({dirs, 6 * hidden}, 64, -0.5f, 0.5f);
          m.graph.inputs.push_back({"h0", type_of(DType::kFloat32, {dirs, batch, hidden})});
          feeds["h0"] = random_tensor({dirs, batch, hidden}, 65, -0.9f, 0.9f);
          ins.insert(ins.end(), {"B", "", "h0"});
        }
        Node n = make_node("gru", "GRU", ins, {"y", "y_h"});
        n.attributes["hidden_size"] = int_attr(hidden);
        n.attributes["direction"] = string_attr(direction);
        n.attributes["linear_before_reset"] = int_attr(lbr);
        m.graph.nodes.push_back(n);
        m.graph.outputs.push_back({"y", TypeInfo{}});
        m.graph.outputs.push_back({"y_h", TypeInfo{}});
        auto check = [](const Tensor& got, const Tensor& want, const std::string& what) {
          for (int64_t i = 0; i < got.numel(); ++i) {
            ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 2e-5f) << what << " element " << i;
          }
        };
        SCOPED_TRACE(std::string(direction) + " linear_before_reset " + std::to_string(lbr) +
                     (extras ? " bias, initial_h" : ""));
        compare(m, feeds, "gru_f32", check);
      }
    }
  }
}

}  // namespace
}  // namespace kvant
