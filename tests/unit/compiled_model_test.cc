// The compiled runtime against the reference executor (DESIGN.md §2): FP32
// models agree to float rounding, QDQ models to within one output step, and
// results do not depend on the thread count. Also the memory planner.
#include "runtime/compiled_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "alloc_counter.h"
#include "io/npy.h"
#include "io/sample_source.h"
#include "onnx/reader.h"
#include "quant/quantize.h"
#include "runtime/executor.h"
#include "runtime/memory_plan.h"

namespace kvant {
namespace {

const std::string kRoot = KVANT_SOURCE_DIR;

TEST(MemoryPlan, ReusesSpaceOfBuffersWhoseLifetimeEnded) {
  // a [0,1], b [1,2], c [2,3]: a and c may share, b overlaps both.
  const MemoryPlan plan = plan_memory({{1000, 0, 1}, {1000, 1, 2}, {1000, 2, 3}});
  EXPECT_EQ(plan.offsets[0], plan.offsets[2]);
  EXPECT_NE(plan.offsets[0], plan.offsets[1]);
  EXPECT_EQ(plan.arena_bytes, 2048u);
  EXPECT_EQ(plan.total_bytes, 3072u);
}

TEST(MemoryPlan, LiveBuffersNeverOverlap) {
  std::vector<BufferRequest> requests;
  uint32_t state = 7;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  for (int i = 0; i < 200; ++i) {
    const int first = static_cast<int>(next() % 50);
    requests.push_back({1 + next() % 5000, first, first + static_cast<int>(next() % 10)});
  }
  const MemoryPlan plan = plan_memory(requests);
  for (size_t i = 0; i < requests.size(); ++i) {
    EXPECT_EQ(plan.offsets[i] % 64, 0u);
    EXPECT_LE(plan.offsets[i] + requests[i].bytes, plan.arena_bytes);
    for (size_t j = i + 1; j < requests.size(); ++j) {
      const bool live_together = requests[i].first <= requests[j].last && requests[j].first <= requests[i].last;
      const bool bytes_overlap = plan.offsets[i] < plan.offsets[j] + requests[j].bytes &&
                                 plan.offsets[j] < plan.offsets[i] + requests[i].bytes;
      ASSERT_FALSE(live_together && bytes_overlap) << i << " and " << j;
    }
  }
  EXPECT_LT(plan.arena_bytes, plan.total_bytes);
}

Model load(const std::string& path) {
  auto model = load_onnx(kRoot + "/" + path);
  if (!model.ok()) throw Error(ErrorCode::kInvalidArgument, model.status().message());
  return std::move(*model);
}

Tensor input_batch(const std::string& npy, int64_t n) {
  auto t = read_npy(kRoot + "/" + npy);
  if (!t.ok()) throw Error(ErrorCode::kInvalidArgument, t.status().message());
  Shape s = t->shape();
  const int64_t per = t->numel() / s[0];
  s[0] = n;
  Tensor out(DType::kFloat32, s);
  std::copy(t->data<float>(), t->data<float>() + per * n, out.data<float>());
  return out;
}

// The scale of the DequantizeLinear that produces `output`, or 0.
float output_step(const Model& model, const std::string& output) {
  for (const Node& n : model.graph.nodes) {
    if (n.op_type == "DequantizeLinear" && n.outputs[0] == output) {
      return model.graph.initializers.at(n.inputs[1]).data<float>()[0];
    }
  }
  return 0.0f;
}

struct Case {
  const char* model;
  const char* input;
};
const Case kCases[] = {
    {"models/fashion_mnist_cnn.onnx", "tests/data/fmnist/resnet_small_input.npy"},
    {"models/fmnist/resnet_small.onnx", "tests/data/fmnist/resnet_small_input.npy"},
    {"models/fmnist/mobilenet_small.onnx", "tests/data/fmnist/mobilenet_small_input.npy"},
    {"models/fmnist/lstm_rows.onnx", "tests/data/fmnist/lstm_rows_input.npy"},
    {"models/fmnist/vit_tiny.onnx", "tests/data/fmnist/vit_tiny_input.npy"},
    {"models/fmnist/qat_cnn.onnx", "tests/data/fmnist/qat_cnn_input.npy"},
};

// Compiled (threads 1 and 3) vs reference on `model`; `step` > 0: agreement
// within one output step on >= 99.9% of elements, else within rel_tol of
// max|output| (dynamic models and static float logits: 1%, since a float
// rounding difference before a (Dynamic)QuantizeLinear can move a value
// across a rounding boundary).
void expect_agreement(const Model& model, const Tensor& x, const std::string& what, double rel_tol = 1e-4) {
  const std::string in = model.graph.inputs.at(0).name;
  const std::string out = model.graph.outputs.at(0).name;
  ReferenceExecutor reference(model);
  const Tensor want = reference.run({{in, x}}).at(out);
  CompiledModel one(model, default_compile_options(1));
  CompiledModel three(model, default_compile_options(3));
  // Plan on other data first, so the comparison is of a run on a planned model.
  Tensor other(x.dtype(), x.shape());
  for (int64_t i = 0; i < other.numel(); ++i) other.data<float>()[i] = 0.5f - 0.001f * static_cast<float>(i % 1000);
  one.run({{in, other}});
  const Tensor got = one.run({{in, x}}).at(out);
  const Tensor got3 = three.run({{in, x}}).at(out);
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got3.shape(), want.shape()) << what;
  const float step = output_step(model, out);
  double max_ref = 0;
  for (int64_t i = 0; i < want.numel(); ++i) max_ref = std::max(max_ref, std::abs(double{want.data<float>()[i]}));
  int64_t outside = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double d = std::abs(double{got.data<float>()[i]} - want.data<float>()[i]);
    const double tol = step > 0 ? 1.001 * step : rel_tol * (max_ref + 1.0);
    if (d > tol) ++outside;
    ASSERT_EQ(got.data<float>()[i], got3.data<float>()[i]) << what << ": threads change element " << i;
  }
  EXPECT_LE(static_cast<double>(outside), 0.001 * static_cast<double>(want.numel()))
      << what << ": " << outside << " of " << want.numel() << " elements differ by more than "
      << (step > 0 ? "one output step" : "float rounding") << "\n"
      << one.describe_plan();
}

TEST(CompiledModel, Fp32ModelsMatchTheReference) {
  for (const Case& c : kCases) {
    const Model model = load(c.model);
    expect_agreement(model, input_batch(c.input, 4), c.model);
  }
}

TEST(CompiledModel, StaticInt8ModelsMatchTheQdqSimulation) {
  for (const Case& c : kCases) {
    if (std::string(c.model).find("lstm") != std::string::npos || std::string(c.model).find("qat") != std::string::npos)
      continue;
    const Model model = load(c.model);
    std::vector<std::map<std::string, Tensor>> samples;
    for (int i = 0; i < 4; ++i) {
      Tensor all = input_batch(c.input, 8);
      Tensor one(DType::kFloat32, {1, 1, 28, 28});
      std::copy(all.data<float>() + i * 784, all.data<float>() + (i + 1) * 784, one.data<float>());
      samples.push_back({{model.graph.inputs.at(0).name, one}});
    }
    VectorSource calib(samples);
    QuantizeOptions options;
    const Model q = quantize_static(model, calib, options, nullptr);
    // The logits of the last Gemm are float (design decision 68), so there
    // is no output step: 1% of max|y|, as for dynamic models (a rounding
    // difference before a QuantizeLinear moves one code of the Gemm's input).
    expect_agreement(q, input_batch(c.input, 8), std::string(c.model) + " static INT8", 1e-2);
  }
}

TEST(CompiledModel, QatExportMatchesTheQdqSimulation) {
  const Model model = load("models/fmnist/qat_cnn.onnx");
  expect_agreement(model, input_batch("tests/data/fmnist/qat_cnn_input.npy", 16), "qat_cnn");
}

TEST(CompiledModel, DynamicAndWeightOnlyModelsMatchTheReference) {
  for (const char* path : {"models/fmnist/lstm_rows.onnx", "models/fmnist/vit_tiny.onnx"}) {
    const Model model = load(path);
    QuantizeOptions options;
    options.mode = QuantMode::kDynamic;
    const Tensor x =
        input_batch(std::string("tests/data/fmnist/") +
                        (std::string(path).find("lstm") != std::string::npos ? "lstm_rows" : "vit_tiny") + "_input.npy",
                    4);
    expect_agreement(quantize_dynamic(model, options, nullptr), x, std::string(path) + " dynamic", 1e-2);
    options.mode = QuantMode::kWeightOnly;
    options.group_size = 32;
    expect_agreement(quantize_weight_only(model, 4, options, nullptr), x, std::string(path) + " INT4");
  }
}

TEST(CompiledModel, ReplansWhenTheBatchChangesAndChecksInputs) {
  const Model model = load("models/fashion_mnist_cnn.onnx");
  CompiledModel compiled(model);
  const std::string in = model.graph.inputs.at(0).name;
  EXPECT_EQ(compiled.run({{in, input_batch("tests/data/fmnist/resnet_small_input.npy", 2)}}).begin()->second.dim(0), 2);
  EXPECT_EQ(compiled.run({{in, input_batch("tests/data/fmnist/resnet_small_input.npy", 5)}}).begin()->second.dim(0), 5);
  EXPECT_THROW(compiled.run({{"nope", Tensor(DType::kFloat32, {1, 1, 28, 28})}}), Error);
  EXPECT_THROW(compiled.run({{in, Tensor(DType::kFloat32, {1, 1, 27, 28})}}), Error);
  EXPECT_THROW(compiled.run({{in, Tensor(DType::kInt64, {1, 1, 28, 28})}}), Error);
}

// An opset-13 model with one input "x" of `dtype` and `shape`, no nodes yet.
Model model_with_input(DType dtype, const Shape& shape) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  TypeInfo t;
  t.dtype = dtype;
  t.has_shape = true;
  for (int64_t d : shape) t.dims.push_back(Dim{d, ""});
  m.graph.inputs.push_back({"x", t});
  return m;
}

// An EfficientNet-style block: Conv -> SiLU (x * Sigmoid(x)) -> squeeze-
// excitation (GlobalAveragePool -> Conv -> SiLU -> Conv -> Sigmoid -> Mul
// broadcast over H x W). In QDQ form the SiLU's DQ(x) has two readers (the
// Sigmoid and the Mul); the whole SiLU becomes one lookup table over x's
// codes, and the SE Mul a broadcast quantized multiply, both matching the
// simulation.
Model silu_se_block() {
  Model m = model_with_input(DType::kFloat32, Shape{1, 8, 9, 13});
  Graph& g = m.graph;
  const TypeInfo t = g.inputs[0].type;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.4f);
  auto weight = [&](const std::string& name, Shape shape) {
    Tensor w(DType::kFloat32, std::move(shape));
    for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] = normal(rng);
    g.initializers[name] = w;
  };
  weight("w0", {8, 8, 1, 1});
  weight("b0", {8});
  weight("w1", {4, 8, 1, 1});
  weight("b1", {4});
  weight("w2", {8, 4, 1, 1});
  weight("b2", {8});
  g.nodes.push_back(make_node("conv0", "Conv", {"x", "w0", "b0"}, {"c0"}));
  g.nodes.push_back(make_node("sig0", "Sigmoid", {"c0"}, {"s0"}));
  g.nodes.push_back(make_node("silu0", "Mul", {"c0", "s0"}, {"a0"}));
  g.nodes.push_back(make_node("gap", "GlobalAveragePool", {"a0"}, {"p"}));
  g.nodes.push_back(make_node("conv1", "Conv", {"p", "w1", "b1"}, {"c1"}));
  g.nodes.push_back(make_node("sig1", "Sigmoid", {"c1"}, {"s1"}));
  g.nodes.push_back(make_node("silu1", "Mul", {"c1", "s1"}, {"a1"}));
  g.nodes.push_back(make_node("conv2", "Conv", {"a1", "w2", "b2"}, {"c2"}));
  g.nodes.push_back(make_node("gate", "Sigmoid", {"c2"}, {"s2"}));
  g.nodes.push_back(make_node("scale", "Mul", {"a0", "s2"}, {"y"}));
  g.outputs.push_back({"y", t});
  return m;
}

