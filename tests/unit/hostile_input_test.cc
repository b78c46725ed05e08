// Hostile inputs end in a clear error, never a hang, a crash or an unchecked
// allocation (issue 15). Before the fixes, on a57882c:
//   defect 9   a FIFO as a model or .npy blocked forever in open(); a FIFO as
//              external data said "does not exist"; a Loop whose condition
//              never turns false ran forever;
//   defect 8   a ConstantOfShape of 805M floats allocated 3.2 GB whatever the
//              memory available; nothing counted tensor memory;
//   defect 10  the compiled executor accepted a Conv whose kernel_shape
//              contradicts W, an LSTM whose hidden_size contradicts its
//              weights, a 2-D DequantizeLinear scale; the reference refused
//              them with other messages or not at all (stride 2^62);
//   defect 11  kernel errors such as "shape ... is too large" named no node,
//              and a NUL/ESC/newline in a name was printed raw.
// The same cases, end to end through the CLI, are in tests/hostile/.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>

#include "io/input_file.h"
#include "io/npy.h"
#include "ir/limits.h"
#include "onnx/reader.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;

class HostileInput : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("kvant_hostile_unit_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    fs::remove_all(dir_);
    set_memory_budget_bytes(0);
    set_max_loop_iterations(0);
  }
  fs::path dir_;
};

// Runs `fn` with a deadline: a hang fails the test instead of the suite.
template <typename Fn>
void within_seconds(int seconds, Fn fn) {
  auto done = std::async(std::launch::async, fn);
  ASSERT_EQ(done.wait_for(std::chrono::seconds(seconds)), std::future_status::ready) << "hung";
  done.get();
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST_F(HostileInput, FifosAndDevicesAreRefusedWithoutBlocking) {
  const fs::path fifo = dir_ / "m.onnx";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  within_seconds(10, [&] {
    auto m = load_onnx(fifo);
    ASSERT_FALSE(m.ok());
    EXPECT_NE(m.status().message().find("is a FIFO"), std::string::npos) << m.status().message();
    auto t = read_npy(fifo);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(t.status().message().find("is a FIFO"), std::string::npos) << t.status().message();
  });
  auto zero = load_onnx("/dev/zero");
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("is a character device"), std::string::npos) << zero.status().message();
  EXPECT_NE(error_of([&] { InputFile in(dir_); }).find("is a folder"), std::string::npos);
  EXPECT_NE(error_of([&] { InputFile in(dir_ / "nope"); }).find("no such file"), std::string::npos);
  // A link to a regular file is followed.
  std::ofstream(dir_ / "real.bin") << "abc";
  fs::create_symlink(dir_ / "real.bin", dir_ / "link.bin");
  EXPECT_EQ(InputFile(dir_ / "link.bin").read_all(), "abc");
}

Model loop_model(bool endless) {
  Model m;
  m.opset_imports[""] = 13;
  auto body = std::make_shared<Graph>();
  body->name = "body";
  body->inputs = {{"i", {DType::kInt64, true, {}}}, {"cond_in", {DType::kBool, true, {}}}};
  body->outputs = {{"cond_out", {DType::kBool, true, {}}}};
  body->nodes = {make_node("id", "Identity", {"cond_in"}, {"cond_out"})};
  Node loop = make_node("spin", "Loop", {endless ? "" : "m", "c"}, {});
  Attribute a;
  a.kind = Attribute::Kind::kGraph;
  a.g = body;
  loop.attributes["body"] = a;
  m.graph.initializers["m"] = Tensor::scalar<int64_t>(5);
  m.graph.initializers["c"] = Tensor::scalar<bool>(true);
  // A Loop with no carried values has no outputs; Identity of M makes one.
  m.graph.nodes = {loop, make_node("out", "Identity", {"m"}, {"y"})};
  m.graph.outputs = {{"y", {DType::kInt64, true, {}}}};
  return m;
}

TEST_F(HostileInput, EndlessLoopStopsAtTheIterationCapNamingTheNode) {
  set_max_loop_iterations(1000);
  within_seconds(20, [&] {
    const Model endless = loop_model(true);
    ReferenceExecutor exec(endless);
    const std::string message = error_of([&] { exec.run({}); });
    EXPECT_NE(message.find("node \"spin\" (Loop)"), std::string::npos) << message;
    EXPECT_NE(message.find("still running after 1000 iterations"), std::string::npos) << message;
    EXPECT_NE(message.find("--max-loop-iterations"), std::string::npos) << message;
  });
  const Model bounded = loop_model(false);
  ReferenceExecutor exec(bounded);
  EXPECT_NO_THROW(exec.run({}));  // M = 5 stays under the cap
}

Model constant_of_shape(int64_t n) {
  Model m;
  m.opset_imports[""] = 13;
  m.graph.initializers["s"] = Tensor::from_vector<int64_t>({n}, {1});
  m.graph.nodes = {make_node("cos", "ConstantOfShape", {"s"}, {"y"})};
  m.graph.outputs = {{"y", {DType::kFloat32, false, {}}}};
  return m;
}

