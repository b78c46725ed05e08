// ONNX reader: LoadOptions (input shape overrides, shape inference) and one
// clear, well-placed error for every kind of bad file (DESIGN.md §7).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "onnx/onnx_pb.h"
#include "onnx/reader.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;

onnx::ModelProto make_model(int64_t opset = 13) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.set_producer_name("kvant-test");
  auto* op = m.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  m.mutable_graph()->set_name("main");
  return m;
}

// dims: -1 becomes the symbol "N".
void set_type(onnx::ValueInfoProto* v, const std::string& name, const std::vector<int64_t>& dims,
              bool with_shape = true) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(onnx::TensorProto::FLOAT);
  if (!with_shape) return;
  auto* shape = tt->mutable_shape();
  for (int64_t d : dims) {
    auto* dim = shape->add_dim();
    if (d < 0) {
      dim->set_dim_param("N");
    } else {
      dim->set_dim_value(d);
    }
  }
}

void add_input(onnx::GraphProto* g, const std::string& name, const std::vector<int64_t>& dims) {
  set_type(g->add_input(), name, dims);
}
void add_output(onnx::GraphProto* g, const std::string& name) {
  auto* o = g->add_output();
  o->set_name(name);
  o->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
}

onnx::NodeProto* add_node(onnx::GraphProto* g, const std::string& op, const std::vector<std::string>& inputs,
                          const std::vector<std::string>& outputs, const std::string& name = "") {
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_name(name.empty() ? op + "_" + std::to_string(g->node_size()) : name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  return n;
}

onnx::TensorProto* add_weight(onnx::GraphProto* g, const std::string& name, const std::vector<int64_t>& dims,
                              const std::vector<float>& values) {
  auto* t = g->add_initializer();
  t->set_name(name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : dims) t->add_dims(d);
  t->set_raw_data(values.data(), values.size() * sizeof(float));
  return t;
}

// x[2,3] -> Relu -> y
onnx::ModelProto relu_model() {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {2, 3});
  add_node(g, "Relu", {"x"}, {"y"}, "relu");
  add_output(g, "y");
  return m;
}

Result<Model> load(const onnx::ModelProto& m, const LoadOptions& options = {}, const fs::path& base_dir = {}) {
  const std::string bytes = m.SerializeAsString();
  return load_onnx_bytes(bytes.data(), bytes.size(), base_dir, "test.onnx", options);
}

// The load must fail and its message must contain every one of `parts`.
void expect_error(const Result<Model>& r, const std::vector<std::string>& parts) {
  ASSERT_FALSE(r.ok()) << "expected a load error mentioning " << (parts.empty() ? "" : parts[0]);
  for (const auto& p : parts) {
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "message \"" << r.status().message() << "\" does not mention \"" << p << "\"";
  }
}

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("kvant_reader_test_" + std::to_string(rd()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream out(path_ / name, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

 private:
  fs::path path_;
};

// ---------------------------------------------------------------- options

TEST(OnnxReader, LoadsASimpleModel) {
  auto r = load(relu_model());
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->graph.nodes.size(), 1u);
  EXPECT_EQ(r->graph.nodes[0].op_type, "Relu");
  EXPECT_EQ(r->opset(), 13);
  EXPECT_TRUE(r->warnings.empty()) << r->warnings[0];
}

TEST(OnnxReader, InputShapesOverrideSymbolicDims) {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {-1, 3});
  add_node(g, "Relu", {"x"}, {"t"});
  add_node(g, "Neg", {"t"}, {"y"});
  add_output(g, "y");
  LoadOptions options;
  options.input_shapes["x"] = {5, 3};
  auto r = load(m, options);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const TypeInfo& in = r->graph.inputs[0].type;
  ASSERT_EQ(in.dims.size(), 2u);
  EXPECT_EQ(in.dims[0].value, 5);
  EXPECT_EQ(in.dims[1].value, 3);
  // Shape inference carried the new batch through the intermediate and output.
  ASSERT_TRUE(r->graph.value_info.count("t"));
  EXPECT_EQ(r->graph.value_info["t"].type.to_string(), "float32[5,3]");
  EXPECT_EQ(r->graph.outputs[0].type.to_string(), "float32[5,3]");
}

TEST(OnnxReader, NoInferenceLeavesValueInfoEmpty) {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {2, 3});
  add_node(g, "Relu", {"x"}, {"t"});
  add_node(g, "Neg", {"t"}, {"y"});
  add_output(g, "y");
  LoadOptions options;
  options.infer_shapes = false;
  auto r = load(m, options);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_FALSE(r->graph.value_info.count("t"));
}

TEST(OnnxReader, InputShapesUnknownNameListsInputs) {
  auto m = make_model();
  add_input(m.mutable_graph(), "x", {2, 3});
  add_input(m.mutable_graph(), "mask", {2, 3});
  add_node(m.mutable_graph(), "Add", {"x", "mask"}, {"y"});
  add_output(m.mutable_graph(), "y");
  LoadOptions options;
  options.input_shapes["imgs"] = {1, 3};
  expect_error(load(m, options), {"test.onnx", "\"imgs\"", "\"x\"", "\"mask\""});
}

TEST(OnnxReader, InputShapesWrongRank) {
  LoadOptions options;
  options.input_shapes["x"] = {1, 2, 3};
  expect_error(load(relu_model(), options), {"test.onnx", "\"x\"", "rank 3", "rank 2"});
}

TEST(OnnxReader, InputShapesNegativeDim) {
  LoadOptions options;
  options.input_shapes["x"] = {-2, 3};
  expect_error(load(relu_model(), options), {"\"x\"", "negative"});
}

TEST(OnnxReader, InfersShapesInsideSubgraphs) {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {2, 3});
  auto* c = g->add_input();
  c->set_name("c");
  c->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::BOOL);
  c->mutable_type()->mutable_tensor_type()->mutable_shape();
  auto* node = add_node(g, "If", {"c"}, {"y"}, "if");
  for (const char* branch : {"then_branch", "else_branch"}) {
    auto* a = node->add_attribute();
    a->set_name(branch);
    a->set_type(onnx::AttributeProto::GRAPH);
    auto* sub = a->mutable_g();
    sub->set_name(branch);
    add_node(sub, "Relu", {"x"}, {std::string(branch) + "_t"});
    add_node(sub, "Neg", {std::string(branch) + "_t"}, {std::string(branch) + "_o"});
    add_output(sub, std::string(branch) + "_o");
  }
  add_output(g, "y");
  auto r = load(m);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Graph* then_branch = r->graph.nodes[0].attr_graph("then_branch");
  ASSERT_NE(then_branch, nullptr);
  ASSERT_TRUE(then_branch->value_info.count("then_branch_t")) << print_graph(*then_branch);
  EXPECT_EQ(then_branch->value_info.at("then_branch_t").type.to_string(), "float32[2,3]");
  EXPECT_EQ(r->graph.outputs[0].type.to_string(), "float32[2,3]");
}

TEST(OnnxReader, ShapeInferenceFailureIsAWarning) {
  auto m = relu_model();
  // The declared output contradicts what Relu of [2,3] gives: inference throws.
  set_type(m.mutable_graph()->mutable_output(0), "y", {7});
  auto r = load(m);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("test.onnx"), std::string::npos);
  EXPECT_NE(r->warnings[0].find("shape inference"), std::string::npos);
}

// Found by fuzz_onnx_reader: libonnx's Scan shape inference dereferences
// null when num_scan_inputs is missing. The load succeeds, with a warning.
TEST(OnnxReader, FuzzRegressionScanWithoutNumScanInputs) {
  auto m = make_model(9);
  auto* g = m.mutable_graph();
  add_input(g, "initial", {2});
  add_input(g, "x", {3, 2});
  auto* node = add_node(g, "Scan", {"initial", "x"}, {"y", "z"}, "scan");
  auto* a = node->add_attribute();
  a->set_name("body");
  a->set_type(onnx::AttributeProto::GRAPH);
  auto* body = a->mutable_g();
  add_input(body, "sum_in", {2});
  add_input(body, "next", {2});
  add_node(body, "Add", {"sum_in", "next"}, {"sum_out"});
  add_node(body, "Identity", {"sum_out"}, {"scan_out"});
  add_output(body, "sum_out");
  add_output(body, "scan_out");
  auto* wrong = node->add_attribute();  // the required attribute, misspelled
  wrong->set_name("num_sc\x9f\x91\xa0\x99nputs");
  wrong->set_type(onnx::AttributeProto::INT);
  wrong->set_i(1);
  add_output(g, "y");
  add_output(g, "z");
  auto r = load(m);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("Scan"), std::string::npos) << r->warnings[0];
}

// Found by fuzz_onnx_reader: libonnx 1.12's ConvTranspose inference reads
// past the weight's dims when W has a lower rank than X. The load succeeds
// with a warning naming the node; running it is then refused by the operator.
TEST(OnnxReader, FuzzRegressionConvTransposeWeightRank) {
  auto m = make_model(11);
  auto* g = m.mutable_graph();
  add_input(g, "x", {1, 1, 3, 3});
  add_input(g, "w", {1, 3, 3});
  add_node(g, "ConvTranspose", {"x", "w"}, {"y"}, "deconv");
  add_output(g, "y");
  auto r = load(m);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("deconv"), std::string::npos) << r->warnings[0];
  EXPECT_NE(r->warnings[0].find("rank"), std::string::npos) << r->warnings[0];
}

// Found by fuzz_onnx_reader: libonnx 1.12's LayerNormalization inference
// indexes X's dims by axis unchecked; a rank-0 X crashed it. The load
// succeeds with a warning naming the node.
TEST(OnnxReader, FuzzRegressionLayerNormOfAScalar) {
  auto m = make_model(17);
  auto* g = m.mutable_graph();
  add_input(g, "x", {});
  add_input(g, "scale", {5});
  add_node(g, "LayerNormalization", {"x", "scale"}, {"y"}, "ln");
  add_output(g, "y");
  auto r = load(m);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("ln"), std::string::npos) << r->warnings[0];
  EXPECT_NE(r->warnings[0].find("axis"), std::string::npos) << r->warnings[0];
}

// Found by fuzz_onnx_reader (in CI): libonnx 1.12's pooling inference
// divides by the strides; a zero stride raised SIGFPE. The load succeeds with
// a warning naming the node and the attribute.
TEST(OnnxReader, FuzzRegressionMaxPoolZeroStride) {
  auto m = make_model(12);
  auto* g = m.mutable_graph();
  add_input(g, "x", {1, 1, 5, 5});
  auto* node = add_node(g, "MaxPool", {"x"}, {"y"}, "pool");
  auto* k = node->add_attribute();
  k->set_name("kernel_shape");
  k->set_type(onnx::AttributeProto::INTS);
  k->add_ints(2);
  k->add_ints(2);
  auto* s = node->add_attribute();
  s->set_name("strides");
  s->set_type(onnx::AttributeProto::INTS);
  s->add_ints(2);
  s->add_ints(0);
  add_output(g, "y");
  auto r = load(m);
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_NE(r->warnings[0].find("pool"), std::string::npos) << r->warnings[0];
  EXPECT_NE(r->warnings[0].find("strides"), std::string::npos) << r->warnings[0];
}

// Every input that once crashed the fuzzer loads to a model or an error here
// too, so the sanitizer build of the unit tests guards them without fuzzing.
TEST(OnnxReader, FuzzRegressionFilesLoadOrFailCleanly) {
  const std::filesystem::path dir = std::filesystem::path(KVANT_SOURCE_DIR) / "tests/fuzz/regressions";
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    auto r = load_onnx(entry.path());
    if (!r.ok()) {
      EXPECT_FALSE(r.status().message().empty()) << entry.path();
    }
    ++files;
  }
  EXPECT_GE(files, 3);
}

TEST(OnnxReader, OpsetRange) {
  auto m = relu_model();
  m.mutable_opset_import(0)->set_version(21);
  EXPECT_TRUE(load(m).ok());
  m.mutable_opset_import(0)->set_version(22);
  expect_error(load(m), {"test.onnx", "opset 22", "1 to 21"});
  m.mutable_opset_import(0)->set_version(0);
  expect_error(load(m), {"opset 0"});
}

// ---------------------------------------------------------------- not ONNX

