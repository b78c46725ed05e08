#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "onnx/reader.h"
#include "onnx/writer.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;

const fs::path kTestData = "/usr/share/libonnx-testdata/data";

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("kvant_writer_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

Model small_model() {
  Model m;
  m.opset_imports[""] = 13;
  m.graph.name = "g";
  m.graph.inputs.push_back({"x", {DType::kFloat32, true, {{-1, "batch"}, {4, ""}}}});
  m.graph.outputs.push_back({"y", {DType::kFloat32, true, {{-1, "batch"}, {4, ""}}}});
  Tensor w(DType::kFloat32, {4096});
  for (int i = 0; i < 4096; ++i) w.data<float>()[i] = static_cast<float>(i) * 0.5f;
  m.graph.initializers["w"] = w;
  Node add;
  add.name = "add0";
  add.op_type = "Add";
  add.inputs = {"x", "w4t"};
  add.outputs = {"y"};
  Node transpose;  // an ints attribute to round-trip
  transpose.name = "transpose_w";
  transpose.op_type = "Transpose";
  transpose.inputs = {"w4"};
  transpose.outputs = {"w4t"};
  Attribute a;
  a.kind = Attribute::Kind::kInts;
  a.ints = {0, 1};
  transpose.attributes["perm"] = a;
  Node reshape;
  reshape.name = "shape_w";
  reshape.op_type = "Reshape";
  reshape.inputs = {"w", "shape"};
  reshape.outputs = {"w4"};
  m.graph.initializers["shape"] = Tensor::from_vector<int64_t>({1024, 4}, {2});
  m.graph.nodes = {reshape, transpose, add};
  return m;
}

void expect_same(const Model& a, const Model& b) {
  ASSERT_EQ(a.graph.nodes.size(), b.graph.nodes.size());
  for (size_t i = 0; i < a.graph.nodes.size(); ++i) {
    EXPECT_EQ(a.graph.nodes[i].op_type, b.graph.nodes[i].op_type);
    EXPECT_EQ(a.graph.nodes[i].inputs, b.graph.nodes[i].inputs);
    EXPECT_EQ(a.graph.nodes[i].attributes.size(), b.graph.nodes[i].attributes.size());
  }
  ASSERT_EQ(a.graph.initializers.size(), b.graph.initializers.size());
  for (const auto& [name, t] : a.graph.initializers) {
    const Tensor& u = b.graph.initializers.at(name);
    ASSERT_EQ(t.shape(), u.shape()) << name;
    EXPECT_EQ(std::memcmp(t.raw(), u.raw(), t.nbytes()), 0) << name;
  }
  EXPECT_EQ(a.graph.inputs[0].type.to_string(), b.graph.inputs[0].type.to_string());
  EXPECT_EQ(a.opset(), b.opset());
}

TEST(OnnxWriter, RoundTripsInline) {
  const fs::path dir = temp_dir("inline");
  const Model m = small_model();
  const Status saved = save_onnx(m, dir / "m.onnx");
  ASSERT_TRUE(saved.ok()) << saved.message();
  auto back = load_onnx(dir / "m.onnx");
  ASSERT_TRUE(back.ok()) << back.status().message();
  expect_same(m, *back);
  EXPECT_FALSE(fs::exists(dir / "m.onnx.data"));
  fs::remove_all(dir);
}

TEST(OnnxWriter, RoundTripsExternalData) {
  const fs::path dir = temp_dir("external");
  const Model m = small_model();
  SaveOptions options;
  options.force_external_data = true;
  ASSERT_TRUE(save_onnx(m, dir / "m.onnx", options).ok());
  EXPECT_TRUE(fs::exists(dir / "m.onnx.data"));
  auto back = load_onnx(dir / "m.onnx");
  ASSERT_TRUE(back.ok()) << back.status().message();
  expect_same(m, *back);
  fs::remove_all(dir);
}

TEST(OnnxWriter, RoundTripsAConformanceModelWithSubgraphs) {
  const fs::path src = kTestData / "node/test_loop11/model.onnx";
  if (!fs::exists(src)) GTEST_FAIL() << "libonnx-testdata is not installed";
  auto m = load_onnx(src);
  ASSERT_TRUE(m.ok()) << m.status().message();
  const fs::path dir = temp_dir("loop");
  ASSERT_TRUE(save_onnx(*m, dir / "loop.onnx").ok());
  auto back = load_onnx(dir / "loop.onnx");
  ASSERT_TRUE(back.ok()) << back.status().message();
  expect_same(*m, *back);
  fs::remove_all(dir);
}

TEST(OnnxWriter, RefusesToOverwriteTheSourceModel) {
  const fs::path dir = temp_dir("overwrite");
  ASSERT_TRUE(save_onnx(small_model(), dir / "m.onnx").ok());
  auto m = load_onnx(dir / "m.onnx");
  ASSERT_TRUE(m.ok());
  const auto before = fs::file_size(dir / "m.onnx");
  const Status s = save_onnx(*m, dir / "m.onnx");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("refusing to overwrite"), std::string::npos) << s.message();
  EXPECT_EQ(fs::file_size(dir / "m.onnx"), before);
  fs::remove_all(dir);
}

TEST(OnnxWriter, MissingFolderIsAClearErrorAndLeavesNothing) {
  const fs::path dir = temp_dir("missing");
  const Status s = save_onnx(small_model(), dir / "nope" / "m.onnx");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("does not exist"), std::string::npos) << s.message();
  EXPECT_TRUE(fs::is_empty(dir));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvant
