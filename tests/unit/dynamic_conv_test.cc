// The compiled dynamic convolution (steps_dynconv.cc) against the reference
// graph it replaces, DynamicQuantizeLinear -> ConvInteger -> Cast -> Mul
// [-> Add] [-> Relu|Clip], bit for bit: groups, depthwise (the exact float
// path), stride, padding, dilation, 1x1, batch > 1, weight zero points other
// than 128 (per tensor and per channel), int8 weights, all-zero and one-signed
// inputs, threads 1 and 3, and the reference ISA level. Also weight-only
// Conv (DQ(int4/int8 W) -> Conv) compiled into sconv, and whole dynamic /
// weight-only CNNs with no reference fallback.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "onnx/reader.h"
#include "quant/quantize.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

const std::string kRoot = KVANT_SOURCE_DIR;

Tensor random_floats(const Shape& shape, uint32_t seed, float mean = 0.0f, float spread = 1.0f) {
  Tensor t(DType::kFloat32, shape);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(mean, spread);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

struct ConvCase {
  const char* what;
  int n, c, h, w, m, kh, kw, stride, pad, dil, group;
  // 0: uint8 zp 128; 1: uint8 zp 90; 2: uint8 per-channel zp; 3: int8 zp 0; 4: int8 per-channel zp;
  // 5: int8 mostly 127 with zp -128 (w - w_zp mostly 255: large sums)
  int weights = 0;
  int bias = 1;         // 0: none; 1: [M, 1, 1]; 2: a scalar; 3: [1, M, 1, 1]
  int act = 0;          // 0: none; 1: Relu; 2: Clip(-1, 2)
  bool conv1d = false;  // x [n, c, w], W [m, c/group, kw] (h and kh are 1)
};

// x -> DynamicQuantizeLinear -> ConvInteger(W, x_zp, w_zp) -> Cast -> Mul(x_scale * w_scale) [-> Add B] [-> act]
// appended to m, reading `x`; names start with `p`. Returns the output's name.
std::string add_dynamic_conv(Model& m, const ConvCase& k, const std::string& x, const std::string& p, uint32_t seed) {
  auto& init = m.graph.initializers;
  const bool u8 = k.weights <= 2;
  const Shape w_shape = k.conv1d ? Shape{k.m, k.c / k.group, k.kw} : Shape{k.m, k.c / k.group, k.kh, k.kw};
  Tensor w(u8 ? DType::kUInt8 : DType::kInt8, w_shape);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> value(0, 255);
  for (int64_t i = 0; i < w.numel(); ++i) {
    int v = i % 17 == 0 ? 0 : (i % 19 == 0 ? 255 : value(rng));  // the extremes too
    if (k.weights == 5) v = i % 23 == 0 ? value(rng) : 255;
    if (u8) {
      w.data<uint8_t>()[i] = static_cast<uint8_t>(v);
    } else {
      w.data<int8_t>()[i] = static_cast<int8_t>(v - 128);
    }
  }
  init[p + "w"] = w;
  std::vector<std::string> conv_in = {p + "xq", p + "w", p + "xz"};
  if (k.weights != 3) {
    const bool per_channel = k.weights == 2 || k.weights == 4;
    Tensor z(u8 ? DType::kUInt8 : DType::kInt8, per_channel ? Shape{k.m} : Shape{});
    for (int64_t j = 0; j < z.numel(); ++j) {
      const int v = k.weights == 0   ? 128
                    : k.weights == 1 ? 90
                    : k.weights == 5 ? 0
                                     : 100 + static_cast<int>(j * 7 % 60);
      if (u8) {
        z.data<uint8_t>()[j] = static_cast<uint8_t>(v);
      } else {
        z.data<int8_t>()[j] = static_cast<int8_t>(v - 128);
      }
    }
    init[p + "wz"] = z;
    conv_in.push_back(p + "wz");
  }
  Tensor ws(DType::kFloat32, k.conv1d ? Shape{k.m, 1} : Shape{k.m, 1, 1});
  for (int j = 0; j < k.m; ++j) ws.data<float>()[j] = 0.001f + 0.0003f * static_cast<float>((j * 37) % 11);
  init[p + "ws"] = ws;
  Node dq = make_node(p + "dql", "DynamicQuantizeLinear", {x}, {p + "xq", p + "xs", p + "xz"});
  Node conv = make_node(p + "conv", "ConvInteger", conv_in, {p + "acc"});
  if (k.conv1d) {
    set_attr(conv, "kernel_shape", std::vector<int64_t>{k.kw});
    set_attr(conv, "strides", std::vector<int64_t>{k.stride});
    set_attr(conv, "pads", std::vector<int64_t>{k.pad, k.pad + 1});  // asymmetric: the end gets one more
    set_attr(conv, "dilations", std::vector<int64_t>{k.dil});
  } else {
    set_attr(conv, "kernel_shape", std::vector<int64_t>{k.kh, k.kw});
    set_attr(conv, "strides", std::vector<int64_t>{k.stride, k.stride});
    set_attr(conv, "pads", std::vector<int64_t>{k.pad, k.pad, k.pad, k.pad});
    set_attr(conv, "dilations", std::vector<int64_t>{k.dil, k.dil});
  }
  set_attr(conv, "group", int64_t{k.group});
  Node cast = make_node(p + "cast", "Cast", {p + "acc"}, {p + "accf"});
  set_attr(cast, "to", int64_t{1});
  for (Node n : {dq, conv, cast, make_node(p + "scale", "Mul", {p + "xs", p + "ws"}, {p + "sc"}),
                 make_node(p + "mul", "Mul", {p + "accf", p + "sc"}, {p + "yv"})}) {
    m.graph.nodes.push_back(n);
  }
  std::string tail = p + "yv";
  if (k.bias != 0) {
    Shape b_shape = k.bias == 1 ? Shape{k.m, 1, 1} : (k.bias == 2 ? Shape{} : Shape{1, k.m, 1, 1});
    if (k.conv1d && k.bias != 2) b_shape.pop_back();  // [M, 1] / [1, M, 1]
    init[p + "b"] = random_floats(b_shape, seed + 1);
    m.graph.nodes.push_back(make_node(p + "add", "Add", {p + "b", tail}, {p + "yb"}));
    tail = p + "yb";
  }
  if (k.act == 1) {
    m.graph.nodes.push_back(make_node(p + "relu", "Relu", {tail}, {p + "ya"}));
    tail = p + "ya";
  } else if (k.act == 2) {
    init[p + "lo"] = Tensor::scalar<float>(-1.0f);
    init[p + "hi"] = Tensor::scalar<float>(2.0f);
    m.graph.nodes.push_back(make_node(p + "clip", "Clip", {tail, p + "lo", p + "hi"}, {p + "ya"}));
    tail = p + "ya";
  }
  return tail;
}

Model model_with_x(const Shape& shape) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
  return m;
}