TEST(OnnxReader, RejectsEmptyTextPngAndTruncatedFiles) {
  expect_error(load_onnx_bytes("", 0, {}, "empty.onnx"), {"empty.onnx", "empty"});
  const std::string text = "name,score\nresnet,0.76\nThis is a CSV, not a model.\n";
  expect_error(load_onnx_bytes(text.data(), text.size(), {}, "notes.onnx"), {"notes.onnx", "not an ONNX model"});
  const unsigned char png[] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, 'I', 'H',  'D',  'R',
                               0,    0,   1,   0,   0,    0,    1,    0,    8, 6, 0, 0,    0,   0x1f, 0x15, 0xc4};
  expect_error(load_onnx_bytes(png, sizeof(png), {}, "cat.onnx"), {"cat.onnx", "PNG"});

  auto m = relu_model();
  add_weight(m.mutable_graph(), "W", {64}, std::vector<float>(64, 1.0f));
  const std::string bytes = m.SerializeAsString();
  for (size_t cut : {bytes.size() / 2, bytes.size() - 1, size_t{1}, size_t{7}}) {
    auto r = load_onnx_bytes(bytes.data(), cut, {}, "cut.onnx");
    ASSERT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_NE(r.status().message().find("cut.onnx"), std::string::npos) << r.status().message();
  }
}

TEST(OnnxReader, RandomBytesNeverCrash) {
  std::mt19937 rng(1234);
  for (int i = 0; i < 300; ++i) {
    std::string bytes(static_cast<size_t>(rng() % 400 + 1), '\0');
    for (auto& b : bytes) b = static_cast<char>(rng());
    auto r = load_onnx_bytes(bytes.data(), bytes.size(), {}, "random.onnx");
    if (!r.ok()) {
      EXPECT_EQ(r.status().message().rfind("random.onnx: ", 0), 0u) << r.status().message();
    }
  }
}

TEST(OnnxReader, RejectsMissingFile) {
  auto r = load_onnx("/nonexistent/kvant/model.onnx");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/kvant/model.onnx"), std::string::npos);
}

// ---------------------------------------------------------------- bad graphs

TEST(OnnxReader, DanglingInputNamesNodeAndValue) {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {2, 3});
  add_node(g, "Add", {"x", "W"}, {"y"}, "add1");
  add_output(g, "y");
  expect_error(load(m), {"test.onnx", "\"add1\"", "\"W\""});
}

TEST(OnnxReader, Cycle) {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {2, 3});
  add_node(g, "Add", {"x", "b"}, {"a"}, "n1");
  add_node(g, "Relu", {"a"}, {"b"}, "n2");
  add_output(g, "b");
  expect_error(load(m), {"test.onnx", "cycle"});
}

TEST(OnnxReader, UnknownOpsLoadAndAreListedTogether) {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {2, 3});
  add_node(g, "FrobnicateA", {"x"}, {"a"}, "f1");
  add_node(g, "FrobnicateB", {"a"}, {"b"}, "f2");
  add_node(g, "FrobnicateA", {"b"}, {"y"}, "f3");
  add_output(g, "y");
  auto r = load(m);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const auto missing = unsupported_operators(*r);
  ASSERT_EQ(missing.size(), 2u);
  EXPECT_NE(missing[0].find("FrobnicateA"), std::string::npos);
  EXPECT_NE(missing[0].find("\"f3\""), std::string::npos);
  EXPECT_NE(missing[1].find("FrobnicateB"), std::string::npos);
  try {
    ReferenceExecutor exec(*r);
    FAIL() << "the executor accepted unknown operators";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("FrobnicateA"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("FrobnicateB"), std::string::npos);
  }
}

TEST(OnnxReader, OutputNothingProduces) {
  auto m = relu_model();
  add_output(m.mutable_graph(), "ghost");
  expect_error(load(m), {"test.onnx", "\"ghost\"", "not produced"});
}

TEST(OnnxReader, DuplicateNodeOutputs) {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {2, 3});
  add_node(g, "Relu", {"x"}, {"y"}, "first");
  add_node(g, "Neg", {"x"}, {"y"}, "second");
  add_output(g, "y");
  expect_error(load(m), {"test.onnx", "\"y\"", "already defined"});
}

TEST(OnnxReader, NodeWithoutOpType) {
  auto m = relu_model();
  m.mutable_graph()->mutable_node(0)->clear_op_type();
  expect_error(load(m), {"test.onnx", "op_type"});
}

// Builds If nodes nested `depth` deep in then_branch.
void nest_ifs(onnx::GraphProto* g, int depth, const std::string& out) {
  if (depth == 0) {
    add_node(g, "Identity", {"x"}, {out});
    add_output(g, out);
    return;
  }
  auto* node = add_node(g, "If", {"c"}, {out});
  auto* then_attr = node->add_attribute();
  then_attr->set_name("then_branch");
  then_attr->set_type(onnx::AttributeProto::GRAPH);
  nest_ifs(then_attr->mutable_g(), depth - 1, out + "t");
  auto* else_attr = node->add_attribute();
  else_attr->set_name("else_branch");
  else_attr->set_type(onnx::AttributeProto::GRAPH);
  nest_ifs(else_attr->mutable_g(), 0, out + "e");
  add_output(g, out);
}

TEST(OnnxReader, SubgraphDepthBomb) {
  for (int depth : {4, 20, 200}) {
    auto m = make_model();
    auto* g = m.mutable_graph();
    add_input(g, "x", {2});
    auto* c = g->add_input();
    c->set_name("c");
    c->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::BOOL);
    nest_ifs(g, depth, "y");
    auto r = load(m);
    if (depth == 4) {
      EXPECT_TRUE(r.ok()) << r.status().message();
    } else {
      ASSERT_FALSE(r.ok()) << "depth " << depth;
      EXPECT_NE(r.status().message().find("test.onnx"), std::string::npos);
    }
    if (depth == 20) {
      EXPECT_NE(r.status().message().find("levels deep"), std::string::npos) << r.status().message();
    }
  }
}

// ---------------------------------------------------------------- weights

TEST(OnnxReader, RawDataShorterThanDims) {
  auto m = relu_model();
  add_weight(m.mutable_graph(), "W", {4, 4}, std::vector<float>(3, 1.0f));
  expect_error(load(m), {"test.onnx", "initializer \"W\"", "raw_data holds 12 bytes", "64"});
}

TEST(OnnxReader, TypedFieldShorterThanDims) {
  auto m = relu_model();
  auto* t = m.mutable_graph()->add_initializer();
  t->set_name("B");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(1000000000);  // 4 GB promised, 2 floats held: must fail before allocating
  t->add_float_data(1.0f);
  t->add_float_data(2.0f);
  expect_error(load(m), {"test.onnx", "initializer \"B\"", "holds 2 values"});

  auto m2 = relu_model();
  auto* i64 = m2.mutable_graph()->add_initializer();
  i64->set_name("shape");
  i64->set_data_type(onnx::TensorProto::INT64);
  i64->add_dims(3);
  i64->add_int64_data(1);
  expect_error(load(m2), {"initializer \"shape\"", "holds 1 values"});
}

TEST(OnnxReader, DimsWhoseProductOverflows) {
  auto m = relu_model();
  auto* t = m.mutable_graph()->add_initializer();
  t->set_name("huge");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(int64_t{1} << 40);
  t->add_dims(int64_t{1} << 40);
  t->add_dims(int64_t{1} << 40);
  expect_error(load(m), {"initializer \"huge\"", "too large"});

  auto m2 = relu_model();
  auto* neg = m2.mutable_graph()->add_initializer();
  neg->set_name("neg");
  neg->set_data_type(onnx::TensorProto::FLOAT);
  neg->add_dims(-4);
  expect_error(load(m2), {"initializer \"neg\"", "negative"});
}

TEST(OnnxReader, UnknownDataType) {
  auto m = relu_model();
  auto* t = add_weight(m.mutable_graph(), "W", {1}, {1.0f});
  t->set_data_type(99);
  expect_error(load(m), {"initializer \"W\"", "99"});
}

TEST(OnnxReader, ConstantNodeTensorIsChecked) {
  auto m = relu_model();
  auto* node = add_node(m.mutable_graph(), "Constant", {}, {"k"}, "const1");
  auto* a = node->add_attribute();
  a->set_name("value");
  a->set_type(onnx::AttributeProto::TENSOR);
  a->mutable_t()->set_data_type(onnx::TensorProto::FLOAT);
  a->mutable_t()->add_dims(10);
  a->mutable_t()->set_raw_data(std::string(8, '\0'));
  expect_error(load(m), {"test.onnx", "\"const1\"", "\"value\"", "raw_data"});
}

// ---------------------------------------------------------------- external data

onnx::ModelProto external_model(const std::string& location, int64_t offset = -1, int64_t length = -1) {
  auto m = make_model();
  auto* g = m.mutable_graph();
  add_input(g, "x", {4});
  add_node(g, "Add", {"x", "W"}, {"y"}, "add");
  add_output(g, "y");
  auto* t = g->add_initializer();
  t->set_name("W");
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->add_dims(4);
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* kv = t->add_external_data();
  kv->set_key("location");
  kv->set_value(location);
  if (offset >= 0) {
    kv = t->add_external_data();
    kv->set_key("offset");
    kv->set_value(std::to_string(offset));
  }
  if (length >= 0) {
    kv = t->add_external_data();
    kv->set_key("length");
    kv->set_value(std::to_string(length));
  }
  return m;
}

