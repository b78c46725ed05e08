// The NHWC layout pass (passes/nhwc_layout.cc) keeps what a graph computes:
// the reference executor gives the same outputs, bit for bit, before and
// after (the com.kvant Nhwc* reference kernels are the standard operators on
// transposed data), on the Fashion-MNIST CNNs in FP32 and static INT8, on a
// TensorFlow-style graph whose Transposes all fold away, on a
// squeeze-excitation block (broadcast Mul, constant operands) and on Concat.
// It also checks how many Transposes remain: one at each edge of a chain.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <random>
#include <string>

#include "alloc_counter.h"
#include "io/npy.h"
#include "io/sample_source.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "passes/pass.h"
#include "quant/quantize.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

const std::string kRoot = KVANT_SOURCE_DIR;

Model load(const std::string& path) {
  auto model = load_onnx(kRoot + "/" + path);
  if (!model.ok()) throw Error(ErrorCode::kInvalidArgument, model.status().message());
  return std::move(*model);
}

// The model after ONNX shape inference (a save/load round trip).
Model with_shapes(const Model& m) {
  auto bytes = serialize_onnx(m);
  if (!bytes.ok()) throw Error(ErrorCode::kInvalidArgument, bytes.status().message());
  auto loaded = load_onnx_bytes(bytes->data(), bytes->size());
  if (!loaded.ok()) throw Error(ErrorCode::kInvalidArgument, loaded.status().message());
  return std::move(*loaded);
}

int count_ops(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.op_type == op ? 1 : 0;
  return n;
}

int count_nhwc(const Graph& g) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.domain == "com.kvant" ? 1 : 0;
  return n;
}

// As the compiled runtime prepares a graph: BatchNormalization folded first.
Model folded(const Model& m) {
  Model out = m;
  run_to_fixed_point(out.graph, {eliminate_identity, fold_batchnorm, eliminate_dead_nodes});
  return out;
}

Model to_nhwc(const Model& m) {
  Model out = m;
  nhwc_layout(out.graph, out.opset(), [](const Node&) { return true; });
  out.opset_imports["com.kvant"] = 1;
  return out;
}

Tensor random_input(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor x(DType::kFloat32, shape);
  for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = normal(rng);
  return x;
}

// Same outputs, bit for bit.
void expect_same_outputs(const Model& before, const Model& after, const Tensor& x, const std::string& what) {
  const std::string in = before.graph.inputs.at(0).name;
  const auto want = ReferenceExecutor(before).run({{in, x}});
  const auto got = ReferenceExecutor(after).run({{in, x}});
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << what << ": output " << name << " missing";
    const Tensor& g = got.at(name);
    ASSERT_EQ(g.shape(), t.shape()) << what << ": " << name;
    ASSERT_EQ(g.nbytes(), t.nbytes());
    EXPECT_EQ(std::memcmp(g.raw(), t.raw(), t.nbytes()), 0) << what << ": output " << name << " differs";
  }
}

// An opset-13 model whose one input "x" is float32 of `shape`, no nodes yet.
Model model_with_input(const Shape& shape) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
  return m;
}

TEST(NhwcLayout, FashionMnistCnnsKeepTheirOutputs) {
  for (const char* path : {"models/fashion_mnist_cnn.onnx", "models/fmnist/resnet_small.onnx",
                           "models/fmnist/mobilenet_small.onnx", "models/fmnist/qat_cnn.onnx"}) {
    const Model m = folded(load(path));
    const Model n = to_nhwc(m);
    EXPECT_GT(count_nhwc(n.graph), 0) << path;
    // One Transpose at the start of the chain and one where it meets the
    // classifier's Flatten/Gemm (or none if the chain reaches it as [N,C,1,1]).
    EXPECT_LE(count_ops(n.graph, "Transpose"), 2) << path << "\n" << print_graph(n.graph);
    Shape shape = {2, 1, 28, 28};
    expect_same_outputs(m, n, random_input(shape, 3), path);
  }
}