void add_output(Model& m, const std::string& name) {
  TypeInfo out;
  out.dtype = DType::kFloat32;
  m.graph.outputs.push_back({name, out});
}

// x -> DynamicQuantizeLinear -> ConvInteger(W, x_zp, w_zp) -> Cast -> Mul(x_scale * w_scale) [-> Add B] [-> act]
Model dynamic_conv_model(const ConvCase& k, uint32_t seed) {
  Model m = model_with_x({k.n, k.c, k.h, k.w});
  add_output(m, add_dynamic_conv(m, k, "x", "", seed));
  return m;
}

// Compiled with `options` vs the reference: the same bytes; with want_fused,
// the plan must be one dynamic step and no fallback. Returns the first step's kernel.
std::string expect_bit_identical(const Model& model, const Tensor& x, const CompileOptions& options,
                                 const std::string& what, bool want_fused = true) {
  const std::string out = model.graph.outputs.at(0).name;
  ReferenceExecutor reference(model);
  const Tensor want = reference.run({{"x", x}}).at(out);
  CompiledModel compiled(model, options);
  // Planned and run on other data first (another scale and zero point).
  compiled.run({{"x", random_floats(x.shape(), 77, -0.5f, 3.0f)}});
  const Tensor got = compiled.run({{"x", x}}).at(out);
  EXPECT_EQ(got.shape(), want.shape()) << what;
  EXPECT_EQ(got.dtype(), DType::kFloat32) << what;
  if (got.shape() != want.shape() || got.dtype() != DType::kFloat32) return "";
  int64_t differ = 0, first = -1;
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (std::memcmp(got.data<float>() + i, want.data<float>() + i, sizeof(float)) != 0) {
      if (first < 0) first = i;
      ++differ;
    }
  }
  EXPECT_EQ(differ, 0) << what << ": first at " << first << ": " << (first >= 0 ? got.data<float>()[first] : 0.0f)
                       << " vs " << (first >= 0 ? want.data<float>()[first] : 0.0f) << "\n"
                       << compiled.describe_plan();
  const std::string kernel = compiled.steps().empty() ? "" : compiled.steps()[0]->kernel();
  if (!want_fused) return kernel;
  EXPECT_EQ(compiled.stats().fallback_steps, 0) << what << "\n" << compiled.describe_plan();
  EXPECT_EQ(compiled.steps().size(), 1u) << what << "\n" << compiled.describe_plan();
  EXPECT_EQ(kernel.rfind("dynamic_", 0), 0u) << kernel;
  return kernel;
}