std::string floats_bytes(const std::vector<float>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

TEST(OnnxReader, ExternalDataLoads) {
  TempDir dir;
  const std::vector<float> w = {1.5f, -2.0f, 3.25f, 1e-3f};
  dir.write("weights.bin", "PAD!" + floats_bytes(w));
  dir.write("model.onnx", external_model("weights.bin", 4, 16).SerializeAsString());
  auto r = load_onnx(dir.path() / "model.onnx");
  ASSERT_TRUE(r.ok()) << r.status().message();
  const Tensor& t = r->graph.initializers.at("W");
  ASSERT_EQ(t.numel(), 4);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(t.data<float>()[i], w[static_cast<size_t>(i)]);

  // Without offset and length: the whole file from the start.
  fs::create_directories(dir.path() / "data");
  dir.write("data/w.bin", floats_bytes(w));
  dir.write("model2.onnx", external_model("data/w.bin").SerializeAsString());
  auto r2 = load_onnx(dir.path() / "model2.onnx");
  ASSERT_TRUE(r2.ok()) << r2.status().message();
  EXPECT_EQ(r2->graph.initializers.at("W").data<float>()[2], 3.25f);
}

TEST(OnnxReader, ExternalDataMissingOrShort) {
  TempDir dir;
  dir.write("missing.onnx", external_model("nothere.bin").SerializeAsString());
  auto r = load_onnx(dir.path() / "missing.onnx");
  expect_error(r, {"missing.onnx", "initializer \"W\"", "nothere.bin", "does not exist"});

  dir.write("short.bin", std::string(10, '\0'));
  dir.write("short.onnx", external_model("short.bin").SerializeAsString());
  expect_error(load_onnx(dir.path() / "short.onnx"), {"short.onnx", "\"W\"", "runs past its end"});

  dir.write("off.bin", std::string(16, '\0'));
  dir.write("off.onnx", external_model("off.bin", 8, 16).SerializeAsString());
  expect_error(load_onnx(dir.path() / "off.onnx"), {"off.onnx", "\"W\"", "runs past its end"});

  dir.write("len.onnx", external_model("off.bin", 0, 12).SerializeAsString());
  expect_error(load_onnx(dir.path() / "len.onnx"), {"\"W\"", "length 12"});

  // A model in memory has no folder to read from.
  expect_error(load(external_model("off.bin")), {"\"W\"", "memory"});
}

TEST(OnnxReader, ExternalDataMayNotEscapeTheFolder) {
  TempDir dir;
  fs::create_directories(dir.path() / "m");
  dir.write("secret.bin", std::string(16, 'x'));
  dir.write("m/up.onnx", external_model("../secret.bin").SerializeAsString());
  expect_error(load_onnx(dir.path() / "m" / "up.onnx"), {"up.onnx", "\"W\"", "escapes"});

  dir.write("m/etc.onnx", external_model("../../etc/passwd").SerializeAsString());
  expect_error(load_onnx(dir.path() / "m" / "etc.onnx"), {"\"W\"", "escapes"});

  dir.write("m/abs.onnx", external_model((dir.path() / "secret.bin").string()).SerializeAsString());
  expect_error(load_onnx(dir.path() / "m" / "abs.onnx"), {"\"W\"", "relative"});

  fs::create_symlink(dir.path() / "secret.bin", dir.path() / "m" / "link.bin");
  dir.write("m/link.onnx", external_model("link.bin").SerializeAsString());
  expect_error(load_onnx(dir.path() / "m" / "link.onnx"), {"\"W\"", "escapes", "link"});

  auto m = external_model("w.bin");
  auto* kv = m.mutable_graph()->mutable_initializer(0)->add_external_data();
  kv->set_key("offset");
  kv->set_value("-5");
  dir.write("m/neg.onnx", m.SerializeAsString());
  expect_error(load_onnx(dir.path() / "m" / "neg.onnx"), {"\"W\"", "not a number"});
}

}  // namespace
}  // namespace kvant