TEST_F(HostileInput, AllocationsPastTheMemoryBudgetAreRefusedNamingTheNode) {
  EXPECT_GT(memory_budget_bytes(), 0);
  set_memory_budget_bytes(64 << 20);
  const Model big = constant_of_shape(int64_t{805306368});  // 3.2 GB asked by a 100-byte model
  ReferenceExecutor reference(big);
  const std::string r = error_of([&] { reference.run({}); });
  EXPECT_NE(r.find("node \"cos\" (ConstantOfShape)"), std::string::npos) << r;
  EXPECT_NE(r.find("memory budget"), std::string::npos) << r;
  CompiledModel compiled(big);
  const std::string c = error_of([&] { compiled.run({}); });
  EXPECT_NE(c.find("node \"cos\""), std::string::npos) << c;
  EXPECT_NE(c.find("memory budget"), std::string::npos) << c;
  // Within the budget it runs, and the bytes come back afterwards.
  const int64_t before = memory_in_use_bytes();
  {
    const Model small = constant_of_shape(1 << 20);
    ReferenceExecutor exec(small);
    auto out = exec.run({});
    EXPECT_EQ(out.at("y").numel(), 1 << 20);
    EXPECT_GE(memory_in_use_bytes(), before + (4 << 20));
  }
  EXPECT_EQ(memory_in_use_bytes(), before);
  EXPECT_THROW(Tensor(DType::kFloat32, {int64_t{1} << 25}), Error);  // 128 MB > 64 MB
}

// One validation, one message, in both executors (defect 10).
void expect_both_refuse(const Model& m, const std::string& needle) {
  const std::string r = error_of([&] { ReferenceExecutor exec(m); });
  const std::string c = error_of([&] { CompiledModel compiled(m); });
  EXPECT_NE(r.find(needle), std::string::npos) << "reference: " << r;
  EXPECT_EQ(r, c) << "the compiled model must refuse it with the same message";
}

Model conv(std::vector<int64_t> kernel_shape, std::vector<int64_t> strides) {
  Model m;
  m.opset_imports[""] = 13;
  m.graph.inputs = {{"x", {DType::kFloat32, true, {{1, ""}, {1, ""}, {8, ""}, {8, ""}}}}};
  m.graph.initializers["W"] = Tensor(DType::kFloat32, {1, 1, 3, 3});
  Node n = make_node("conv", "Conv", {"x", "W"}, {"y"});
  if (!kernel_shape.empty()) set_attr(n, "kernel_shape", kernel_shape);
  if (!strides.empty()) set_attr(n, "strides", strides);
  m.graph.nodes = {n};
  m.graph.outputs = {{"y", {DType::kFloat32, false, {}}}};
  return m;
}

Model lstm(int64_t hidden_size) {
  Model m;
  m.opset_imports[""] = 14;
  m.graph.inputs = {{"x", {DType::kFloat32, true, {{2, ""}, {1, ""}, {4, ""}}}}};
  m.graph.initializers["W"] = Tensor(DType::kFloat32, {1, 16, 4});
  m.graph.initializers["R"] = Tensor(DType::kFloat32, {1, 16, 4});
  Node n = make_node("lstm", "LSTM", {"x", "W", "R"}, {"y"});
  set_attr(n, "hidden_size", hidden_size);
  m.graph.nodes = {n};
  m.graph.outputs = {{"y", {DType::kFloat32, false, {}}}};
  return m;
}

TEST(SharedValidation, BothExecutorsRefuseTheSameModelsWithTheSameMessage) {
  expect_both_refuse(conv({5, 5}, {}), "kernel_shape attribute [5,5] does not match W's shape [1,1,3,3]");
  expect_both_refuse(conv({}, {int64_t{1} << 62, 1}), "strides[0] = 4611686018427387904 is out of range");
  expect_both_refuse(lstm(5), "hidden_size 5 needs W of shape [dirs, 20, input]");
  expect_both_refuse(lstm(int64_t{1} << 40), "hidden_size 1099511627776 is out of range");
  Model dq;
  dq.opset_imports[""] = 13;
  dq.graph.initializers["q"] = Tensor(DType::kInt8, {2, 2});
  dq.graph.initializers["s"] = Tensor::from_vector<float>({1, 1, 1, 1}, {2, 2});
  dq.graph.nodes = {make_node("dq", "DequantizeLinear", {"q", "s"}, {"y"})};
  dq.graph.outputs = {{"y", {DType::kFloat32, false, {}}}};
  expect_both_refuse(dq, "has rank 2; it must be a scalar or 1-D");
  // A valid Conv passes both.
  EXPECT_NO_THROW(ReferenceExecutor exec(conv({3, 3}, {2, 2})));
  EXPECT_NO_THROW(CompiledModel compiled(conv({3, 3}, {2, 2})));
}

TEST(Messages, KernelErrorsNameTheirNodeAndNamesArePrintable) {
  Model m = constant_of_shape(-3);  // a negative dim: the kernel's own message names no node
  m.graph.nodes[0].name = "bad\x1b[2J\nname";
  ReferenceExecutor exec(m);
  const std::string message = error_of([&] { exec.run({}); });
  EXPECT_NE(message.find("node \"bad\\x1b[2J\\x0aname\" (ConstantOfShape)"), std::string::npos) << message;
  EXPECT_EQ(message.find('\x1b'), std::string::npos);
  EXPECT_EQ(message.find('\n'), std::string::npos);
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9") << "UTF-8 passes unchanged";
}

}  // namespace
}  // namespace kvant