CompileOptions options_for(int threads, bool ref) {
  CompileOptions o = default_compile_options(threads);
  if (ref) o.isa = Isa::kRef;
  return o;
}

const ConvCase kCases[] = {
    {"3x3 pad 1", 1, 8, 9, 11, 16, 3, 3, 1, 1, 1, 1},
    {"7x7 stride 2 pad 3, 3 channels, Relu", 1, 3, 20, 17, 8, 7, 7, 2, 3, 1, 1, 0, 1, 1},
    {"1x1 (direct), batch 3", 3, 16, 6, 5, 24, 1, 1, 1, 0, 1, 1},
    {"1x1 stride 2, no bias", 2, 16, 9, 9, 8, 1, 1, 2, 0, 1, 1, 0, 0},
    {"dilation 2, Clip", 1, 6, 12, 12, 10, 3, 3, 1, 2, 2, 1, 0, 1, 2},
    {"groups 2", 2, 16, 7, 9, 12, 3, 3, 1, 1, 1, 2},
    {"depthwise 3x3 (float path)", 2, 12, 10, 9, 12, 3, 3, 1, 1, 1, 12, 0, 1, 2},
    {"depthwise 5x5 stride 2", 1, 8, 13, 11, 8, 5, 5, 2, 2, 1, 8, 0, 1, 1},
    {"depthwise x2 channels", 1, 4, 8, 8, 8, 3, 3, 1, 1, 1, 4},
    {"uint8 weights, zero point 90", 1, 8, 8, 7, 16, 3, 3, 1, 1, 1, 1, 1},
    {"uint8 weights, zero point per channel", 2, 8, 8, 7, 16, 3, 3, 2, 1, 1, 1, 2},
    {"depthwise, zero point 90", 1, 8, 8, 7, 8, 3, 3, 1, 1, 1, 8, 1, 1, 1},
    {"int8 weights, no zero point", 1, 8, 8, 7, 16, 3, 3, 1, 1, 1, 1, 3, 3},
    {"int8 weights, zero point per channel", 1, 8, 8, 7, 16, 3, 3, 1, 1, 1, 1, 4, 2},
    {"wide K (576)", 1, 64, 6, 6, 16, 3, 3, 1, 1, 1, 1},
    // 289 taps of |w - w_zp| ~ 255: over the float path's 2^24 bound, so int16 / GEMM even when strided.
    {"depthwise 17x17 stride 2, large sums", 1, 4, 20, 20, 4, 17, 17, 2, 8, 1, 4, 5, 1},
};