TEST(CompiledModel, SiluAndSqueezeExcitationMatchTheQdqSimulation) {
  const Model model = silu_se_block();
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto sample = [&] {
    Tensor x(DType::kFloat32, {1, 8, 9, 13});
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = normal(rng);
    return x;
  };
  std::vector<std::map<std::string, Tensor>> samples;
  for (int i = 0; i < 8; ++i) samples.push_back({{"x", sample()}});
  // FP32 first: each SiLU is in its Conv's store ("+silu"), the SE scale a broadcast Mul.
  expect_agreement(model, sample(), "SiLU + SE block, FP32");
  {
    CompiledModel fp32(model, default_compile_options(1));
    fp32.prepare({{"x", {1, 8, 9, 13}}});
    EXPECT_NE(fp32.describe_plan().find("+silu"), std::string::npos) << fp32.describe_plan();
    EXPECT_EQ(fp32.describe_plan().find("silu_f32"), std::string::npos) << fp32.describe_plan();
  }
  VectorSource calib(samples);
  const Model q = quantize_static(model, calib, QuantizeOptions{}, nullptr);
  expect_agreement(q, sample(), "SiLU + SE block, static INT8");
  CompiledModel compiled(q, default_compile_options(1));
  compiled.prepare({{"x", {1, 8, 9, 13}}});
  const std::string plan = compiled.describe_plan();
  EXPECT_EQ(compiled.stats().fallback_steps, 0) << plan;
  EXPECT_EQ(plan.find("Sigmoid_f32"), std::string::npos) << "a SiLU's Sigmoid ran in float:\n" << plan;
  size_t dequantize_steps = 0;  // the model output's only
  for (size_t at = plan.find("dequantize_"); at != std::string::npos; at = plan.find("dequantize_", at + 1)) {
    ++dequantize_steps;
  }
  EXPECT_EQ(dequantize_steps, 1u) << "a DQ inside the block stayed:\n" << plan;
  EXPECT_NE(plan.find("lookup_table (x * Sigmoid)"), std::string::npos) << "the SiLU is not one table:\n" << plan;
  EXPECT_NE(plan.find("qmul_u8"), std::string::npos) << "the SE scale is not a quantized Mul:\n" << plan;
}

// The decomposed layer normalization that exporters write below opset 17
// (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div [, Mul gamma]
// [, Add beta]) compiles to one layernorm step that matches the reference.
TEST(CompiledModel, DecomposedLayerNormBecomesOneStep) {
  for (bool affine : {true, false}) {
    Model m = model_with_input(DType::kFloat32, Shape{2, 5, 37});
    Graph& g = m.graph;
    const TypeInfo t = g.inputs[0].type;
    std::mt19937 rng(3);
    std::normal_distribution<float> normal(0.5f, 2.0f);
    auto vec = [&](const std::string& name, int64_t n) {
      Tensor v(DType::kFloat32, {n});
      for (int64_t i = 0; i < n; ++i) v.data<float>()[i] = normal(rng);
      g.initializers[name] = v;
    };
    Tensor two(DType::kFloat32, {});
    two.data<float>()[0] = 2.0f;
    Tensor eps(DType::kFloat32, {});
    eps.data<float>()[0] = 1e-5f;
    g.initializers["two"] = two;
    g.initializers["eps"] = eps;
    vec("gamma", 37);
    vec("beta", 37);
    Node mean = make_node("mean", "ReduceMean", {"x"}, {"m"});
    mean.attributes["axes"] = ints_attr({-1});
    Node var = make_node("var", "ReduceMean", {"p"}, {"v"});
    var.attributes["axes"] = ints_attr({-1});
    g.nodes.push_back(mean);
    g.nodes.push_back(make_node("sub", "Sub", {"x", "m"}, {"d"}));
    g.nodes.push_back(make_node("pow", "Pow", {"d", "two"}, {"p"}));
    g.nodes.push_back(var);
    g.nodes.push_back(make_node("add_eps", "Add", {"v", "eps"}, {"ve"}));
    g.nodes.push_back(make_node("sqrt", "Sqrt", {"ve"}, {"s"}));
    g.nodes.push_back(make_node("div", "Div", {"d", "s"}, {affine ? "n" : "y"}));
    if (affine) {
      g.nodes.push_back(make_node("scale", "Mul", {"n", "gamma"}, {"ng"}));
      g.nodes.push_back(make_node("shift", "Add", {"ng", "beta"}, {"y"}));
    }
    g.outputs.push_back({"y", t});
    Tensor x(DType::kFloat32, {2, 5, 37});
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = normal(rng);
    expect_agreement(m, x, affine ? "layernorm with gamma, beta" : "layernorm");
    CompiledModel compiled(m, default_compile_options(1));
    compiled.prepare({{"x", {2, 5, 37}}});
    EXPECT_EQ(compiled.stats().kernel_steps + compiled.stats().fallback_steps, 1) << compiled.describe_plan();
    EXPECT_NE(compiled.describe_plan().find("layernorm_f32"), std::string::npos) << compiled.describe_plan();
  }
}

