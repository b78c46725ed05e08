// Compiled Gather (plain, and of a dequantized 8-bit table) and Cast steps
// against the reference executor: bit-exact, with the plan showing the step
// (not a reference fallback), and the reference's errors for bad indices.
// Also: steps whose outputs the input shapes fix (Shape -> arithmetic) run
// while planning only.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "test_graphs.h"

namespace kvant {
namespace {

Model base_model() {
  Model m;
  m.ir_version = 7;
  m.opset_imports[""] = 13;
  return m;
}

// Runs both executors on `feeds` and requires identical bytes; returns the plan.
std::string expect_same(const Model& m, const std::map<std::string, Tensor>& feeds, const std::string& out) {
  ReferenceExecutor reference(m);
  const Tensor want = reference.run(feeds).at(out);
  CompiledModel compiled(m, default_compile_options(1));
  const Tensor got = compiled.run(feeds).at(out);
  EXPECT_EQ(got.dtype(), want.dtype());
  EXPECT_EQ(got.shape(), want.shape());
  if (got.shape() == want.shape() && got.dtype() == want.dtype()) {
    EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
  }
  // A second run with the same plan gives the same bytes.
  const Tensor again = compiled.run(feeds).at(out);
  EXPECT_EQ(std::memcmp(again.raw(), want.raw(), want.nbytes()), 0);
  return compiled.describe_plan();
}

Tensor indices(std::vector<int64_t> v, Shape shape) { return Tensor::from_vector(v, shape); }

TEST(DataSteps, GatherAnyAxisAndNegativeIndices) {
  for (int64_t axis : {0, 1, -1}) {
    Model m = base_model();
    Graph& g = m.graph;
    g.inputs.push_back({"x", type_of(DType::kFloat32, {4, 5, 3})});
    g.inputs.push_back({"i", type_of(DType::kInt64, {2, 2})});
    Node n = make_node("gather", "Gather", {"x", "i"}, {"y"});
    n.attributes["axis"] = int_attr(axis);
    g.nodes.push_back(n);
    g.outputs.push_back({"y", TypeInfo{}});
    Tensor x(DType::kFloat32, {4, 5, 3});
    for (int64_t k = 0; k < x.numel(); ++k) x.data<float>()[k] = static_cast<float>(k) * 0.25f - 3.0f;
    const std::string plan = expect_same(m, {{"x", x}, {"i", indices({0, -1, 2, 1}, {2, 2})}}, "y");
    EXPECT_NE(plan.find("gather"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("reference Gather"), std::string::npos) << plan;
  }
}

TEST(DataSteps, GatherIndexOutOfRangeIsANamedError) {
  Model m = base_model();
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {4, 2})});
  g.inputs.push_back({"i", type_of(DType::kInt64, {1})});
  g.nodes.push_back(make_node("emb", "Gather", {"x", "i"}, {"y"}));
  g.outputs.push_back({"y", TypeInfo{}});
  CompiledModel compiled(m, default_compile_options(1));
  Tensor x(DType::kFloat32, {4, 2});
  compiled.run({{"x", x}, {"i", indices({3}, {1})}});
  try {
    compiled.run({{"x", x}, {"i", indices({4}, {1})}});
    FAIL() << "index 4 of a dim of 4 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("emb"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
  }
}

// An embedding table DQ(int8/uint8) -> Gather: the table stays 8-bit, rows
// are dequantized as gathered, bit-exact against DQ then Gather.
TEST(DataSteps, GatherOfDequantizedTableIsExact) {
  struct Case {
    DType dtype;
    int64_t channels;  // 1: per tensor
    int64_t dq_axis;
    int64_t gather_axis;
  };
  const Case cases[] = {{DType::kInt8, 1, 1, 0},  {DType::kUInt8, 1, 1, 0}, {DType::kInt8, 6, 1, 0},
                        {DType::kUInt8, 7, 0, 0}, {DType::kInt8, 7, 0, 1},  {DType::kInt8, 6, 1, 1}};
  for (const Case& c : cases) {
    Model m = base_model();
    Graph& g = m.graph;
    g.inputs.push_back({"i", type_of(DType::kInt64, {3})});
    Tensor table(c.dtype, {7, 6});
    for (int64_t k = 0; k < table.numel(); ++k) {
      static_cast<uint8_t*>(table.raw())[k] = static_cast<uint8_t>((k * 37 + 11) % 256);
    }
    std::vector<float> scale;
    std::vector<int64_t> zp;
    for (int64_t k = 0; k < c.channels; ++k) {
      scale.push_back(0.0123f * static_cast<float>(k + 1));
      zp.push_back(c.dtype == DType::kUInt8 ? 120 + k : k - 3);
    }
    g.initializers["table"] = table;
    g.initializers["scale"] =
        c.channels == 1 ? Tensor::from_vector(scale, {}) : Tensor::from_vector(scale, {c.channels});
    Tensor z(c.dtype, c.channels == 1 ? Shape{} : Shape{c.channels});
    for (int64_t k = 0; k < c.channels; ++k) {
      if (c.dtype == DType::kInt8) z.data<int8_t>()[k] = static_cast<int8_t>(zp[static_cast<size_t>(k)]);
      if (c.dtype == DType::kUInt8) z.data<uint8_t>()[k] = static_cast<uint8_t>(zp[static_cast<size_t>(k)]);
    }
    g.initializers["zp"] = z;
    Node dq = make_node("dq", "DequantizeLinear", {"table", "scale", "zp"}, {"w"});
    dq.attributes["axis"] = int_attr(c.dq_axis);
    g.nodes.push_back(dq);
    Node gather = make_node("gather", "Gather", {"w", "i"}, {"y"});
    gather.attributes["axis"] = int_attr(c.gather_axis);
    g.nodes.push_back(gather);
    g.outputs.push_back({"y", TypeInfo{}});
    const std::string plan = expect_same(m, {{"i", indices({5, -1, 0}, {3})}}, "y");
    // One step reads the indices alone: the DQ was not folded into a float table.
    EXPECT_NE(plan.find("gather_dequantize_u8"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("DequantizeLinear"), std::string::npos) << plan;
  }
}

TEST(DataSteps, CastMatchesTheReference) {
  const std::pair<DType, DType> casts[] = {{DType::kFloat32, DType::kInt32},
                                           {DType::kFloat32, DType::kInt8},
                                           {DType::kInt64, DType::kFloat32},
                                           {DType::kFloat32, DType::kBool},
                                           {DType::kFloat32, DType::kFloat16}};
  for (const auto& [from, to] : casts) {
    Model m = base_model();
    Graph& g = m.graph;
    g.inputs.push_back({"x", type_of(from, {9})});
    Node n = make_node("cast", "Cast", {"x"}, {"y"});
    n.attributes["to"] = int_attr(static_cast<int64_t>(to));
    g.nodes.push_back(n);
    g.outputs.push_back({"y", TypeInfo{}});
    Tensor x(from, {9});
    const double values[] = {-300.7, -1.5, -0.5, 0.0, 0.49, 1.5, 2.5, 200.9, 1e10};
    for (int64_t k = 0; k < 9; ++k) {
      if (from == DType::kFloat32) x.data<float>()[k] = static_cast<float>(values[k]);
      if (from == DType::kInt64) x.data<int64_t>()[k] = static_cast<int64_t>(values[k] * 3.0);
    }
    const std::string plan = expect_same(m, {{"x", x}}, "y");
    EXPECT_NE(plan.find("cast_to_"), std::string::npos) << plan;
  }
}

// Concat / Split / Slice of computed values are copy steps, identical to
// the reference (negative axes, steps and clamped bounds for Slice; uneven
// Split sizes; int64 and float data).
TEST(DataSteps, ConcatSplitSliceAreCopySteps) {
  for (DType dtype : {DType::kFloat32, DType::kInt64, DType::kUInt8}) {
    Model m = base_model();
    Graph& g = m.graph;
    g.inputs.push_back({"x", type_of(dtype, {2, 5, 4})});
    g.inputs.push_back({"z", type_of(dtype, {2, 3, 4})});
    Node cat = make_node("cat", "Concat", {"x", "z"}, {"c"});
    cat.attributes["axis"] = int_attr(-2);
    g.nodes.push_back(cat);
    g.initializers["sizes"] = Tensor::from_vector(std::vector<int64_t>{1, 4, 3}, {3});
    Node split = make_node("split", "Split", {"c", "sizes"}, {"s0", "s1", "s2"});
    split.attributes["axis"] = int_attr(1);
    g.nodes.push_back(split);
    g.initializers["starts"] = Tensor::from_vector(std::vector<int64_t>{-1, 100}, {2});
    g.initializers["ends"] = Tensor::from_vector(std::vector<int64_t>{-1000, -1000}, {2});
    g.initializers["axes"] = Tensor::from_vector(std::vector<int64_t>{2, 1}, {2});
    g.initializers["steps"] = Tensor::from_vector(std::vector<int64_t>{-1, -2}, {2});
    g.nodes.push_back(make_node("slice", "Slice", {"s1", "starts", "ends", "axes", "steps"}, {"t"}));
    Node cat2 = make_node("cat2", "Concat", {"t", "s2", "s0"}, {"y"});
    cat2.attributes["axis"] = int_attr(1);
    g.nodes.push_back(cat2);
    g.outputs.push_back({"y", TypeInfo{}});
    Tensor x(dtype, {2, 5, 4}), z(dtype, {2, 3, 4});
    for (Tensor* t : {&x, &z}) {
      auto* b = static_cast<uint8_t*>(t->raw());
      for (size_t k = 0; k < t->nbytes(); ++k) b[k] = static_cast<uint8_t>(k * 7 + (t == &z ? 3 : 0));
    }
    if (dtype == DType::kFloat32) {  // no NaN bit patterns: compare finite values
      for (Tensor* t : {&x, &z}) {
        for (int64_t k = 0; k < t->numel(); ++k) t->data<float>()[k] = static_cast<float>(k) + (t == &z ? 0.5f : 0.f);
      }
    }
    const std::string plan = expect_same(m, {{"x", x}, {"z", z}}, "y");
    for (const char* op : {"copy_Concat", "copy_Split", "copy_Slice"}) {
      EXPECT_NE(plan.find(op), std::string::npos) << op << "\n" << plan;
    }
    EXPECT_NE(plan.find(" 0 reference fallbacks"), std::string::npos) << plan;
  }
}

// Expand (both-way broadcast) and Tile are copy steps in any element size,
// with identical bytes to the reference; the shape comes from Shape ->
// Concat as in the grouped-query KV repeat of decoders (fixed by the input
// shapes), so a run with a new input shape re-plans it.
TEST(DataSteps, ExpandAndTileAreCopySteps) {
  for (DType dtype : {DType::kFloat32, DType::kInt64, DType::kUInt8, DType::kBool}) {
    Model m = base_model();
    Graph& g = m.graph;
    g.inputs.push_back({"x", type_of(dtype, {3, 1, 2})});
    g.inputs.push_back({"like", type_of(DType::kFloat32, {-1, -1})});
    g.nodes.push_back(make_node("shape_of", "Shape", {"like"}, {"dims"}));
    g.initializers["lead"] = Tensor::from_vector(std::vector<int64_t>{2}, {1});
    g.initializers["last"] = Tensor::from_vector(std::vector<int64_t>{1}, {1});
    Node cat = make_node("cat", "Concat", {"lead", "dims", "last"}, {"shape"});
    cat.attributes["axis"] = int_attr(0);
    g.nodes.push_back(cat);
    g.nodes.push_back(make_node("expand", "Expand", {"x", "shape"}, {"e"}));
    g.initializers["repeats"] = Tensor::from_vector(std::vector<int64_t>{2, 1, 1, 3}, {4});
    g.nodes.push_back(make_node("tile", "Tile", {"e", "repeats"}, {"y"}));
    g.outputs.push_back({"y", TypeInfo{}});
    Tensor x(dtype, {3, 1, 2});
    auto* b = static_cast<uint8_t*>(x.raw());
    for (size_t k = 0; k < x.nbytes(); ++k) b[k] = static_cast<uint8_t>(dtype == DType::kBool ? k % 2 : k * 5 + 1);
    const std::vector<Shape> likes = {{3, 4}, {1, 5}, {3, 1}};
    for (const Shape& like : likes) {
      const std::string plan = expect_same(m, {{"x", x}, {"like", Tensor(DType::kFloat32, like)}}, "y");
      EXPECT_NE(plan.find("copy_Expand"), std::string::npos) << plan;
      EXPECT_NE(plan.find("copy_Tile"), std::string::npos) << plan;
      EXPECT_NE(plan.find(" 0 reference fallbacks"), std::string::npos) << plan;
    }
    ReferenceExecutor reference(m);  // one compiled model, shapes in turn
    CompiledModel compiled(m, default_compile_options(1));
    for (const Shape& like : {likes[0], likes[1], likes[0], likes[2]}) {
      const std::map<std::string, Tensor> feeds{{"x", x}, {"like", Tensor(DType::kFloat32, like)}};
      const Tensor want = reference.run(feeds).at("y");
      const Tensor got = compiled.run(feeds).at("y");
      ASSERT_EQ(got.shape(), want.shape());
      EXPECT_EQ(std::memcmp(got.raw(), want.raw(), want.nbytes()), 0);
    }
  }
}

// Shape-giving inputs (Slice's starts, Reshape's shape, Split's sizes, Pad's
// pads, Expand's shape) that are model inputs, not fixed by the input
// shapes: a run with new values but the same input shapes must not reuse
// the planned output shapes.
TEST(DataSteps, ShapeInputsGivenAtRunTimeAreReadEveryRun) {
  Model m = base_model();
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {4, 6})});
  g.inputs.push_back({"starts", type_of(DType::kInt64, {1})});
  g.inputs.push_back({"shape", type_of(DType::kInt64, {2})});
  g.inputs.push_back({"sizes", type_of(DType::kInt64, {2})});
  g.inputs.push_back({"pads", type_of(DType::kInt64, {4})});
  g.initializers["ends"] = Tensor::from_vector(std::vector<int64_t>{6}, {1});
  g.initializers["axes"] = Tensor::from_vector(std::vector<int64_t>{1}, {1});
  g.nodes.push_back(make_node("slice", "Slice", {"x", "starts", "ends", "axes"}, {"sl"}));
  g.nodes.push_back(make_node("reshape", "Reshape", {"x", "shape"}, {"rs"}));
  Node split = make_node("split", "Split", {"x", "sizes"}, {"sp0", "sp1"});
  split.attributes["axis"] = int_attr(1);
  g.nodes.push_back(split);
  g.nodes.push_back(make_node("pad", "Pad", {"x", "pads"}, {"pd"}));
  for (const char* out : {"sl", "rs", "sp0", "sp1", "pd"}) g.outputs.push_back({out, TypeInfo{}});
  Tensor x(DType::kFloat32, {4, 6});
  for (int64_t k = 0; k < x.numel(); ++k) x.data<float>()[k] = static_cast<float>(k);
  ReferenceExecutor reference(m);
  CompiledModel compiled(m, default_compile_options(1));
  for (int round = 0; round < 3; ++round) {
    const bool b = round == 1;
    const std::map<std::string, Tensor> feeds{
        {"x", x},
        {"starts", indices({b ? 4 : 1}, {1})},
        {"shape", indices(b ? std::vector<int64_t>{2, 12} : std::vector<int64_t>{8, 3}, {2})},
        {"sizes", indices(b ? std::vector<int64_t>{1, 5} : std::vector<int64_t>{4, 2}, {2})},
        {"pads", indices(b ? std::vector<int64_t>{0, 1, 2, 0} : std::vector<int64_t>{1, 0, 0, 0}, {4})}};
    const auto want = reference.run(feeds);
    const auto got = compiled.run(feeds);
    for (const char* out : {"sl", "rs", "sp0", "sp1", "pd"}) {
      ASSERT_EQ(got.at(out).shape(), want.at(out).shape()) << out << " round " << round;
      EXPECT_EQ(std::memcmp(got.at(out).raw(), want.at(out).raw(), want.at(out).nbytes()), 0) << out;
    }
  }
}

TEST(DataSteps, ExpandToAnIncompatibleShapeIsTheReferencesError) {
  Model m = base_model();
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {3, 2})});
  g.inputs.push_back({"shape", type_of(DType::kInt64, {2})});
  g.nodes.push_back(make_node("rep", "Expand", {"x", "shape"}, {"y"}));
  g.outputs.push_back({"y", TypeInfo{}});
  CompiledModel compiled(m, default_compile_options(1));
  Tensor x(DType::kFloat32, {3, 2});
  compiled.run({{"x", x}, {"shape", indices({3, 2}, {2})}});
  try {
    compiled.run({{"x", x}, {"shape", indices({4, 2}, {2})}});
    FAIL() << "Expand of [3,2] to [4,2] was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rep"), std::string::npos) << e.what();
  }
}

// Pad in every mode, with growing and cropping pads, at opset 13 (inputs)
// and 10 (attributes), float and int8: identical to the reference, which
// the ONNX backend tests check against the spec.
TEST(DataSteps, PadEveryModeMatchesTheReference) {
  const std::vector<std::vector<int64_t>> pad_sets = {
      {0, 1, 2, 0, 2, 1}, {1, 0, 3, 1, 2, 0}, {0, -1, 2, 0, 1, -2}, {0, 0, 0, 0, 0, 0}};
  for (const char* mode : {"constant", "reflect", "edge", "wrap"}) {
    for (const auto& pads : pad_sets) {
      for (int64_t opset : {10, 13}) {
        for (DType dtype : {DType::kFloat32, DType::kInt8}) {
          Model m = base_model();
          m.opset_imports[""] = opset;
          Graph& g = m.graph;
          g.inputs.push_back({"x", type_of(dtype, {2, 3, 4})});
          Node n = make_node("pad", "Pad", {"x"}, {"y"});
          n.attributes["mode"] = string_attr(mode);
          if (opset < 11) {
            n.attributes["pads"] = ints_attr(pads);
            n.attributes["value"] = float_attr(-2.5f);
          } else {
            g.initializers["pads"] = Tensor::from_vector(pads, {6});
            n.inputs.push_back("pads");
            Tensor v(dtype, {});
            if (dtype == DType::kFloat32) v.data<float>()[0] = 7.25f;
            if (dtype == DType::kInt8) v.data<int8_t>()[0] = -9;
            g.initializers["value"] = v;
            n.inputs.push_back("value");
          }
          g.nodes.push_back(n);
          g.outputs.push_back({"y", TypeInfo{}});
          Tensor x(dtype, {2, 3, 4});
          for (int64_t k = 0; k < x.numel(); ++k) {
            if (dtype == DType::kFloat32) x.data<float>()[k] = static_cast<float>(k) - 5.5f;
            if (dtype == DType::kInt8) x.data<int8_t>()[k] = static_cast<int8_t>(k * 5 - 60);
          }
          const std::string plan = expect_same(m, {{"x", x}}, "y");
          EXPECT_NE(plan.find("copy_Pad"), std::string::npos) << mode << "\n" << plan;
        }
      }
    }
  }
}

TEST(DataSteps, ConcatOfMismatchedShapesIsTheReferencesError) {
  Model m = base_model();
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {2, 3})});
  g.inputs.push_back({"z", type_of(DType::kFloat32, {3, 3})});
  Node cat = make_node("joint", "Concat", {"x", "z"}, {"y"});
  cat.attributes["axis"] = int_attr(1);
  g.nodes.push_back(cat);
  g.outputs.push_back({"y", TypeInfo{}});
  CompiledModel compiled(m, default_compile_options(1));
  try {
    compiled.run({{"x", Tensor(DType::kFloat32, {2, 3})}, {"z", Tensor(DType::kFloat32, {3, 3})}});
    FAIL() << "mismatched Concat inputs were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("joint"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("outside axis"), std::string::npos) << e.what();
  }
}

// A reference kernel that returns its input (Dropout in training mode with
// ratio 0, as torchvision's Swin exports it) must not leave its output
// aliasing the input's arena bytes, which the plan reuses for later values.
TEST(DataSteps, FallbackOutputThatIsItsInputGetsItsOwnBytes) {
  Model m = base_model();
  Graph& g = m.graph;
  g.inputs.push_back({"x", type_of(DType::kFloat32, {2, 8, 8})});
  g.initializers["ratio"] = Tensor::scalar<float>(0.0f);
  Tensor train(DType::kBool, {});
  *static_cast<bool*>(train.raw()) = true;
  // training_mode as a model input keeps the Dropout a reference step (a
  // constant one compiles to a view, fp32_steps_test.cc).
  g.inputs.push_back({"train", type_of(DType::kBool, {})});
  Tensor w(DType::kFloat32, {8, 8});
  for (int64_t k = 0; k < w.numel(); ++k) w.data<float>()[k] = static_cast<float>((k * 13) % 7) - 3.0f;
  g.initializers["w"] = w;
  Node sm = make_node("sm", "Softmax", {"x"}, {"p"});
  sm.attributes["axis"] = int_attr(-1);
  g.nodes = {sm, make_node("drop", "Dropout", {"p", "ratio", "train"}, {"d", "mask"}),
             make_node("mm", "MatMul", {"d", "w"}, {"a"}), make_node("relu", "Relu", {"a"}, {"b"}),
             make_node("mm2", "MatMul", {"b", "w"}, {"y"})};
  g.outputs.push_back({"y", TypeInfo{}});
  Tensor x(DType::kFloat32, {2, 8, 8});
  for (int64_t k = 0; k < x.numel(); ++k) x.data<float>()[k] = static_cast<float>((k * 7) % 11) * 0.3f;
  ReferenceExecutor reference(m);
  const Tensor want = reference.run({{"x", x}, {"train", train}}).at("y");
  CompiledModel compiled(m, default_compile_options(1));
  for (int run = 0; run < 2; ++run) {
    const Tensor got = compiled.run({{"x", x}, {"train", train}}).at("y");
    ASSERT_NE(compiled.describe_plan().find("reference Dropout"), std::string::npos) << compiled.describe_plan();
    ASSERT_EQ(got.shape(), want.shape());
    for (int64_t k = 0; k < want.numel(); ++k) {
      ASSERT_NEAR(got.data<float>()[k], want.data<float>()[k], 1e-4f * (1.0f + std::fabs(want.data<float>()[k])))
          << "element " << k << ", run " << run << "\n"
          << compiled.describe_plan();
    }
  }
}

// Shape -> Gather -> Unsqueeze -> Concat -> Reshape: the shape arithmetic
// depends on the input's shape only, so the plan runs it once; a new batch
// size replans and recomputes it.
TEST(DataSteps, ShapeArithmeticIsFixedByThePlan) {
  Model m = base_model();
  Graph& g = m.graph;
  TypeInfo t;
  t.dtype = DType::kFloat32;
  t.has_shape = true;
  t.dims = {Dim{-1, "batch"}, Dim{6, ""}};
  g.inputs.push_back({"x", t});
  g.initializers["zero"] = Tensor::from_vector(std::vector<int64_t>{0}, {});
  g.initializers["tail"] = Tensor::from_vector(std::vector<int64_t>{2, 3}, {2});
  g.initializers["axes"] = Tensor::from_vector(std::vector<int64_t>{0}, {1});
  g.nodes.push_back(make_node("shape", "Shape", {"x"}, {"s"}));
  g.nodes.push_back(make_node("batch", "Gather", {"s", "zero"}, {"b"}));
  g.nodes.push_back(make_node("unsq", "Unsqueeze", {"b", "axes"}, {"b1"}));
  Node cat = make_node("cat", "Concat", {"b1", "tail"}, {"new_shape"});
  cat.attributes["axis"] = int_attr(0);
  g.nodes.push_back(cat);
  g.nodes.push_back(make_node("reshape", "Reshape", {"x", "new_shape"}, {"y"}));
  g.outputs.push_back({"y", TypeInfo{}});
  CompiledModel compiled(m, default_compile_options(1));
  for (int64_t batch : {2, 5, 2}) {
    Tensor x(DType::kFloat32, {batch, 6});
    for (int64_t k = 0; k < x.numel(); ++k) x.data<float>()[k] = static_cast<float>(k);
    const Tensor y = compiled.run({{"x", x}}).at("y");
    ASSERT_EQ(y.shape(), (Shape{batch, 2, 3}));
    EXPECT_EQ(std::memcmp(y.raw(), x.raw(), x.nbytes()), 0);
    EXPECT_EQ(compiled.stats().fallback_steps, 0) << compiled.describe_plan();
    EXPECT_GE(compiled.stats().fixed_steps, 3) << compiled.describe_plan();
  }
}

}  // namespace
}  // namespace kvant