TEST(DynamicConv, MatchesTheReferenceGraphBitForBit) {
  for (const ConvCase& k : kCases) {
    const Model model = dynamic_conv_model(k, 11);
    const Tensor x = random_floats({k.n, k.c, k.h, k.w}, 5, 0.3f, 1.5f);
    for (int threads : {1, 3}) {
      for (bool ref : {false, true}) {
        const CompileOptions options = options_for(threads, ref);
        const std::string kernel = expect_bit_identical(
            model, x, options, std::string(k.what) + " threads " + std::to_string(threads) + (ref ? " isa ref" : ""));
        // The path steps_dynconv.cc documents: depthwise on the int16 kernel on x86 (stride 1), the
        // exact float sums when they fit for other depthwise and <= 4 input channels per group.
        const bool large_sums = k.weights == 5;
        const bool depthwise = k.group == k.c && k.group == k.m, narrow = !depthwise && k.c / k.group <= 4;
        std::string want = "dynamic_qconv_";  // the GEMM
        if (depthwise && !large_sums && (options.isa == Isa::kRef || k.stride != 1)) {
          want = "dynamic_exact_f32";
        } else if (depthwise && options.isa != Isa::kRef) {
          want = "dynamic_qconv_depthwise";
        } else if (narrow) {
          want = "dynamic_exact_f32";
        }
        EXPECT_EQ(kernel.rfind(want, 0), 0u) << k.what << ": " << kernel;
      }
    }
  }
}

// Conv1D (x [N, C, L], W [M, C/group, K]): the 2-D step on [N, C, 1, L]
// between two views, bit for bit with the reference graph on every path.
TEST(DynamicConv, Conv1DMatchesTheReferenceGraphBitForBit) {
  // what, n, c, h, w, m, kh, kw, stride, pad, dil, group, weights, bias, act, conv1d
  const ConvCase cases[] = {
      {"k3 pad 1 (text_cnn)", 2, 16, 1, 23, 24, 1, 3, 1, 1, 1, 1, 0, 1, 1, true},
      {"k5 stride 2, no bias", 1, 8, 1, 31, 8, 1, 5, 2, 2, 1, 1, 0, 0, 0, true},
      {"dilation 2, Clip, bias [1, M, 1]", 1, 6, 1, 19, 10, 1, 3, 1, 2, 2, 1, 1, 3, 2, true},
      {"groups 2, per-channel zero point", 2, 16, 1, 13, 12, 1, 3, 1, 1, 1, 2, 2, 2, 0, true},
      {"depthwise k7", 1, 12, 1, 40, 12, 1, 7, 1, 3, 1, 12, 0, 1, 1, true},
      {"depthwise k3 stride 2", 1, 8, 1, 17, 8, 1, 3, 2, 1, 1, 8, 4, 1, 0, true},
      {"3 input channels, int8 weights", 1, 3, 1, 50, 16, 1, 4, 1, 0, 1, 1, 3, 1, 1, true},
      {"k1, batch 3", 3, 20, 1, 9, 7, 1, 1, 1, 0, 1, 1, 0, 1, 0, true},
  };
  for (const ConvCase& k : cases) {
    Model model = model_with_x({k.n, k.c, k.w});
    add_output(model, add_dynamic_conv(model, k, "x", "", 11));
    const Tensor x = random_floats({k.n, k.c, k.w}, 5, 0.3f, 1.5f);
    for (int threads : {1, 3}) {
      for (bool ref : {false, true}) {
        const std::string what = std::string(k.what) + " threads " + std::to_string(threads) + (ref ? " isa ref" : "");
        expect_bit_identical(model, x, options_for(threads, ref), what, false);
        CompiledModel compiled(model, options_for(threads, ref));
        compiled.run({{"x", x}});
        EXPECT_EQ(compiled.stats().fallback_steps, 0) << what << "\n" << compiled.describe_plan();
        int dynamic = 0;
        for (const auto& step : compiled.steps()) dynamic += step->kernel().rfind("dynamic_", 0) == 0 ? 1 : 0;
        EXPECT_EQ(dynamic, 1) << what << "\n" << compiled.describe_plan();
        EXPECT_EQ(compiled.steps().size(), 3u) << what << ": view, conv, view\n" << compiled.describe_plan();
      }
    }
  }
}