// Transpose runs as a kernel step; on every permutation of a rank-4 float
// tensor with a size-1 axis (and of int16 and larger uint8 ones: each
// element size has its own copy, 8-bit blocks their transpose kernel), the default (reversed) perm and a rank-3 int64
// tensor, it gives exactly the reference's bytes.
TEST(CompiledModel, TransposeStepMatchesTheReferenceExactly) {
  std::vector<std::vector<int64_t>> perms;
  std::vector<int64_t> p = {0, 1, 2, 3};
  do {
    perms.push_back(p);
  } while (std::next_permutation(p.begin(), p.end()));
  perms.push_back({});
  for (const auto& perm : perms) {
    for (DType dtype : {DType::kFloat32, DType::kInt64, DType::kUInt8, DType::kInt16}) {
      Model m;
      m.ir_version = 7;
      m.opset_imports[""] = 13;
      Graph& g = m.graph;
      // uint8 and float32: axes of 16 or more, so the 16x16 blocks (with
      // tails) run where the last two output axes are a matrix transpose.
      const Shape shape = dtype == DType::kInt64   ? Shape{4, 6, 5}
                          : dtype == DType::kUInt8 ? Shape{2, 17, 3, 33}
                                                   : Shape{3, 1, 17, 20};
      if (dtype == DType::kInt64 && perm.size() == 4) continue;
      TypeInfo t;
      t.dtype = dtype;
      t.has_shape = true;
      for (int64_t d : shape) t.dims.push_back(Dim{d, ""});
      g.inputs.push_back({"x", t});
      Node node = make_node("tr", "Transpose", {"x"}, {"y"});
      if (!perm.empty()) node.attributes["perm"] = ints_attr(perm);
      g.nodes.push_back(node);
      TypeInfo out;
      out.dtype = dtype;
      g.outputs.push_back({"y", out});
      Tensor x(dtype, shape);
      for (int64_t i = 0; i < x.numel(); ++i) {
        if (dtype == DType::kFloat32) {
          x.data<float>()[i] = static_cast<float>(i) * 0.5f;
        } else if (dtype == DType::kUInt8) {
          x.data<uint8_t>()[i] = static_cast<uint8_t>(i * 7 + 1);
        } else if (dtype == DType::kInt16) {
          x.data<int16_t>()[i] = static_cast<int16_t>(i * 1001 - 9000);
        } else {
          x.data<int64_t>()[i] = i * 1000003;
        }
      }
      ReferenceExecutor reference(m);
      const Tensor want = reference.run({{"x", x}}).at("y");
      CompiledModel compiled(m, default_compile_options(1));
      const Tensor got = compiled.run({{"x", x}}).at("y");
      ASSERT_EQ(got.shape(), want.shape());
      ASSERT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << "perm size " << perm.size();
      EXPECT_NE(compiled.describe_plan().find("transpose"), std::string::npos) << compiled.describe_plan();
    }
  }
}

// FP32 matrix-transpose blocks with either side's stride the longer one
// (the inner loop runs along that side): NCHW <-> NHWC of a 16-channel
// 64 x 64 plane (U-Net's ConvTranspose outputs), both ways, and odd sizes.
TEST(CompiledModel, FloatTransposeBlocksEitherWayMatchTheReference) {
  const std::pair<Shape, std::vector<int64_t>> cases[] = {
      {{1, 16, 64, 64}, {0, 2, 3, 1}}, {{1, 64, 64, 16}, {0, 3, 1, 2}}, {{2, 40, 3}, {0, 2, 1}},
      {{2, 3, 40}, {0, 2, 1}},         {{5, 33, 17}, {0, 2, 1}},        {{5, 17, 33}, {2, 0, 1}}};
  for (const auto& [shape, perm] : cases) {
    Model m;
    m.ir_version = 7;
    m.opset_imports[""] = 13;
    Graph& g = m.graph;
    TypeInfo t;
    t.dtype = DType::kFloat32;
    t.has_shape = true;
    for (int64_t d : shape) t.dims.push_back(Dim{d, ""});
    g.inputs.push_back({"x", t});
    Node node = make_node("tr", "Transpose", {"x"}, {"y"});
    node.attributes["perm"] = ints_attr(perm);
    g.nodes.push_back(node);
    TypeInfo out;
    out.dtype = DType::kFloat32;
    g.outputs.push_back({"y", out});
    Tensor x(DType::kFloat32, shape);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = static_cast<float>(i) * 0.25f - 7.0f;
    ReferenceExecutor reference(m);
    const Tensor want = reference.run({{"x", x}}).at("y");
    CompiledModel compiled(m, default_compile_options(1));
    const Tensor got = compiled.run({{"x", x}}).at("y");
    ASSERT_EQ(got.shape(), want.shape());
    ASSERT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << "rank " << shape.size();
  }
}

// 8-bit transposes whose output's last axis is short (2..8, the channel
// shuffle on NHWC pixels and an RGB input to NHWC run as row interleaves;
// 9 takes the strided gather) give the reference's bytes.
TEST(CompiledModel, ShortInnerByteTransposeMatchesTheReference) {
  const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {{{1, 5, 7, 2, 24}, {0, 1, 2, 4, 3}},
                                                                     {{1, 3, 9, 10}, {0, 2, 3, 1}},
                                                                     {{2, 4, 6, 19}, {0, 3, 2, 1}},
                                                                     {{3, 7, 33}, {0, 2, 1}},
                                                                     {{8, 5, 3}, {2, 1, 0}},
                                                                     {{1, 9, 40}, {0, 2, 1}}};
  for (const auto& [shape, perm] : cases) {
    Model m;
    m.ir_version = 7;
    m.opset_imports[""] = 13;
    TypeInfo t;
    t.dtype = DType::kUInt8;
    t.has_shape = true;
    for (int64_t d : shape) t.dims.push_back(Dim{d, ""});
    m.graph.inputs.push_back({"x", t});
    Node node = make_node("tr", "Transpose", {"x"}, {"y"});
    node.attributes["perm"] = ints_attr(perm);
    m.graph.nodes.push_back(node);
    TypeInfo out;
    out.dtype = DType::kUInt8;
    m.graph.outputs.push_back({"y", out});
    Tensor x(DType::kUInt8, shape);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<uint8_t>()[i] = static_cast<uint8_t>(i * 13 + 5);
    const Tensor want = ReferenceExecutor(m).run({{"x", x}}).at("y");
    CompiledModel compiled(m, default_compile_options(1));
    const Tensor got = compiled.run({{"x", x}}).at("y");
    ASSERT_EQ(got.shape(), want.shape());
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << x.describe();
  }
}

// GELU as exporters write it below opset 20 (Div by sqrt 2, Erf, Add 1,
// Mul by x, Mul by 0.5) is one gelu step, matching the reference.
TEST(CompiledModel, ErfGeluBecomesOneStep) {
  Model m = model_with_input(DType::kFloat32, Shape{3, 4099});
  Graph& g = m.graph;
  const TypeInfo t = g.inputs[0].type;
  auto scalar = [&](const std::string& name, float v) {
    Tensor c(DType::kFloat32, {});
    c.data<float>()[0] = v;
    g.initializers[name] = c;
  };
  scalar("c", 1.4142135f);
  scalar("one", 1.0f);
  scalar("half", 0.5f);
  g.nodes.push_back(make_node("div", "Div", {"x", "c"}, {"t"}));
  g.nodes.push_back(make_node("erf", "Erf", {"t"}, {"e"}));
  g.nodes.push_back(make_node("add", "Add", {"e", "one"}, {"a"}));
  g.nodes.push_back(make_node("mul", "Mul", {"x", "a"}, {"m"}));
  g.nodes.push_back(make_node("half", "Mul", {"m", "half"}, {"y"}));
  g.outputs.push_back({"y", t});
  Tensor x(DType::kFloat32, {3, 4099});
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = -6.0f + 12.0f * static_cast<float>(i) / 12297.0f;
  expect_agreement(m, x, "erf GELU");
  CompiledModel compiled(m, default_compile_options(1));
  compiled.prepare({{"x", {3, 4099}}});
  EXPECT_EQ(compiled.stats().kernel_steps + compiled.stats().fallback_steps, 1) << compiled.describe_plan();
  EXPECT_NE(compiled.describe_plan().find("gelu_erf_f32"), std::string::npos) << compiled.describe_plan();
}