TEST(NhwcLayout, StaticInt8ModelsKeepTheirOutputs) {
  for (const char* path : {"models/fmnist/resnet_small.onnx", "models/fmnist/mobilenet_small.onnx"}) {
    const Model m = prepare_for_quantization(load(path));
    std::vector<std::map<std::string, Tensor>> samples;
    for (uint32_t i = 0; i < 4; ++i) samples.push_back({{m.graph.inputs.at(0).name, random_input({1, 1, 28, 28}, i)}});
    VectorSource calib(samples);
    const Model q = quantize_static(m, calib, QuantizeOptions{}, nullptr);
    const Model n = to_nhwc(q);  // ranks of the new Q/DQ values come from the pass's own inference
    EXPECT_GT(count_nhwc(n.graph), 0) << path;
    EXPECT_LE(count_ops(n.graph, "Transpose"), 2) << path << "\n" << print_graph(n.graph);
    // Every NhwcConv reads a DequantizeLinear directly (the compiled QDQ patterns).
    std::map<std::string, const Node*> producer;
    for (const Node& node : n.graph.nodes) {
      for (const auto& o : node.outputs) producer[o] = &node;
    }
    for (const Node& node : n.graph.nodes) {
      if (node.op_type != "NhwcConv") continue;
      const Node* p = producer.count(node.inputs[0]) ? producer[node.inputs[0]] : nullptr;
      EXPECT_TRUE(p != nullptr && p->op_type == "DequantizeLinear") << node.name << " reads " << node.inputs[0];
    }
    expect_same_outputs(q, n, random_input({2, 1, 28, 28}, 9), std::string(path) + " INT8");
  }
}

// A TensorFlow-style export: NHWC input, Transposes around the Conv.
TEST(NhwcLayout, TensorflowStyleTransposesFoldAway) {
  Model m = model_with_input({1, 9, 11, 3});
  const TypeInfo t = m.graph.inputs[0].type;
  m.graph.initializers["w"] = random_input({5, 3, 3, 3}, 1);
  m.graph.initializers["b"] = random_input({5}, 2);
  m.graph.initializers["w2"] = random_input({4, 5, 1, 1}, 3);
  Node to_nchw = make_node("t0", "Transpose", {"x"}, {"xc"});
  set_attr(to_nchw, "perm", std::vector<int64_t>{0, 3, 1, 2});
  Node conv = make_node("conv", "Conv", {"xc", "w", "b"}, {"c"});
  set_attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  Node relu = make_node("relu", "Relu", {"c"}, {"r"});
  Node back = make_node("t1", "Transpose", {"r"}, {"rn"});
  set_attr(back, "perm", std::vector<int64_t>{0, 2, 3, 1});
  Node again = make_node("t2", "Transpose", {"rn"}, {"rc"});
  set_attr(again, "perm", std::vector<int64_t>{0, 3, 1, 2});
  Node conv2 = make_node("conv2", "Conv", {"rc", "w2"}, {"c2"});
  Node out = make_node("t3", "Transpose", {"c2"}, {"y"});
  set_attr(out, "perm", std::vector<int64_t>{0, 2, 3, 1});
  m.graph.nodes = {to_nchw, conv, relu, back, again, conv2, out};
  TypeInfo ty = t;
  ty.dims.back() = Dim{4, ""};
  m.graph.outputs.push_back({"y", ty});
  const Model shaped = with_shapes(m);
  const Model n = to_nhwc(shaped);
  EXPECT_EQ(count_ops(n.graph, "Transpose"), 0) << print_graph(n.graph);
  EXPECT_EQ(count_nhwc(n.graph), 2) << print_graph(n.graph);
  expect_same_outputs(shaped, n, random_input({1, 9, 11, 3}, 4), "TF-style");
}

