// The compiled comparison, Max / Min and Exp steps (steps_compare.h) against
// the reference operators: the reference executor on the same one-node
// model, with 1 and 3 threads, bit-exact (each step does the reference's
// float operation per element), broadcasting in every form, NaN and
// infinities among the values, and no reference fallback in the plan.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

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

// Values with ties between the operands, NaN, +-inf and signed zeros.
Tensor awkward(const Shape& shape, uint32_t seed) {
  Tensor t = random_tensor(shape, seed);
  float* p = t.data<float>();
  const float special[] = {std::numeric_limits<float>::quiet_NaN(),
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(),
                           0.0f,
                           -0.0f,
                           1.0f};
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (i % 5 == 0) p[i] = special[(static_cast<size_t>(i) / 5 + seed) % 6];
  }
  return t;
}

struct Shapes {
  Shape a, b;
};
const Shapes kShapes[] = {
    {{3, 4, 5}, {3, 4, 5}},  // same shape
    {{3234, 1}, {}},         // a score column against a scalar threshold (ssdlite)
    {{3234, 2}, {1, 2}},     // box corners against an image size
    {{2, 1, 5}, {3, 1}},     // both broadcast
    {{1}, {4, 3}},           // a one-element first operand
    {{2, 3, 1, 4}, {2, 1, 6, 4}},
};

Model binary_model(const std::string& op, const Shapes& s, bool b_constant, const Tensor& b) {
  Model m = one_graph(13);
  m.graph.inputs.push_back({"a", type_of(DType::kFloat32, s.a)});
  if (b_constant) {
    m.graph.initializers["b"] = b;
  } else {
    m.graph.inputs.push_back({"b", type_of(DType::kFloat32, s.b)});
  }
  m.graph.nodes.push_back(make_node("n", op, {"a", "b"}, {"y"}));
  m.graph.outputs.push_back({"y", TypeInfo{}});
  return m;
}

TEST(CompareSteps, EveryComparisonBroadcastsAndIsExact) {
  const std::pair<const char*, const char*> ops[] = {{"Equal", "equal_f32"},
                                                     {"Less", "less_f32"},
                                                     {"LessOrEqual", "less_equal_f32"},
                                                     {"Greater", "greater_f32"},
                                                     {"GreaterOrEqual", "greater_equal_f32"}};
  uint32_t seed = 1;
  for (const auto& [op, kernel] : ops) {
    for (const Shapes& s : kShapes) {
      for (bool b_constant : {false, true}) {
        const Tensor a = awkward(s.a, seed++);
        // Half of b copies a's values where the shapes allow, so ties occur.
        Tensor b = awkward(s.b, seed++);
        for (int64_t i = 0; i < std::min(a.numel(), b.numel()); i += 2) b.data<float>()[i] = a.data<float>()[i];
        SCOPED_TRACE(std::string(op) + " " + shape_to_string(s.a) + " " + shape_to_string(s.b) +
                     (b_constant ? " constant b" : ""));
        std::map<std::string, Tensor> feeds = {{"a", a}};
        if (!b_constant) feeds["b"] = b;
        compare(binary_model(op, s, b_constant, b), feeds, kernel, expect_bytes_equal);
      }
    }
  }
}

TEST(CompareSteps, MaxAndMinOfTwoKeepTheReferencesNaNRule) {
  uint32_t seed = 100;
  for (const char* op : {"Max", "Min"}) {
    const std::string kernel = op[1] == 'a' ? "max_f32" : "min_f32";
    for (const Shapes& s : kShapes) {
      for (bool b_constant : {false, true}) {
        const Tensor a = awkward(s.a, seed++);
        const Tensor b = awkward(s.b, seed++);
        SCOPED_TRACE(std::string(op) + " " + shape_to_string(s.a) + " " + shape_to_string(s.b));
        std::map<std::string, Tensor> feeds = {{"a", a}};
        if (!b_constant) feeds["b"] = b;
        compare(binary_model(op, s, b_constant, b), feeds, kernel, expect_bytes_equal);
      }
    }
  }
}

TEST(CompareSteps, ExpIsExactOverTheFloatRange) {
  Model m = one_graph(13);
  const Shape shape = {7, 129};
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
  m.graph.nodes.push_back(make_node("e", "Exp", {"x"}, {"y"}));
  m.graph.outputs.push_back({"y", TypeInfo{}});
  Tensor x = random_tensor(shape, 7, -100.0f, 100.0f);  // underflow to 0 and overflow to inf included
  float* p = x.data<float>();
  p[0] = std::numeric_limits<float>::quiet_NaN();
  p[1] = -std::numeric_limits<float>::infinity();
  p[2] = 88.7f;
  p[3] = -0.0f;
  compare(m, {{"x", x}}, "exp_f32", expect_bytes_equal);
}