// Two 1-D dynamic convs in a chain (kws_gru's): the second reads the range
// the first measured, through the views, bit for bit with the reference.
TEST(DynamicConv, Conv1DChainPassesTheRangeOn) {
  Model m = model_with_x({1, 8, 30});
  const ConvCase a = {"k3", 1, 8, 1, 30, 16, 1, 3, 1, 1, 1, 1, 0, 1, 1, true};
  const ConvCase b = {"k5 stride 2", 1, 16, 1, 31, 12, 1, 5, 2, 2, 1, 1, 0, 1, 1, true};
  add_output(m, add_dynamic_conv(m, b, add_dynamic_conv(m, a, "x", "a_", 1), "b_", 2));
  for (int threads : {1, 3}) {
    for (bool ref : {false, true}) {
      const std::string what = "1-D chain threads " + std::to_string(threads) + (ref ? " isa ref" : "");
      const Tensor x = random_floats({1, 8, 30}, 23, 0.2f, 2.0f);
      expect_bit_identical(m, x, options_for(threads, ref), what, false);
      CompiledModel compiled(m, options_for(threads, ref));
      compiled.run({{"x", x}});
      EXPECT_EQ(compiled.stats().fallback_steps, 0) << what << "\n" << compiled.describe_plan();
      int dynamic = 0, linked = 0;
      for (const auto& step : compiled.steps()) {
        if (step->kernel().rfind("dynamic_", 0) != 0) continue;
        ++dynamic;
        linked += step->inputs.size() == 2 ? 1 : 0;
      }
      EXPECT_EQ(dynamic, 2) << what << "\n" << compiled.describe_plan();
      EXPECT_EQ(linked, 1) << what << ": b reads a's range\n" << compiled.describe_plan();
    }
  }
}

TEST(DynamicConv, ZeroAndOneSignedInputs) {
  const ConvCase k = {"3x3", 1, 4, 6, 6, 8, 3, 3, 1, 1, 1, 1};
  const ConvCase dw = {"depthwise", 1, 4, 6, 6, 4, 3, 3, 1, 1, 1, 4};
  for (const ConvCase& c : {k, dw}) {
    const Model model = dynamic_conv_model(c, 3);
    Tensor zero(DType::kFloat32, {1, 4, 6, 6});
    std::fill(zero.data<float>(), zero.data<float>() + zero.numel(), 0.0f);
    expect_bit_identical(model, zero, options_for(1, false), std::string(c.what) + " all zero (scale 0)");
    expect_bit_identical(model, random_floats({1, 4, 6, 6}, 8, 5.0f, 1.0f), options_for(1, false),
                         std::string(c.what) + " positive (zero point 0)");
    expect_bit_identical(model, random_floats({1, 4, 6, 6}, 9, -5.0f, 1.0f), options_for(1, false),
                         std::string(c.what) + " negative (zero point 255)");
  }
}