// Conv -> Relu -> squeeze-excitation (GlobalAveragePool, 1x1 Convs, Sigmoid,
// a broadcast Mul over H x W), a per-channel constant Add, and a Concat of
// two branches, then MaxPool: one NHWC group from the first Conv to the end.
TEST(NhwcLayout, SqueezeExcitationConstantsAndConcat) {
  Model m = model_with_input({2, 6, 10, 7});
  const TypeInfo t = m.graph.inputs[0].type;
  auto& init = m.graph.initializers;
  init["w0"] = random_input({8, 6, 3, 3}, 1);
  init["w1"] = random_input({4, 8, 1, 1}, 2);
  init["w2"] = random_input({8, 4, 1, 1}, 3);
  init["shift"] = random_input({8, 1, 1}, 4);
  init["w3"] = random_input({8, 8, 1, 1}, 5);
  Node c0 = make_node("c0", "Conv", {"x", "w0"}, {"a"});
  set_attr(c0, "pads", std::vector<int64_t>{1, 1, 1, 1});
  std::vector<Node> nodes = {
      c0,
      make_node("r0", "Relu", {"a"}, {"r"}),
      make_node("gap", "GlobalAveragePool", {"r"}, {"p"}),
      make_node("c1", "Conv", {"p", "w1"}, {"q"}),
      make_node("r1", "Relu", {"q"}, {"q1"}),
      make_node("c2", "Conv", {"q1", "w2"}, {"g"}),
      make_node("sig", "Sigmoid", {"g"}, {"s"}),
      make_node("mul", "Mul", {"r", "s"}, {"se"}),
      make_node("add", "Add", {"se", "shift"}, {"sh"}),
      make_node("c3", "Conv", {"sh", "w3"}, {"b"}),
  };
  Node cat = make_node("cat", "Concat", {"sh", "b"}, {"cc"});
  set_attr(cat, "axis", int64_t{1});
  Node pool = make_node("pool", "MaxPool", {"cc"}, {"y"});
  set_attr(pool, "kernel_shape", std::vector<int64_t>{2, 2});
  set_attr(pool, "strides", std::vector<int64_t>{2, 2});
  nodes.push_back(cat);
  nodes.push_back(pool);
  m.graph.nodes = nodes;
  TypeInfo ty = t;
  ty.dims = {Dim{2, ""}, Dim{16, ""}, Dim{5, ""}, Dim{3, ""}};
  m.graph.outputs.push_back({"y", ty});
  const Model shaped = with_shapes(m);
  const Model n = to_nhwc(shaped);
  EXPECT_EQ(count_nhwc(n.graph), 6) << print_graph(n.graph);
  EXPECT_EQ(count_ops(n.graph, "Transpose"), 2) << print_graph(n.graph);  // the input and the output
  expect_same_outputs(shaped, n, random_input({2, 6, 10, 7}, 6), "SE + Concat");
}

// A Conv between two NCHW-only nodes (here Softmax over axis 1 before and
// LRN after... both unknown to the pass) stays a Conv.
TEST(NhwcLayout, LoneConvBetweenNchwNodesStays) {
  Model m = model_with_input({1, 3, 6, 6});
  const TypeInfo t = m.graph.inputs[0].type;
  m.graph.initializers["w"] = random_input({4, 3, 1, 1}, 1);
  Node lrn = make_node("lrn", "LRN", {"c"}, {"y"});
  set_attr(lrn, "size", int64_t{3});
  m.graph.nodes = {make_node("sm", "Softmax", {"x"}, {"s"}), make_node("conv", "Conv", {"s", "w"}, {"c"}), lrn};
  TypeInfo ty = t;
  ty.dims[1] = Dim{4, ""};
  m.graph.outputs.push_back({"y", ty});
  Model n = with_shapes(m);
  EXPECT_FALSE(nhwc_layout(n.graph, 13, [](const Node&) { return true; }));
  EXPECT_EQ(count_nhwc(n.graph), 0);
}

// A quantized Conv whose Q output is read by an NCHW-only node (LRN after
// its DQ): the Transpose back to NCHW goes after the Q, on the codes, so
// the NhwcConv meets its Q and compiles to the fused integer step (it ran
// as the reference NhwcConv when the Transpose sat between them).
TEST(NhwcLayout, TransposeBackMovesPastTheQuantize) {
  Model m = model_with_input({1, 8, 6, 6});
  const TypeInfo t = m.graph.inputs[0].type;
  Graph& g = m.graph;
  g.initializers["s"] = Tensor::scalar<float>(0.05f);
  g.initializers["zp"] = Tensor::scalar<uint8_t>(128);
  g.initializers["ys"] = Tensor::scalar<float>(0.2f);
  g.initializers["yzp"] = Tensor::scalar<uint8_t>(120);
  Tensor w(DType::kInt8, {4, 8, 3, 3});
  for (int64_t i = 0; i < w.numel(); ++i) w.data<int8_t>()[i] = static_cast<int8_t>((i * 37) % 201 - 100);
  g.initializers["w"] = w;
  g.initializers["ws"] = Tensor::from_vector(std::vector<float>{0.01f, 0.02f, 0.015f, 0.005f}, {4});
  Node wdq = make_node("wdq", "DequantizeLinear", {"w", "ws"}, {"wf"});
  set_attr(wdq, "axis", int64_t{0});
  Node conv = make_node("conv", "Conv", {"xd", "wf"}, {"c"});
  set_attr(conv, "pads", std::vector<int64_t>{1, 1, 1, 1});
  Node lrn = make_node("lrn", "LRN", {"cd"}, {"y"});
  set_attr(lrn, "size", int64_t{3});
  g.nodes = {make_node("xq", "QuantizeLinear", {"x", "s", "zp"}, {"xq"}),
             make_node("xdq", "DequantizeLinear", {"xq", "s", "zp"}, {"xd"}),
             wdq,
             conv,
             make_node("cq", "QuantizeLinear", {"c", "ys", "yzp"}, {"cq"}),
             make_node("cdq", "DequantizeLinear", {"cq", "ys", "yzp"}, {"cd"}),
             lrn};
  TypeInfo ty = t;
  ty.dims[1] = Dim{4, ""};
  g.outputs.push_back({"y", ty});
  const Model before = with_shapes(m);
  const Model n = to_nhwc(before);
  ASSERT_EQ(count_ops(n.graph, "NhwcConv"), 1) << print_graph(n.graph);
  for (const Node& node : n.graph.nodes) {
    if (node.op_type != "NhwcConv") continue;
    int readers = 0;
    for (const Node& r : n.graph.nodes) {
      for (const auto& in : r.inputs) {
        if (in != node.outputs[0]) continue;
        ++readers;
        EXPECT_EQ(r.op_type, "QuantizeLinear") << print_graph(n.graph);
      }
    }
    EXPECT_EQ(readers, 1);
  }
  expect_same_outputs(before, n, random_input({1, 8, 6, 6}, 5), "conv -> Q -> LRN");
  CompiledModel compiled(before, default_compile_options(1));
  compiled.run({{"x", random_input({1, 8, 6, 6}, 6)}});
  EXPECT_EQ(compiled.describe_plan().find("reference NhwcConv"), std::string::npos) << compiled.describe_plan();
}

// A ShuffleNet unit, static INT8: Conv -> Relu, a channel split by two
// Slices whose bounds come from Shape (as torch.chunk exports), a Conv on one
// half, Concat, the channel shuffle (Reshape -> Transpose -> Reshape), a last
// Conv. After codes_through_moves the whole unit is one NHWC group: the
// Slices and the Concat work on the channel axis of NHWC codes, the shuffle
// is a Transpose of [N,H,W,2,C/2], the Shape reads NHWC and a Gather gives
// the NCHW shape; Transposes only at the input and the output. The reference
// executor gives the same bytes before and after; the compiled plan has no
// reference steps, no float Slice or Concat, and matches the reference.
TEST(NhwcLayout, ChannelSplitConcatAndShuffleStayNhwc) {
  Model m = model_with_input({1, 8, 6, 6});
  auto& init = m.graph.initializers;
  init["w0"] = random_input({16, 8, 1, 1}, 1);
  init["w1"] = random_input({8, 8, 3, 3}, 2);
  init["w2"] = random_input({4, 16, 1, 1}, 3);
  init["one"] = Tensor::from_vector(std::vector<int64_t>{1}, {1});
  init["two"] = Tensor::from_vector(std::vector<int64_t>{2}, {1});
  init["zero"] = Tensor::from_vector(std::vector<int64_t>{0}, {1});
  init["shape5"] = Tensor::from_vector(std::vector<int64_t>{1, 2, 8, 6, 6}, {5});
  init["shape4"] = Tensor::from_vector(std::vector<int64_t>{1, -1, 6, 6}, {4});
  Node c1 = make_node("c1", "Conv", {"lo_hi", "w1"}, {"b"});
  set_attr(c1, "pads", std::vector<int64_t>{1, 1, 1, 1});
  Node gather = make_node("g", "Gather", {"shp", "one"}, {"ch"});
  set_attr(gather, "axis", int64_t{0});
  Node cat = make_node("cat", "Concat", {"lo", "br"}, {"cc"});
  set_attr(cat, "axis", int64_t{1});
  Node tr = make_node("t", "Transpose", {"r5"}, {"t5"});
  set_attr(tr, "perm", std::vector<int64_t>{0, 2, 1, 3, 4});
  m.graph.nodes = {make_node("c0", "Conv", {"x", "w0"}, {"a"}),
                   make_node("r0", "Relu", {"a"}, {"r"}),
                   make_node("shape", "Shape", {"r"}, {"shp"}),
                   gather,
                   make_node("div", "Div", {"ch", "two"}, {"half"}),
                   make_node("mul", "Mul", {"half", "two"}, {"full"}),
                   make_node("s0", "Slice", {"r", "zero", "half", "one"}, {"lo"}),
                   make_node("s1", "Slice", {"r", "half", "full", "one"}, {"lo_hi"}),
                   c1,
                   make_node("r1", "Relu", {"b"}, {"br"}),
                   cat,
                   make_node("re5", "Reshape", {"cc", "shape5"}, {"r5"}),
                   tr,
                   make_node("re4", "Reshape", {"t5", "shape4"}, {"sh"}),
                   make_node("c2", "Conv", {"sh", "w2"}, {"y"})};
  m.graph.outputs.push_back({"y", type_of(DType::kFloat32, {1, 4, 6, 6})});
  const Model f = prepare_for_quantization(with_shapes(m));
  std::vector<std::map<std::string, Tensor>> samples;
  for (uint32_t i = 0; i < 4; ++i) samples.push_back({{"x", random_input({1, 8, 6, 6}, 10 + i)}});
  VectorSource calib(samples);
  const Model q = with_shapes(quantize_static(f, calib, QuantizeOptions{}, nullptr));
  Model moved = folded(q);
  run_to_fixed_point(moved.graph, {codes_through_moves, eliminate_dead_nodes});
  const Model n = to_nhwc(moved);
  EXPECT_EQ(count_nhwc(n.graph), 3) << print_graph(n.graph);
  int four_d = 0;
  for (const Node& node : n.graph.nodes) {
    if (node.op_type == "Transpose") four_d += node.attr_ints("perm").size() == 4 ? 1 : 0;
  }
  EXPECT_EQ(four_d, 2) << print_graph(n.graph);                                // the input and the output
  EXPECT_EQ(count_ops(n.graph, "QuantizeLinear"), 4) << print_graph(n.graph);  // x and the three Convs
  for (uint32_t seed = 20; seed < 23; ++seed) {
    const Tensor x = random_input({1, 8, 6, 6}, seed);
    expect_same_outputs(q, n, x, "shuffle unit INT8");
    CompiledModel compiled(q, default_compile_options(1));
    const Tensor got = compiled.run({{"x", x}}).at("y");
    const Tensor want = ReferenceExecutor(q).run({{"x", x}}).at("y");
    ASSERT_EQ(got.shape(), want.shape());
    float worst = 0.0f, top = 0.0f;
    for (int64_t i = 0; i < want.numel(); ++i) {
      worst = std::max(worst, std::abs(got.data<float>()[i] - want.data<float>()[i]));
      top = std::max(top, std::abs(want.data<float>()[i]));
    }
    EXPECT_LE(worst, 0.02f * top) << "compiled vs reference";
    const std::string plan = compiled.describe_plan();
    EXPECT_EQ(plan.find("reference NhwcConv"), std::string::npos) << plan;
    EXPECT_NE(plan.find("uint8[1,6,6,8]"), std::string::npos) << plan;  // a Slice of NHWC codes
  }
}

