// codes_through_moves (passes/codes_through_moves.cc): data movement between
// a DequantizeLinear and a QuantizeLinear of the same scale and zero point
// moves the codes. The reference executor gives the same bytes before and
// after, the Q/DQ pairs go, and the compiled runtime matches the reference.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <sstream>
#include <string>

#include "passes/pass.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

Tensor ints(const std::vector<int64_t>& v) { return Tensor::from_vector(v, {static_cast<int64_t>(v.size())}); }

// "q3" (GCC 12 warns wrongly on "q" + std::to_string).
std::string numbered(char prefix, int k) {
  std::ostringstream os;
  os << prefix << k;
  return os.str();
}

int count_ops(const Graph& g, const std::string& op) {
  int n = 0;
  for (const Node& node : g.nodes) n += node.op_type == op ? 1 : 0;
  return n;
}

// x [1,8,4,5] -> Q -> DQ, split in two channel halves (Slice), Concat'ed in
// the other order, channel shuffle (Reshape -> Transpose -> Reshape), a
// Shape of a DQ output, each move followed by Q/DQ with the scale `s` and
// zero point `zp`; one more Reshape followed by a Q of another scale.
Model shuffle_model(bool int8) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {1, 8, 4, 5})});
  g.initializers["s"] = Tensor::scalar<float>(0.037f);
  g.initializers["s2"] = Tensor::scalar<float>(0.05f);
  if (int8) {
    g.initializers["zp"] = Tensor::scalar<int8_t>(-3);
  } else {
    g.initializers["zp"] = Tensor::scalar<uint8_t>(128);
  }
  g.initializers["zero"] = ints({0});
  g.initializers["four"] = ints({4});
  g.initializers["eight"] = ints({8});
  g.initializers["one"] = ints({1});
  g.initializers["shape5"] = ints({1, 2, 4, 4, 5});
  g.initializers["shape4"] = ints({1, -1, 4, 5});
  g.initializers["flat"] = ints({1, -1});
  int k = 0;
  // Q -> DQ after `v`: returns the DQ's output.
  auto qdq = [&](const std::string& v, const std::string& scale = "s") {
    const std::string q = numbered('q', k), d = numbered('d', k);
    ++k;
    g.nodes.push_back(make_node(q, "QuantizeLinear", {v, scale, "zp"}, {q}));
    g.nodes.push_back(make_node(d, "DequantizeLinear", {q, scale, "zp"}, {d}));
    return d;
  };
  const std::string xd = qdq("x");
  g.nodes.push_back(make_node("shape", "Shape", {xd}, {"shp"}));
  g.nodes.push_back(make_node("lo", "Slice", {xd, "zero", "four", "one"}, {"lo"}));
  const std::string lo = qdq("lo");
  g.nodes.push_back(make_node("hi", "Slice", {xd, "four", "eight", "one"}, {"hi"}));
  const std::string hi = qdq("hi");
  Node cat = make_node("cat", "Concat", {hi, lo}, {"cat"});
  set_attr(cat, "axis", int64_t{1});
  g.nodes.push_back(cat);
  const std::string cd = qdq("cat");
  g.nodes.push_back(make_node("r5", "Reshape", {cd, "shape5"}, {"r5"}));
  const std::string r5 = qdq("r5");
  Node t = make_node("t", "Transpose", {r5}, {"t"});
  set_attr(t, "perm", std::vector<int64_t>{0, 2, 1, 3, 4});
  g.nodes.push_back(t);
  const std::string td = qdq("t");
  g.nodes.push_back(make_node("r4", "Reshape", {td, "shape4"}, {"r4"}));
  const std::string y = qdq("r4");
  g.nodes.push_back(make_node("other", "Reshape", {y, "flat"}, {"flat_out"}));
  qdq("flat_out", "s2");
  g.nodes.push_back(make_node("id", "Identity", {numbered('d', k - 1)}, {"z"}));
  g.outputs.push_back({y, type_of(DType::kFloat32, {1, 8, 4, 5})});
  g.outputs.push_back({"z", type_of(DType::kFloat32, {1, 160})});
  g.outputs.push_back({"shp", type_of(DType::kInt64, {4})});
  return m;
}

Tensor input(uint32_t seed) {
  std::mt19937 rng(seed);
  return uniform({1, 8, 4, 5}, rng, -5.0f, 5.0f);
}

void expect_same(const std::map<std::string, Tensor>& want, const std::map<std::string, Tensor>& got,
                 const std::string& what) {
  for (const auto& [name, t] : want) {
    ASSERT_TRUE(got.count(name)) << what << ": output " << name << " missing";
    const Tensor& g = got.at(name);
    ASSERT_EQ(g.shape(), t.shape()) << what << ": " << name;
    ASSERT_EQ(g.nbytes(), t.nbytes());
    EXPECT_EQ(std::memcmp(g.raw(), t.raw(), t.nbytes()), 0) << what << ": output " << name << " differs";
  }
}

TEST(CodesThroughMoves, ShuffleSplitConcatMoveCodes) {
  for (bool int8 : {false, true}) {
    const std::string what = int8 ? "int8" : "uint8";
    const Model before = shuffle_model(int8);
    Model after = before;
    run_to_fixed_point(after.graph, {codes_through_moves, eliminate_dead_nodes});
    // Left: the input's Q, the Q of another scale after the last Reshape,
    // and the DQs that make floats for the outputs (y, z).
    EXPECT_EQ(count_ops(after.graph, "QuantizeLinear"), 2) << what << "\n" << print_graph(after.graph);
    EXPECT_EQ(count_ops(after.graph, "DequantizeLinear"), 2) << what << "\n" << print_graph(after.graph);
    for (const Node& n : after.graph.nodes) {
      if (n.op_type == "Shape") {
        EXPECT_EQ(n.inputs[0], "q0") << what << ": Shape reads the codes";
      }
    }
    for (uint32_t seed = 1; seed <= 3; ++seed) {
      const auto want = ReferenceExecutor(before).run({{"x", input(seed)}});
      expect_same(want, ReferenceExecutor(after).run({{"x", input(seed)}}), what + " reference after");
      CompiledModel compiled(before, default_compile_options(1));
      expect_same(want, compiled.run({{"x", input(seed)}}), what + " compiled");
    }
  }
}

// A Q whose scale or zero point differs from its DQ's, or a move whose float
// output has a second reader, stays.
TEST(CodesThroughMoves, DifferentScaleOrSecondReaderStays) {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {2, 6})});
  g.initializers["s"] = Tensor::scalar<float>(0.1f);
  g.initializers["s2"] = Tensor::scalar<float>(0.1000001f);
  g.initializers["zp"] = Tensor::scalar<uint8_t>(10);
  g.initializers["zp2"] = Tensor::scalar<uint8_t>(11);
  g.initializers["shape"] = ints({3, 4});
  g.nodes = {make_node("q", "QuantizeLinear", {"x", "s", "zp"}, {"xq"}),
             make_node("d", "DequantizeLinear", {"xq", "s", "zp"}, {"xd"}),
             make_node("r1", "Reshape", {"xd", "shape"}, {"r1"}),
             make_node("q1", "QuantizeLinear", {"r1", "s2", "zp"}, {"y1"}),
             make_node("r2", "Reshape", {"xd", "shape"}, {"r2"}),
             make_node("q2", "QuantizeLinear", {"r2", "s", "zp2"}, {"y2"}),
             make_node("r3", "Reshape", {"xd", "shape"}, {"r3"}),
             make_node("q3", "QuantizeLinear", {"r3", "s", "zp"}, {"y3"}),
             make_node("n3", "Neg", {"r3"}, {"y4"})};
  for (const char* o : {"y1", "y2", "y3"}) g.outputs.push_back({o, type_of(DType::kUInt8, {3, 4})});
  g.outputs.push_back({"y4", type_of(DType::kFloat32, {3, 4})});
  Model after = m;
  EXPECT_FALSE(codes_through_moves(after.graph)) << print_graph(after.graph);
  EXPECT_EQ(count_ops(after.graph, "QuantizeLinear"), 4);
}

}  // namespace
}  // namespace kvant
