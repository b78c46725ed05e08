// The compiled FP32 steps of steps_fp32.h against the reference operators
// (the reference executor on the same one- or few-node model), with 1 and 3
// threads, odd shapes and edge attributes. Bit-exact where the step does the
// reference's float operations in its order (AveragePool, HardSigmoid,
// HardSwish, Dropout, Reduce*, Where, the DQ -> BatchNormalization -> Q
// table); a stated tolerance where it does not (BatchNormalization's
// x * a + b, LayerNormalization's interleaved sums). Each test also checks
// that the plan holds the step and no reference fallback.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "alloc_counter.h"
#include "op_test_util.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "step_compare.h"
#include "test_graphs.h"

namespace kvant {
namespace {

using test::compare;
using test::expect_bytes_equal;
using test::one_graph;
using test::random_tensor;

// ---- AveragePool ----

struct PoolCase {
  std::vector<int64_t> kernel, strides, pads, dilations;
  int ceil_mode = 0, include_pad = 0;
  std::string auto_pad = "NOTSET";
};

TEST(Fp32Steps, AveragePoolEveryPaddingStrideAndCountModeIsExact) {
  const PoolCase cases[] = {
      {{2, 2}, {2, 2}, {0, 0, 0, 0}, {1, 1}},            // densenet's transition
      {{3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0, 1},      // padded, pad counted
      {{3, 3}, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0, 0},      // padded, pad not counted
      {{3, 2}, {2, 3}, {0, 1, 2, 0}, {1, 1}, 1, 1},      // asymmetric, ceil_mode overhang
      {{3, 2}, {2, 3}, {0, 1, 2, 0}, {1, 1}, 1, 0},      //
      {{2, 3}, {2, 2}, {1, 0, 1, 2}, {2, 1}, 1, 1},      // dilation (opset 19)
      {{5, 5}, {3, 3}, {2, 2, 2, 2}, {1, 1}, 0, 1},      // window wider than the tail
      {{3, 3}, {2, 2}, {}, {1, 1}, 0, 0, "SAME_UPPER"},  //
      {{3, 3}, {2, 1}, {}, {1, 1}, 0, 1, "SAME_LOWER"},  //
      {{4, 2}, {1, 2}, {}, {1, 1}, 0, 0, "VALID"},       //
      {{7, 9}, {1, 1}, {0, 0, 0, 0}, {1, 1}},            // one output pixel: the whole plane
  };
  int index = 0;
  for (const PoolCase& c : cases) {
    Model m = one_graph(19);
    const Shape shape = {2, 3, 7, 9};
    m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
    Node n = make_node("pool", "AveragePool", {"x"}, {"y"});
    n.attributes["kernel_shape"] = ints_attr(c.kernel);
    n.attributes["strides"] = ints_attr(c.strides);
    if (!c.pads.empty()) n.attributes["pads"] = ints_attr(c.pads);
    n.attributes["dilations"] = ints_attr(c.dilations);
    n.attributes["ceil_mode"] = int_attr(c.ceil_mode);
    n.attributes["count_include_pad"] = int_attr(c.include_pad);
    n.attributes["auto_pad"] = string_attr(c.auto_pad);
    m.graph.nodes.push_back(n);
    m.graph.outputs.push_back({"y", TypeInfo{}});
    SCOPED_TRACE("case " + std::to_string(index++));
    compare(m, {{"x", random_tensor(shape, 7u + static_cast<uint32_t>(index))}}, "avgpool_f32", expect_bytes_equal);
  }
}

// ---- BatchNormalization ----

struct BnParams {
  std::vector<float> scale, bias, mean, var;
};

BnParams bn_params(int64_t channels, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f), pos(0.05f, 3.0f);
  BnParams p;
  for (int64_t c = 0; c < channels; ++c) {
    p.scale.push_back(u(rng));
    p.bias.push_back(u(rng));
    p.mean.push_back(u(rng));
    p.var.push_back(pos(rng));
  }
  p.scale[0] = 0.0f;  // a dead channel
  return p;
}

void add_bn(Model& m, const std::string& x, const std::string& y, const BnParams& p, float eps) {
  const auto c = static_cast<int64_t>(p.scale.size());
  m.graph.initializers["scale"] = Tensor::from_vector(p.scale, {c});
  m.graph.initializers["B"] = Tensor::from_vector(p.bias, {c});
  m.graph.initializers["mean"] = Tensor::from_vector(p.mean, {c});
  m.graph.initializers["var"] = Tensor::from_vector(p.var, {c});
  Node n = make_node("bn", "BatchNormalization", {x, "scale", "B", "mean", "var"}, {y});
  n.attributes["epsilon"] = float_attr(eps);
  m.graph.nodes.push_back(n);
}

TEST(Fp32Steps, BatchNormalizationMatchesTheReferenceToItsRounding) {
  for (const Shape& shape : {Shape{2, 5, 3, 7}, Shape{3, 4}, Shape{1, 6, 11}, Shape{1, 3, 1, 1}}) {
    for (bool relu : {false, true}) {
      const int64_t channels = shape[1];
      const BnParams p = bn_params(channels, 11);
      const float eps = 1e-3f;
      Model m = one_graph(15);
      m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
      add_bn(m, "x", relu ? "t" : "y", p, eps);
      if (relu) m.graph.nodes.push_back(make_node("relu", "Relu", {"t"}, {"y"}));
      m.graph.outputs.push_back({"y", TypeInfo{}});
      const Tensor x = random_tensor(shape, 5);
      // |y - reference| <= 2^-22 (|x a| + |b| + |y|): a, b, x * a and the sum
      // each round once to float (half an ulp each); the reference rounds
      // its double result once.
      int64_t inner = 1;
      for (size_t d = 2; d < shape.size(); ++d) inner *= shape[d];
      auto check = [&](const Tensor& got, const Tensor& want, const std::string& what) {
        for (int64_t i = 0; i < got.numel(); ++i) {
          const auto c = static_cast<size_t>((i / inner) % channels);
          const double a = p.scale[c] / std::sqrt(static_cast<double>(p.var[c]) + eps);
          const double b = p.bias[c] - p.mean[c] * a;
          const double w = want.data<float>()[i];
          const double bound = std::ldexp(std::fabs(x.data<float>()[i] * a) + std::fabs(b) + std::fabs(w), -22) + 1e-30;
          ASSERT_LE(std::fabs(got.data<float>()[i] - w), bound) << what << " element " << i;
        }
      };
      compare(m, {{"x", x}}, relu ? "batchnorm_f32+clamp" : "batchnorm_f32", check);
    }
  }
}

TEST(Fp32Steps, QuantizedBatchNormalizationIsATablePerChannelAndExact) {
  // Planes of 15, 1, 3, 17, 63 and 65 codes (the byte-lookup kernels' tails)
  // over few and many channels.
  const Shape shapes[] = {{2, 6, 5, 3}, {1, 40, 1, 1}, {2, 37, 3}, {1, 33, 17}, {1, 70, 63}, {2, 24, 5, 13}};
  for (const Shape& shape : shapes) {
    for (bool is_signed : {false, true}) {
      for (bool relu : {false, true}) {
        Model m = one_graph(13);
        const DType q = is_signed ? DType::kInt8 : DType::kUInt8;
        m.graph.inputs.push_back({"xq", type_of(q, shape)});
        m.graph.initializers["sx"] = Tensor::scalar(0.05f);
        m.graph.initializers["sy"] = Tensor::scalar(0.031f);
        if (is_signed) {
          m.graph.initializers["zx"] = Tensor::scalar(int8_t{-3});
          m.graph.initializers["zy"] = Tensor::scalar(int8_t{5});
        } else {
          m.graph.initializers["zx"] = Tensor::scalar(uint8_t{120});
          m.graph.initializers["zy"] = Tensor::scalar(uint8_t{128});
        }
        m.graph.nodes.push_back(make_node("dq", "DequantizeLinear", {"xq", "sx", "zx"}, {"x"}));
        add_bn(m, "x", "t", bn_params(shape[1], 3), 1e-5f);
        std::string tail = "t";
        if (relu) {
          m.graph.nodes.push_back(make_node("relu", "Relu", {"t"}, {"r"}));
          tail = "r";
        }
        m.graph.nodes.push_back(make_node("q", "QuantizeLinear", {tail, "sy", "zy"}, {"y"}));
        m.graph.outputs.push_back({"y", TypeInfo{}});
        Tensor xq(q, shape);
        std::mt19937 rng(9);
        for (size_t i = 0; i < xq.nbytes(); ++i) static_cast<uint8_t*>(xq.raw())[i] = static_cast<uint8_t>(rng());
        const std::string plan = compare(m, {{"xq", xq}}, "channel_lookup", expect_bytes_equal);
        EXPECT_EQ(plan.find("dequantize"), std::string::npos) << plan;
      }
    }
  }
}

// ---- LayerNormalization ----

TEST(Fp32Steps, LayerNormalizationAnyAxisAndBroadcastScale) {
  struct Case {
    Shape x;
    int64_t axis;
    Shape scale;  // broadcast to x.shape[axis:]
    bool bias;
  };
  const Case cases[] = {
      {{2, 5, 96}, -1, {96}, true},        // a transformer row
      {{1, 4, 4, 13}, -1, {13}, false},    // odd row, no bias
      {{2, 3, 5, 7}, -2, {5, 7}, true},    // two normalized dims
      {{2, 3, 5, 7}, 1, {1, 1, 7}, true},  // scale broadcast along the first normalized dims
      {{3, 1}, 0, {3, 1}, true},           // everything in one row
  };
  for (const Case& c : cases) {
    Model m = one_graph(17);
    m.graph.inputs.push_back({"x", type_of(DType::kFloat32, c.x)});
    m.graph.initializers["scale"] = random_tensor(c.scale, 21, 0.5f, 2.0f);
    std::vector<std::string> ins = {"x", "scale"};
    if (c.bias) {
      m.graph.initializers["B"] = random_tensor(c.scale, 22);
      ins.push_back("B");
    }
    Node n = make_node("ln", "LayerNormalization", ins, {"y"});
    n.attributes["axis"] = int_attr(c.axis);
    n.attributes["epsilon"] = float_attr(1e-5f);
    m.graph.nodes.push_back(n);
    m.graph.outputs.push_back({"y", TypeInfo{}});
    Tensor x = random_tensor(c.x, 4, -4.0f, 4.0f);
    for (int64_t i = 0; i < x.numel(); i += 3) x.data<float>()[i] += 100.0f;  // a large mean: cancellation
    // Both sides compute in double and round once; only the order of the
    // two sums differs (a few units in the last place of a double), which
    // can flip the float rounding of a result by one ulp at most.
    auto check = [](const Tensor& got, const Tensor& want, const std::string& what) {
      for (int64_t i = 0; i < got.numel(); ++i) {
        const float g = got.data<float>()[i], w = want.data<float>()[i];
        const float ulp = std::nextafter(std::fabs(w), std::numeric_limits<float>::infinity()) - std::fabs(w);
        ASSERT_LE(std::fabs(g - w), ulp) << what << " element " << i << ": " << g << " vs " << w;
      }
    };
    SCOPED_TRACE(shape_to_string(c.x) + " axis " + std::to_string(c.axis));
    compare(m, {{"x", x}}, "layernorm_axis_f32", check);
  }
}

TEST(Fp32Steps, InstanceNormalizationPerPlane) {
  for (const Shape& shape : {Shape{2, 3, 5, 7}, Shape{1, 4, 9}, Shape{1, 2, 1, 1, 3}}) {
    Model m = one_graph(13);
    m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
    m.graph.initializers["scale"] = random_tensor({shape[1]}, 51, 0.5f, 2.0f);
    m.graph.initializers["B"] = random_tensor({shape[1]}, 52);
    Node n = make_node("in", "InstanceNormalization", {"x", "scale", "B"}, {"y"});
    n.attributes["epsilon"] = float_attr(1e-3f);
    m.graph.nodes.push_back(n);
    m.graph.outputs.push_back({"y", TypeInfo{}});
    Tensor x = random_tensor(shape, 53, -4.0f, 4.0f);
    for (int64_t i = 0; i < x.numel(); i += 2) x.data<float>()[i] += 50.0f;
    // As for LayerNormalization: only the order of the double sums differs.
    auto check = [](const Tensor& got, const Tensor& want, const std::string& what) {
      for (int64_t i = 0; i < got.numel(); ++i) {
        const float g = got.data<float>()[i], w = want.data<float>()[i];
        const float ulp = std::nextafter(std::fabs(w), std::numeric_limits<float>::infinity()) - std::fabs(w);
        ASSERT_LE(std::fabs(g - w), ulp) << what << " element " << i << ": " << g << " vs " << w;
      }
    };
    SCOPED_TRACE(shape_to_string(shape));
    compare(m, {{"x", x}}, "instancenorm_f32", check);
  }
}

// ---- HardSigmoid, HardSwish ----

TEST(Fp32Steps, HardSigmoidHardSwishAndTheirMulAreExact) {
  const Shape shape = {2, 3, 37};
  Tensor x = random_tensor(shape, 8, -8.0f, 8.0f);
  x.data<float>()[0] = 3.0f;  // the clip points
  x.data<float>()[1] = -3.0f;
  x.data<float>()[2] = -0.0f;
  x.data<float>()[3] = std::numeric_limits<float>::quiet_NaN();
  for (int form = 0; form < 3; ++form) {
    Model m = one_graph(form == 2 ? 14 : 13);
    m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
    std::string kernel;
    if (form == 2) {
      m.graph.nodes.push_back(make_node("hs", "HardSwish", {"x"}, {"y"}));
      kernel = "hard_swish_f32";
    } else {
      Node n = make_node("hs", "HardSigmoid", {"x"}, {form == 1 ? "h" : "y"});
      n.attributes["alpha"] = float_attr(form == 1 ? 1.0f / 6 : 0.3f);
      n.attributes["beta"] = float_attr(form == 1 ? 0.5f : 0.4f);
      m.graph.nodes.push_back(n);
      if (form == 1) m.graph.nodes.push_back(make_node("mul", "Mul", {"h", "x"}, {"y"}));
      kernel = form == 1 ? "x_hard_sigmoid_f32" : "hard_sigmoid_f32";
    }
    m.graph.outputs.push_back({"y", TypeInfo{}});
    compare(m, {{"x", x}}, kernel, expect_bytes_equal);
  }
}

// ---- Dropout ----

// x -> Softmax -> Dropout(ratio 0, training_mode true) [-> mask] -> MatMul(v) -> Relu:
// the shape of swin_t's attention (docs/zoo.md finding 1).
Model dropout_model(bool mask_output) {
  Model m = one_graph(17);
  m.graph.inputs.push_back({"a", type_of(DType::kFloat32, {3, 2, 9, 9})});
  m.graph.inputs.push_back({"v", type_of(DType::kFloat32, {3, 2, 9, 5})});
  m.graph.initializers["ratio"] = Tensor::scalar(0.0f);
  m.graph.initializers["train"] = Tensor::scalar(true);
  Node sm = make_node("sm", "Softmax", {"a"}, {"s"});
  sm.attributes["axis"] = int_attr(-1);
  m.graph.nodes.push_back(sm);
  m.graph.nodes.push_back(make_node("drop", "Dropout", {"s", "ratio", "train"}, {"d", "mask"}));
  m.graph.nodes.push_back(make_node("mm", "MatMul", {"d", "v"}, {"p"}));
  m.graph.nodes.push_back(make_node("relu", "Relu", {"p"}, {"y"}));
  m.graph.outputs.push_back({"y", TypeInfo{}});
  if (mask_output) m.graph.outputs.push_back({"mask", TypeInfo{}});
  return m;
}

TEST(Fp32Steps, DropoutInInferenceFormIsAViewOrACopyWithItsMask) {
  const std::map<std::string, Tensor> feeds = {{"a", random_tensor({3, 2, 9, 9}, 1)},
                                               {"v", random_tensor({3, 2, 9, 5}, 2)}};
  // Softmax and MatMul are vectorised (a few float ulps from the reference);
  // an aliasing bug would be off by O(1).
  auto close = [](const Tensor& got, const Tensor& want, const std::string& what) {
    if (got.dtype() == DType::kBool) {
      expect_bytes_equal(got, want, what);
      return;
    }
    for (int64_t i = 0; i < got.numel(); ++i) {
      ASSERT_NEAR(got.data<float>()[i], want.data<float>()[i], 1e-5f * (1 + std::fabs(want.data<float>()[i])))
          << what << " element " << i;
    }
  };
  const std::string view_plan = compare(dropout_model(false), feeds, "view (Dropout)", close);
  compare(dropout_model(true), feeds, "dropout_copy+mask", close);
  // Random dropout stays an error, named, with or without its mask read.
  for (bool mask_output : {false, true}) {
    Model m = dropout_model(mask_output);
    m.graph.initializers["ratio"] = Tensor::scalar(0.5f);
    const std::string message = error_of(
        [&] {
          CompiledModel compiled(m, default_compile_options(1));
          compiled.run(feeds);
        },
        ErrorCode::kUnsupported);
    EXPECT_NE(message.find("training_mode"), std::string::npos) << message;
  }
}

// ---- ReduceSum / ReduceMean / ReduceMax ----

TEST(Fp32Steps, ReductionsOverAnyNeighbouringAxesAreExact) {
  const Shape shape = {2, 3, 4, 5};
  Tensor x = random_tensor(shape, 12);
  const std::vector<std::vector<int64_t>> axes_list = {{3}, {-1}, {0}, {1, 2}, {2, 3}, {}, {0, 1, 2, 3}, {0, 3}};
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax"}) {
    for (int64_t opset : {13, 18}) {
      for (const auto& axes : axes_list) {
        for (int keepdims : {0, 1}) {
          Model m = one_graph(opset);
          m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
          const bool axes_input = opset >= (std::string(op) == "ReduceSum" ? 13 : 18);
          std::vector<std::string> ins = {"x"};
          Node n;
          if (axes_input && !axes.empty()) {
            m.graph.initializers["axes"] = Tensor::from_vector(axes, {static_cast<int64_t>(axes.size())});
            ins.push_back("axes");
          }
          n = make_node("r", op, ins, {"y"});
          if (!axes_input && !axes.empty()) n.attributes["axes"] = ints_attr(axes);
          n.attributes["keepdims"] = int_attr(keepdims);
          m.graph.nodes.push_back(n);
          m.graph.outputs.push_back({"y", TypeInfo{}});
          std::string what =
              std::string(op) + " opset " + std::to_string(opset) + " keepdims " + std::to_string(keepdims) + " axes";
          for (int64_t a : axes) {
            what += ' ';
            what += std::to_string(a);
          }
          SCOPED_TRACE(what);
          compare(m, {{"x", x}}, "reduce_", expect_bytes_equal);
        }
      }
    }
  }
  // NaN propagates through ReduceMax as in the reference.
  x.data<float>()[7] = std::numeric_limits<float>::quiet_NaN();
  Model m = one_graph(13);
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
  Node n = make_node("r", "ReduceMax", {"x"}, {"y"});
  n.attributes["axes"] = ints_attr({1, 3});  // not neighbours: the reference, copied
  m.graph.nodes.push_back(n);
  m.graph.outputs.push_back({"y", TypeInfo{}});
  compare(m, {{"x", x}}, "reference, copied", expect_bytes_equal);
  m.graph.nodes[0].attributes["axes"] = ints_attr({3});
  compare(m, {{"x", x}}, "reduce_max_f32", expect_bytes_equal);
}

// ---- Where ----

TEST(Fp32Steps, WhereBroadcastsAllThreeOperands) {
  struct Case {
    Shape c, x, y;
  };
  const Case cases[] = {
      {{3, 4, 5}, {3, 4, 5}, {3, 4, 5}},  // flat
      {{1, 4, 1}, {3, 1, 5}, {5}},        // everything broadcast
      {{4, 4}, {2, 1, 4, 4}, {}},         // a causal mask, a scalar fill
      {{7}, {7}, {1}},                    //
  };
  for (const Case& c : cases) {
    for (bool constant_mask : {false, true}) {
      for (DType dt : {DType::kFloat32, DType::kInt64}) {
        Model m = one_graph(16);
        Tensor cond(DType::kBool, c.c);
        for (int64_t i = 0; i < cond.numel(); ++i) cond.data<bool>()[i] = (i * 7) % 3 != 0;
        std::map<std::string, Tensor> feeds;
        if (constant_mask) {
          m.graph.initializers["c"] = cond;
        } else {
          m.graph.inputs.push_back({"c", type_of(DType::kBool, c.c)});
          feeds["c"] = cond;
        }
        for (const auto& [name, shape] : {std::pair{"x", c.x}, std::pair{"y", c.y}}) {
          m.graph.inputs.push_back({name, type_of(dt, shape)});
          Tensor v(dt, shape);
          for (int64_t i = 0; i < v.numel(); ++i) {
            if (dt == DType::kFloat32) {
              v.data<float>()[i] = static_cast<float>(i) * (name[0] == 'x' ? 1.5f : -2.0f);
            } else {
              v.data<int64_t>()[i] = i * (name[0] == 'x' ? 3 : -5);
            }
          }
          feeds[name] = v;
        }
        m.graph.nodes.push_back(make_node("w", "Where", {"c", "x", "y"}, {"out"}));
        m.graph.outputs.push_back({"out", TypeInfo{}});
        SCOPED_TRACE(shape_to_string(c.c) + " " + shape_to_string(c.x) + " " + shape_to_string(c.y));
        compare(m, feeds, "where", expect_bytes_equal);
      }
    }
  }
}

// ---- no allocation while running ----

// x -> ConvTranspose -> BatchNormalization -> AveragePool -> HardSigmoid ->
// ReduceSum, with no value_info: each step learns that its input is float
// from the producer's op type.
TEST(Fp32Steps, APlannedRunAllocatesNothing) {
  Model m = one_graph(17);
  const Shape shape = {1, 2, 3, 3};
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
  m.graph.initializers["wt"] = random_tensor({2, 4, 2, 2}, 71);
  Node convt = make_node("convt", "ConvTranspose", {"x", "wt"}, {"u"});
  convt.attributes["strides"] = ints_attr({2, 2});
  m.graph.nodes.push_back(convt);
  add_bn(m, "u", "b", bn_params(4, 1), 1e-5f);
  Node pool = make_node("pool", "AveragePool", {"b"}, {"p"});
  pool.attributes["kernel_shape"] = ints_attr({2, 2});
  pool.attributes["strides"] = ints_attr({2, 2});
  m.graph.nodes.push_back(pool);
  m.graph.nodes.push_back(make_node("hs", "HardSigmoid", {"p"}, {"h"}));
  m.graph.initializers["axes"] = Tensor::from_vector(std::vector<int64_t>{2, 3}, {2});
  m.graph.nodes.push_back(make_node("r", "ReduceSum", {"h", "axes"}, {"y"}));
  m.graph.outputs.push_back({"y", TypeInfo{}});
  test::expect_planned_run_allocates_nothing(m, shape);
}

}  // namespace
}  // namespace kvant