// Dynamic convs in a chain: a step whose x another dynamic conv writes reads
// the range that step measured (its second input) instead of its own pass
// over x, on every path, with two readers of one range and one x that an Add
// writes (its own pass); bit for bit with the reference graph.
TEST(DynamicConv, ChainsPassTheRangeOnBitForBit) {
  Model m = model_with_x({2, 8, 12, 12});
  const ConvCase a = {"3x3 gemm", 2, 8, 12, 12, 16, 3, 3, 1, 1, 1, 1, 0, 1, 1};
  const ConvCase b = {"depthwise", 2, 16, 12, 12, 16, 3, 3, 1, 1, 1, 16, 0, 1, 2};
  const ConvCase c = {"depthwise stride 2", 2, 16, 12, 12, 16, 3, 3, 2, 1, 1, 16, 1, 1, 0};
  const ConvCase d = {"1x1", 2, 16, 6, 6, 8, 1, 1, 1, 0, 1, 1, 0, 0, 0};
  const ConvCase e = {"3x3 groups 2 (4 channels each)", 2, 8, 6, 6, 4, 3, 3, 1, 1, 1, 2, 0, 1, 0};
  const std::string ya = add_dynamic_conv(m, a, "x", "a_", 1);
  const std::string yb = add_dynamic_conv(m, b, ya, "b_", 2);
  const std::string yc = add_dynamic_conv(m, c, yb, "c_", 3);
  const std::string yd = add_dynamic_conv(m, d, yc, "d_", 4);
  const std::string ys = add_dynamic_conv(m, d, yc, "s_", 5);  // a second reader of c's output
  m.graph.nodes.push_back(make_node("sum", "Add", {yd, ys}, {"sum"}));
  add_output(m, add_dynamic_conv(m, e, "sum", "e_", 6));
  for (int threads : {1, 3}) {
    for (bool ref : {false, true}) {
      const std::string what = "chain threads " + std::to_string(threads) + (ref ? " isa ref" : "");
      const Tensor x = random_floats({2, 8, 12, 12}, 21, 0.2f, 2.0f);
      expect_bit_identical(m, x, options_for(threads, ref), what, false);
      CompiledModel compiled(m, options_for(threads, ref));
      compiled.run({{"x", x}});
      int dynamic = 0, linked = 0;
      for (const auto& step : compiled.steps()) {
        if (step->kernel().rfind("dynamic_", 0) != 0) continue;
        ++dynamic;
        linked += step->inputs.size() == 2 ? 1 : 0;
      }
      EXPECT_EQ(dynamic, 6) << what << "\n" << compiled.describe_plan();
      // The Add of two dynamic convs' float outputs (Cast to float, then
      // Mul) is a float step, not a reference fallback.
      EXPECT_EQ(compiled.stats().fallback_steps, 0) << what << "\n" << compiled.describe_plan();
      EXPECT_EQ(linked, 4) << what << ": b, c, d and s read their producer's range\n" << compiled.describe_plan();
    }
  }
  // A NaN that the producer writes is reported by the consumer, as the reference's DynamicQuantizeLinear does.
  Model nan = model_with_x({1, 4, 5, 5});
  const ConvCase first = {"3x3", 1, 4, 5, 5, 4, 3, 3, 1, 1, 1, 1, 0, 1, 0};
  const std::string y1 = add_dynamic_conv(nan, first, "x", "n1_", 7);
  nan.graph.initializers["n1_b"].data<float>()[2] = std::numeric_limits<float>::quiet_NaN();
  add_output(nan, add_dynamic_conv(nan, first, y1, "n2_", 8));
  CompiledModel compiled(nan, options_for(1, false));
  EXPECT_THROW(compiled.run({{"x", random_floats({1, 4, 5, 5}, 3)}}), Error);
  EXPECT_THROW(ReferenceExecutor(nan).run({{"x", random_floats({1, 4, 5, 5}, 3)}}), Error);
}

// One DynamicQuantizeLinear read by two ConvIntegers (as ONNX Runtime's
// quantizer shares it): each conv step quantizes x itself, and the
// DynamicQuantizeLinear goes unless something else reads it (here: x_scale
// as a model output).
TEST(DynamicConv, SharedDynamicQuantizeLinear) {
  for (bool scale_is_output : {false, true}) {
    Model m = model_with_x({2, 8, 9, 9});
    const ConvCase a = {"3x3", 2, 8, 9, 9, 16, 3, 3, 1, 1, 1, 1, 0, 1, 1};
    const ConvCase b = {"1x1 stride 2", 2, 8, 9, 9, 4, 1, 1, 2, 0, 1, 1, 1, 3, 0};
    add_output(m, add_dynamic_conv(m, a, "x", "a_", 1));
    add_output(m, add_dynamic_conv(m, b, "x", "b_", 2));
    std::vector<Node> nodes;
    for (Node& n : m.graph.nodes) {
      if (n.name == "b_dql") continue;  // b reads a's DynamicQuantizeLinear
      for (auto& in : n.inputs) {
        if (in == "b_xq" || in == "b_xs" || in == "b_xz") in = "a_" + in.substr(2);
      }
      nodes.push_back(n);
    }
    m.graph.nodes = nodes;
    if (scale_is_output) add_output(m, "a_xs");
    const Tensor x = random_floats({2, 8, 9, 9}, 4, 0.1f, 1.0f);
    ReferenceExecutor reference(m);
    const auto want = reference.run({{"x", x}});
    for (int threads : {1, 3}) {
      CompiledModel compiled(m, options_for(threads, false));
      const auto got = compiled.run({{"x", x}});
      for (const auto& out : m.graph.outputs) {
        const Tensor& w = want.at(out.name);
        const Tensor& g = got.at(out.name);
        ASSERT_EQ(g.shape(), w.shape()) << out.name;
        EXPECT_EQ(std::memcmp(g.raw(), w.raw(), w.nbytes()), 0) << out.name << " threads " << threads;
      }
      int dynamic = 0;
      for (const auto& step : compiled.steps()) dynamic += step->kernel().rfind("dynamic_", 0) == 0 ? 1 : 0;
      EXPECT_EQ(dynamic, 2) << compiled.describe_plan();
      // The DynamicQuantizeLinear runs (on the reference) only for its x_scale output.
      EXPECT_EQ(compiled.stats().fallback_steps, scale_is_output ? 1 : 0) << compiled.describe_plan();
      EXPECT_EQ(compiled.steps().size(), scale_is_output ? 3u : 2u) << compiled.describe_plan();
    }
  }
}

TEST(DynamicConv, UnsupportedFormsStayOnTheReference) {
  // K = 4096 * 9 > 33025: int32 accumulators could wrap in the fast GEMM; the reference runs it.
  const ConvCase wide = {"K 36864", 1, 4096, 3, 3, 2, 3, 3, 1, 1, 1, 1};
  const Model model = dynamic_conv_model(wide, 4);
  const Tensor x = random_floats({1, 4096, 3, 3}, 6);
  expect_bit_identical(model, x, options_for(1, false), "K above the exact bound", false);
  CompiledModel compiled(model, options_for(1, false));
  compiled.run({{"x", x}});
  EXPECT_GT(compiled.stats().fallback_steps, 0) << compiled.describe_plan();
  // 6 output channels in 4 groups: no step (it would split them wrongly); the reference names the error.
  const ConvCase bad_groups = {"M not a multiple of group", 1, 8, 5, 5, 6, 3, 3, 1, 1, 1, 4};
  const Model bad = dynamic_conv_model(bad_groups, 2);
  const Tensor xb = random_floats({1, 8, 5, 5}, 3);
  EXPECT_THROW(ReferenceExecutor(bad).run({{"x", xb}}), Error);
  CompiledModel bad_compiled(bad, options_for(1, false));
  EXPECT_THROW(bad_compiled.run({{"x", xb}}), Error);
  for (const auto& s : bad_compiled.steps()) EXPECT_EQ(s->kernel().rfind("dynamic_", 0), std::string::npos);
  // A scale vector shaped [M] would broadcast along W, not the channels: not fused.
  ConvCase k = {"3x3", 1, 4, 6, 4, 4, 3, 3, 1, 1, 1, 1};
  Model flat = dynamic_conv_model(k, 5);
  Tensor ws(DType::kFloat32, {4});
  for (int j = 0; j < 4; ++j) ws.data<float>()[j] = 0.01f * static_cast<float>(j + 1);
  flat.graph.initializers["ws"] = ws;
  CompiledModel unfused(flat, options_for(1, false));
  const Tensor xf = random_floats({1, 4, 6, 4}, 7);
  const std::string out = flat.graph.outputs.at(0).name;
  const Tensor got = unfused.run({{"x", xf}}).at(out);
  for (const auto& s : unfused.steps()) EXPECT_EQ(s->kernel().rfind("dynamic_", 0), std::string::npos) << s->kernel();
  ReferenceExecutor reference(flat);
  const Tensor want = reference.run({{"x", xf}}).at(out);
  ASSERT_EQ(got.shape(), want.shape());
  for (int64_t i = 0; i < want.numel(); ++i) ASSERT_EQ(got.data<float>()[i], want.data<float>()[i]) << i;
}

Model load(const std::string& path) {
  auto model = load_onnx(kRoot + "/" + path);
  if (!model.ok()) throw Error(ErrorCode::kInvalidArgument, model.status().message());
  return std::move(*model);
}

// Whole CNNs quantized by kvant: dynamic is bit-identical to the reference
// and weight-only within FP32 rounding, both with no reference fallback.
TEST(DynamicConv, DynamicAndWeightOnlyCnnsCompileWithoutFallbacks) {
  for (const char* path :
       {"models/fmnist/resnet_small.onnx", "models/fmnist/mobilenet_small.onnx", "models/fashion_mnist_cnn.onnx"}) {
    const Model model = prepare_for_quantization(load(path));  // as kvant quantize does (BatchNorm folded)
    const std::string in = model.graph.inputs.at(0).name, out = model.graph.outputs.at(0).name;
    const Tensor x = random_floats({2, 1, 28, 28}, 3);
    QuantizeOptions options;
    options.mode = QuantMode::kDynamic;
    const Model dynamic = quantize_dynamic(model, options, nullptr);
    {
      const Tensor want = ReferenceExecutor(dynamic).run({{in, x}}).at(out);
      CompiledModel compiled(dynamic, options_for(1, false));
      const Tensor got = compiled.run({{in, x}}).at(out);
      EXPECT_EQ(compiled.stats().fallback_steps, 0) << path << "\n" << compiled.describe_plan();
      ASSERT_EQ(got.numel(), want.numel());
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << path << " dynamic";
    }
    for (int bits : {4, 8}) {
      options.mode = QuantMode::kWeightOnly;
      options.group_size = 16;
      const Model wo = quantize_weight_only(model, bits, options, nullptr);
      const Tensor want = ReferenceExecutor(wo).run({{in, x}}).at(out);
      CompiledModel compiled(wo, options_for(1, false));
      const Tensor got = compiled.run({{in, x}}).at(out);
      EXPECT_EQ(compiled.stats().fallback_steps, 0) << path << " INT" << bits << "\n" << compiled.describe_plan();
      int convs = 0;
      for (const auto& s : compiled.steps()) convs += s->kernel().rfind("sconv", 0) == 0 ? 1 : 0;
      EXPECT_GT(convs, 0) << compiled.describe_plan();
      double max_ref = 0;
      for (int64_t i = 0; i < want.numel(); ++i) max_ref = std::max(max_ref, double{std::abs(want.data<float>()[i])});
      for (int64_t i = 0; i < want.numel(); ++i) {
        ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-4 * (max_ref + 1.0)) << path << " INT" << bits;
      }
    }
  }
}

}  // namespace
}  // namespace kvant
