// GroupNormalization: the reference kernel (ops/norm.cc) against a direct
// double computation, and the compiled step (steps_groupnorm.cc) against
// the reference with 1 and 3 threads, opset 18 (scale and B per group) and
// 21 (per channel), group counts 1 (LayerNorm-like) to C (InstanceNorm-like);
// an opset-18 model through a serialize/load round trip (libonnx 1.12 does
// not know opset 18: shape inference is skipped, the runtime still runs);
// the exporters' decomposition Reshape -> InstanceNormalization -> Reshape
// -> Mul -> Add compiled with no reference fallback; bad num_groups and
// scale sizes refused with a message; and a planned run that allocates
// nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "alloc_counter.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "op_test_util.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "step_compare.h"
#include "test_graphs.h"

namespace kvant {
namespace {

using test::compare;
using test::one_graph;
using test::random_tensor;

// One GroupNormalization node x -> y.
Model group_norm_model(int64_t opset, const Shape& x, int64_t groups, float eps = 1e-5f) {
  Model m = one_graph(opset);
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, x)});
  const int64_t per = opset >= 21 ? x[1] : groups;
  m.graph.initializers["scale"] = random_tensor({per}, 61, 0.5f, 2.0f);
  m.graph.initializers["B"] = random_tensor({per}, 62);
  Node n = make_node("gn", "GroupNormalization", {"x", "scale", "B"}, {"y"});
  n.attributes["num_groups"] = int_attr(groups);
  n.attributes["epsilon"] = float_attr(eps);
  m.graph.nodes.push_back(n);
  m.graph.outputs.push_back({"y", TypeInfo{}});
  return m;
}

// Both sides compute in double and round once; only the order of the two
// sums differs (a few units in the last place of a double), which can flip
// the float rounding of a result by one ulp at most.
void within_one_ulp(const Tensor& got, const Tensor& want, const std::string& what) {
  for (int64_t i = 0; i < got.numel(); ++i) {
    const float g = got.data<float>()[i], w = want.data<float>()[i];
    const float ulp = std::nextafter(std::fabs(w), std::numeric_limits<float>::infinity()) - std::fabs(w);
    ASSERT_LE(std::fabs(g - w), ulp) << what << " element " << i << ": " << g << " vs " << w;
  }
}

Tensor shifted_input(const Shape& shape) {
  Tensor x = random_tensor(shape, 63, -4.0f, 4.0f);
  for (int64_t i = 0; i < x.numel(); i += 3) x.data<float>()[i] += 60.0f;  // a large mean: cancellation
  return x;
}

TEST(GroupNorm, ReferenceMatchesTheDefinition) {
  for (int64_t opset : {18, 21}) {
    const Shape shape = {2, 6, 5};
    const int64_t groups = 3;
    const Model m = group_norm_model(opset, shape, groups);
    const Tensor x = shifted_input(shape);
    const Tensor y = ReferenceExecutor(m).run({{"x", x}}).at("y");
    const Tensor& scale = m.graph.initializers.at("scale");
    const Tensor& bias = m.graph.initializers.at("B");
    // Per (n, group): 2 channels x 5 values, in double, plainly.
    for (int64_t n = 0; n < 2; ++n) {
      for (int64_t g = 0; g < groups; ++g) {
        const float* row = x.data<float>() + (n * 6 + g * 2) * 5;
        double sum = 0, sq = 0;
        for (int i = 0; i < 10; ++i) sum += row[i];
        const double mean = sum / 10;
        for (int i = 0; i < 10; ++i) sq += (row[i] - mean) * (row[i] - mean);
        const double inv_std = 1.0 / std::sqrt(sq / 10 + 1e-5);
        for (int i = 0; i < 10; ++i) {
          const int64_t c = g * 2 + i / 5;
          const int64_t k = opset >= 21 ? c : g;
          const double want = (row[i] - mean) * inv_std * scale.data<float>()[k] + bias.data<float>()[k];
          EXPECT_EQ(y.data<float>()[(n * 6 + g * 2) * 5 + i], static_cast<float>(want))
              << "opset " << opset << " n " << n << " group " << g << " i " << i;
        }
      }
    }
  }
}

TEST(GroupNorm, CompiledMatchesTheReference) {
  struct Case {
    Shape x;
    int64_t groups;
  };
  const Case cases[] = {
      {{2, 6, 5, 7}, 3},     // 2 channels per group
      {{1, 32, 9, 9}, 8},    // the common diffusion / detector form
      {{1, 8, 13}, 4},       // 1-D, odd length
      {{2, 4, 1, 1, 3}, 2},  // 3 spatial dims
      {{3, 4}, 2},           // no spatial dims
      {{1, 5, 6, 6}, 1},     // one group: LayerNorm over [C, H, W]
      {{2, 6, 3, 5}, 6},     // a group per channel: InstanceNorm
  };
  for (int64_t opset : {18, 21}) {
    for (const Case& c : cases) {
      const Model m = group_norm_model(opset, c.x, c.groups, 1e-3f);
      SCOPED_TRACE("opset " + std::to_string(opset) + " " + shape_to_string(c.x) + " groups " +
                   std::to_string(c.groups));
      compare(m, {{"x", shifted_input(c.x)}}, "groupnorm_f32", within_one_ulp);
    }
  }
}