// The same GELU quantized statically: the quantizer puts Q/DQ pairs between
// its ops, and the compiled plan runs each chain of scalar-constant
// Div/Add/Mul and unary ops between a DQ and a Q as one lookup table (with
// the x * f(x) gate folded in), which is the QDQ simulation's bytes exactly.
TEST(CompiledModel, QuantizedErfGeluIsLookupTablesExactly) {
  Model m = model_with_input(DType::kFloat32, Shape{3, 257});
  Graph& g = m.graph;
  const TypeInfo t = g.inputs[0].type;
  auto scalar = [&](const std::string& name, float v) {
    Tensor c(DType::kFloat32, {});
    c.data<float>()[0] = v;
    g.initializers[name] = c;
  };
  auto zero_point = [&](const std::string& name, uint8_t v) {
    Tensor z(DType::kUInt8, {});
    z.data<uint8_t>()[0] = v;
    g.initializers[name] = z;
  };
  scalar("c", 1.4142135f);
  scalar("one", 1.0f);
  scalar("half", 0.5f);
  // (scale, zero point) per quantized value: x in [-5, 5], 1 + erf in [0, 2],
  // x * (1 + erf) in [-0.1, 10], the output in [-0.05, 5].
  const std::tuple<const char*, float, uint8_t> q[] = {
      {"qx", 10.0f / 255, 128}, {"qa", 2.0f / 255, 0}, {"qm", 10.1f / 255, 3}, {"qy", 5.05f / 255, 3}};
  for (const auto& [name, sc, zp] : q) {
    scalar(std::string(name) + "_s", sc);
    zero_point(std::string(name) + "_z", zp);
  }
  auto qdq = [&](const std::string& in, const std::string& p, const std::string& out) {
    g.nodes.push_back(make_node(in + "_q", "QuantizeLinear", {in, p + "_s", p + "_z"}, {in + "_codes"}));
    g.nodes.push_back(make_node(in + "_dq", "DequantizeLinear", {in + "_codes", p + "_s", p + "_z"}, {out}));
  };
  qdq("x", "qx", "xd");
  g.nodes.push_back(make_node("div", "Div", {"xd", "c"}, {"t"}));
  g.nodes.push_back(make_node("erf", "Erf", {"t"}, {"e"}));
  g.nodes.push_back(make_node("add", "Add", {"one", "e"}, {"a"}));  // the constant first: input 1 is the chain
  qdq("a", "qa", "ad");
  g.nodes.push_back(make_node("mul", "Mul", {"xd", "ad"}, {"m"}));  // xd's second reader: the gate
  qdq("m", "qm", "md");
  g.nodes.push_back(make_node("half", "Mul", {"md", "half"}, {"h"}));
  qdq("h", "qy", "y");
  g.outputs.push_back({"y", t});
  Tensor x(DType::kFloat32, {3, 257});
  for (int64_t i = 0; i < x.numel(); ++i)
    x.data<float>()[i] = -5.5f + 11.0f * static_cast<float>((i * 37) % 771) / 771.0f;
  CompiledModel compiled(m, default_compile_options(1));
  compiled.prepare({{"x", {3, 257}}});
  const std::string plan = compiled.describe_plan();
  EXPECT_EQ(plan.find("Erf_f32"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("div_f32"), std::string::npos) << plan;
  EXPECT_EQ(plan.find("mul_f32"), std::string::npos) << plan;
  EXPECT_NE(plan.find("lookup_table (x * Div, Erf, Add)"), std::string::npos) << plan;
  EXPECT_NE(plan.find("lookup_table (Mul)"), std::string::npos) << plan;
  ReferenceExecutor reference(m);
  const Tensor want = reference.run({{"x", x}}).at("y");
  const Tensor got = compiled.run({{"x", x}}).at("y");
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << plan;
}

// MaxPool (float32 here; the uint8 step shares the loop) against the
// reference, exactly: strides, pads, dilation, ceil_mode and sizes where the
// window's interior/edge split matters.
TEST(CompiledModel, MaxPoolStepMatchesTheReferenceExactly) {
  struct PoolCase {
    int64_t h, w, k, stride, pad, dil, ceil;
  };
  const PoolCase cases[] = {{112, 112, 3, 2, 1, 1, 0}, {7, 9, 3, 1, 1, 1, 0}, {10, 11, 2, 2, 0, 1, 1},
                            {13, 6, 3, 2, 1, 2, 0},    {5, 5, 5, 1, 2, 1, 0}, {1, 17, 1, 3, 0, 1, 1}};
  for (const PoolCase& c : cases) {
    Model m = model_with_input(DType::kFloat32, Shape{2L, 3L, c.h, c.w});
    Graph& g = m.graph;
    Node node = make_node("pool", "MaxPool", {"x"}, {"y"});
    node.attributes["kernel_shape"] = ints_attr({c.k, c.k});
    node.attributes["strides"] = ints_attr({c.stride, c.stride});
    node.attributes["pads"] = ints_attr({c.pad, c.pad, c.pad, c.pad});
    node.attributes["dilations"] = ints_attr({c.dil, c.dil});
    node.attributes["ceil_mode"] = int_attr(c.ceil);
    g.nodes.push_back(node);
    TypeInfo out;
    out.dtype = DType::kFloat32;
    g.outputs.push_back({"y", out});
    Tensor x(DType::kFloat32, {2, 3, c.h, c.w});
    std::mt19937 rng(static_cast<unsigned>(c.h * 31 + c.w));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = normal(rng);
    ReferenceExecutor reference(m);
    const Tensor want = reference.run({{"x", x}}).at("y");
    for (int threads : {1, 2}) {
      CompiledModel compiled(m, default_compile_options(threads));
      const Tensor got = compiled.run({{"x", x}}).at("y");
      ASSERT_EQ(got.shape(), want.shape()) << c.h << "x" << c.w;
      ASSERT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0) << c.h << "x" << c.w << " k" << c.k;
      EXPECT_NE(compiled.describe_plan().find("maxpool_f32"), std::string::npos) << compiled.describe_plan();
    }
  }
}

TEST(CompiledModel, RunningACompiledCnnAllocatesNothingInt8OrFp32) {
  const Model model = load("models/fashion_mnist_cnn.onnx");
  std::vector<std::map<std::string, Tensor>> samples;
  samples.push_back({{model.graph.inputs.at(0).name, input_batch("tests/data/fmnist/resnet_small_input.npy", 1)}});
  VectorSource calib(samples);
  const Model quantized = quantize_static(model, calib, QuantizeOptions{}, nullptr);
  for (const Model* m : {&quantized, &model}) {
    const Model& q = *m;
    for (int threads : {1, 2}) {
      CompiledModel compiled(q, default_compile_options(threads));
      compiled.prepare({{q.graph.inputs.at(0).name, {1, 1, 28, 28}}});
      ASSERT_EQ(compiled.stats().fallback_steps, 0) << compiled.describe_plan();
      const Tensor x = input_batch("tests/data/fmnist/resnet_small_input.npy", 1);
      std::copy(x.data<float>(), x.data<float>() + x.numel(), compiled.input(0).data<float>());
      compiled.run();  // first run: per-thread buffers of the kernels settle
      const long before = test::allocation_count();
      compiled.run();
      compiled.run();  // the input is still intact after a run
      EXPECT_EQ(test::allocation_count(), before) << "threads " << threads;
      // The counter counts: a reference run allocates.
      ReferenceExecutor reference(q);
      const long ref_before = test::allocation_count();
      const Tensor want = reference.run({{q.graph.inputs.at(0).name, x}}).begin()->second;
      EXPECT_GT(test::allocation_count(), ref_before);
      // FP32, and the static model's float logits (decision 68): float rounding.
      float step = output_step(q, q.graph.outputs.at(0).name);
      if (m == &model || step == 0.0f) step = 1e-4f;
      for (int64_t i = 0; i < want.numel(); ++i) {
        EXPECT_LE(std::abs(compiled.output(0).data<float>()[i] - want.data<float>()[i]), 1.001f * step);
      }
    }
  }
}

}  // namespace
}  // namespace kvant