// FP32 convs compiled NHWC (compiled_model.cc's predicate, SConvNhwc steps):
// the FP32 Fashion-MNIST CNNs' compiled outputs stay within float rounding of
// the reference executor's (the NHWC im2col sums taps in another order,
// sconv_nhwc.h: per layer about K 2^-24 of sum |w x|; 1e-4 of the largest
// output over a few layers), with Transposes only at the chain's edges, for
// 1 and 3 threads, and a planned run allocates nothing; KVANT_FP32_NHWC=0
// keeps them NCHW.
TEST(NhwcLayout, Fp32ConvsCompileNhwcWithinRounding) {
  for (const char* path : {"models/fmnist/resnet_small.onnx", "models/fmnist/mobilenet_small.onnx"}) {
    const Model m = load(path);
    const std::string in = m.graph.inputs.at(0).name;
    const Shape shape = {2, 1, 28, 28};
    const Tensor x = random_input(shape, 9);
    const auto want = ReferenceExecutor(m).run({{in, x}});
    for (int threads : {1, 3}) {
      CompiledModel compiled(m, default_compile_options(threads));
      const auto got = compiled.run({{in, x}});
      const std::string plan = compiled.describe_plan();
      EXPECT_NE(plan.find("sconv_nhwc_"), std::string::npos) << path << "\n" << plan;
      EXPECT_EQ(compiled.stats().fallback_steps, 0) << plan;
      size_t transposes = 0;
      for (size_t at = plan.find(" transpose "); at != std::string::npos; at = plan.find(" transpose ", at + 1)) {
        ++transposes;
      }
      EXPECT_LE(transposes, 2u) << path << "\n" << plan;
      for (const auto& [name, t] : want) {
        ASSERT_TRUE(got.count(name)) << path << ": output " << name;
        const Tensor& g = got.at(name);
        ASSERT_EQ(g.shape(), t.shape()) << path;
        float peak = 0.0f;
        for (int64_t i = 0; i < t.numel(); ++i) peak = std::max(peak, std::fabs(t.data<float>()[i]));
        for (int64_t i = 0; i < t.numel(); ++i) {
          ASSERT_LE(std::fabs(g.data<float>()[i] - t.data<float>()[i]), 1e-4f * peak + 1e-6f)
              << path << " threads " << threads << " element " << i << "\n"
              << plan;
        }
      }
      compiled.prepare({{in, shape}});
      compiled.run({{in, x}});
      const long before = test::allocation_count();
      std::copy(x.data<float>(), x.data<float>() + x.numel(), compiled.input(0).data<float>());
      compiled.run();
      EXPECT_EQ(test::allocation_count(), before) << path << " threads " << threads;
    }
    ::setenv("KVANT_FP32_NHWC", "0", 1);
    const CompiledModel nchw(m, default_compile_options(1));
    ::unsetenv("KVANT_FP32_NHWC");
    const std::string plan = nchw.describe_plan();
    EXPECT_EQ(plan.find("sconv_nhwc_"), std::string::npos) << path << "\n" << plan;
  }
}

}  // namespace
}  // namespace kvant