// libonnx 1.12 knows opsets up to 17: loading an opset-18 file skips its
// shape inference (a warning), and the compiled runtime still plans and runs.
TEST(GroupNorm, Opset18FileLoadsAndRuns) {
  const Shape shape = {1, 8, 6, 6};
  const Model m = group_norm_model(18, shape, 4);
  auto bytes = serialize_onnx(m);
  ASSERT_TRUE(bytes.ok()) << bytes.status().message();
  auto loaded = load_onnx_bytes(bytes->data(), bytes->size());
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  compare(*loaded, {{"x", shifted_input(shape)}}, "groupnorm_f32", within_one_ulp);
}

// PyTorch's export of nn.GroupNorm below opset 18: x [N, C, H, W] ->
// Reshape [N, G, -1] -> InstanceNormalization (scale 1, B 0, G values) ->
// Reshape back (to Shape(x)) -> Mul(gamma [C, 1, 1]) -> Add(beta [C, 1, 1]).
// Every node compiles (InstanceNormalization is a step, the reshapes views,
// Mul/Add the binary steps): no reference fallback, and the same values.
TEST(GroupNorm, ExportedDecompositionCompiles) {
  const Shape shape = {2, 8, 5, 5};
  const int64_t groups = 4;
  Model m = one_graph(13);
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
  auto& init = m.graph.initializers;
  init["grouped"] = Tensor::from_vector(std::vector<int64_t>{0, groups, -1}, {3});
  Tensor ones(DType::kFloat32, {groups}), zeros(DType::kFloat32, {groups});
  for (int64_t i = 0; i < groups; ++i) {
    ones.data<float>()[i] = 1.0f;
    zeros.data<float>()[i] = 0.0f;
  }
  init["ones"] = ones;
  init["zeros"] = zeros;
  init["gamma"] = random_tensor({8, 1, 1}, 64, 0.5f, 2.0f);
  init["beta"] = random_tensor({8, 1, 1}, 65);
  m.graph.nodes.push_back(make_node("shape", "Shape", {"x"}, {"xshape"}));
  m.graph.nodes.push_back(make_node("r1", "Reshape", {"x", "grouped"}, {"xg"}));
  Node in = make_node("in", "InstanceNormalization", {"xg", "ones", "zeros"}, {"ng"});
  in.attributes["epsilon"] = float_attr(1e-5f);
  m.graph.nodes.push_back(in);
  m.graph.nodes.push_back(make_node("r2", "Reshape", {"ng", "xshape"}, {"n"}));
  m.graph.nodes.push_back(make_node("mul", "Mul", {"n", "gamma"}, {"s"}));
  m.graph.nodes.push_back(make_node("add", "Add", {"s", "beta"}, {"y"}));
  m.graph.outputs.push_back({"y", TypeInfo{}});
  compare(m, {{"x", shifted_input(shape)}}, "instancenorm_f32", within_one_ulp);
}

TEST(GroupNorm, BadGroupsAndScalesAreRefusedWithAMessage) {
  // num_groups 3 does not divide 8 channels.
  {
    const Model m = group_norm_model(21, {1, 8, 4}, 3);
    const Tensor x = random_tensor({1, 8, 4}, 1);
    EXPECT_THROW(ReferenceExecutor(m).run({{"x", x}}), Error);
    CompiledModel compiled(m, default_compile_options(1));
    try {
      compiled.run({{"x", x}});
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("num_groups 3"), std::string::npos) << e.what();
    }
  }
  // Opset 21 wants one scale per channel; this model has one per group.
  {
    Model m = group_norm_model(21, {1, 8, 4}, 2);
    m.graph.initializers["scale"] = random_tensor({2}, 2);
    m.graph.initializers["B"] = random_tensor({2}, 3);
    const Tensor x = random_tensor({1, 8, 4}, 1);
    EXPECT_THROW(ReferenceExecutor(m).run({{"x", x}}), Error);
    CompiledModel compiled(m, default_compile_options(1));
    try {
      compiled.run({{"x", x}});
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("one per channel"), std::string::npos) << e.what();
    }
  }
}

TEST(GroupNorm, APlannedRunAllocatesNothing) {
  const Shape shape = {1, 16, 7, 7};
  const Model m = group_norm_model(18, shape, 4);
  test::expect_planned_run_allocates_nothing(m, shape);
}

}  // namespace
}  // namespace kvant