// Neg, Abs, Sqrt, Reciprocal and Pow by a constant scalar (RMSNorm's
// Pow(x, 2) and Sqrt, rotary embeddings' Neg) do the reference's expression
// per element: bit-exact on NaN, infinities, signed zeros and negatives
// (Sqrt of a negative is NaN in both).
TEST(CompareSteps, FloatUnaryMathIsExact) {
  struct Case {
    const char* op;
    const char* kernel;
    Tensor exponent;  // Pow only
  };
  const Case cases[] = {
      {"Neg", "Neg_f32", Tensor()},
      {"Abs", "Abs_f32", Tensor()},
      {"Sqrt", "Sqrt_f32", Tensor()},
      {"Reciprocal", "Reciprocal_f32", Tensor()},
      {"Pow", "Pow_f32", Tensor::from_vector(std::vector<float>{2.0f}, {})},
      {"Pow", "Pow_f32", Tensor::from_vector(std::vector<float>{0.5f}, {1})},
      {"Pow", "Pow_f32", Tensor::from_vector(std::vector<float>{-1.5f}, {})},
      {"Pow", "Pow_f32", Tensor::from_vector(std::vector<int64_t>{3}, {})},
  };
  for (const Case& c : cases) {
    Model m = one_graph(13);
    const Shape shape = {5, 37};
    m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
    std::vector<std::string> inputs = {"x"};
    if (c.exponent.defined()) {
      m.graph.initializers["e"] = c.exponent;
      inputs.push_back("e");
    }
    m.graph.nodes.push_back(make_node("u", c.op, inputs, {"y"}));
    m.graph.outputs.push_back({"y", TypeInfo{}});
    SCOPED_TRACE(c.op);
    compare(m, {{"x", awkward(shape, 3)}}, c.kernel, expect_bytes_equal);
  }
}

// A Pow whose exponent is a computed tensor stays with the reference.
TEST(CompareSteps, PowByAComputedExponentIsNotCompiled) {
  Model m = one_graph(13);
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, {4})});
  m.graph.inputs.push_back({"e", type_of(DType::kFloat32, {4})});
  m.graph.nodes.push_back(make_node("u", "Pow", {"x", "e"}, {"y"}));
  m.graph.outputs.push_back({"y", TypeInfo{}});
  CompiledModel compiled(m, default_compile_options(1));
  const Tensor e = Tensor::from_vector(std::vector<float>{1.0f, 2.0f, 0.5f, -1.0f}, {4});
  compiled.run({{"x", random_tensor({4}, 1)}, {"e", e}});
  EXPECT_NE(compiled.describe_plan().find("reference Pow"), std::string::npos) << compiled.describe_plan();
}

// What ssdlite's box decoding does, with no value_info: Exp of a computed
// value, Min / Max against constants, a Greater to bool; the compiler
// learns each input is float from the producer's op type. A second planned
// run allocates nothing.
TEST(CompareSteps, DecodingChainCompilesAndAPlannedRunAllocatesNothing) {
  Model m = one_graph(13);
  const Shape shape = {6, 4};
  m.graph.inputs.push_back({"x", type_of(DType::kFloat32, shape)});
  m.graph.initializers["clip"] = Tensor::from_vector(std::vector<float>{4.135f}, {});
  m.graph.initializers["lo"] = Tensor::from_vector(std::vector<float>{0.0f, 0.5f, 0.0f, 0.5f}, {4});
  m.graph.initializers["t"] = Tensor::from_vector(std::vector<float>{1.0f}, {1});
  m.graph.nodes.push_back(make_node("min", "Min", {"x", "clip"}, {"c"}));
  m.graph.nodes.push_back(make_node("exp", "Exp", {"c"}, {"e"}));
  m.graph.nodes.push_back(make_node("max", "Max", {"e", "lo"}, {"y"}));
  m.graph.nodes.push_back(make_node("gt", "Greater", {"y", "t"}, {"keep"}));
  m.graph.outputs.push_back({"y", TypeInfo{}});
  m.graph.outputs.push_back({"keep", TypeInfo{}});
  const Tensor x = random_tensor(shape, 11);
  const std::string plan = compare(m, {{"x", x}}, "greater_f32", expect_bytes_equal);
  for (const char* k : {"min_f32", "exp_f32", "max_f32"}) EXPECT_NE(plan.find(k), std::string::npos) << k << plan;
  test::expect_planned_run_allocates_nothing(m, shape);
}

TEST(CompareSteps, MismatchedShapesAreNamedNotACrash) {
  Model m = binary_model("Greater", {{3, 4}, {5}}, false, Tensor());
  CompiledModel compiled(m, default_compile_options(1));
  try {
    compiled.run({{"a", random_tensor({3, 4}, 1)}, {"b", random_tensor({5}, 2)}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broadcast"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvant
