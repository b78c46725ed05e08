// Outputs are never written through a link and never replace anything but a
// regular file (io/output_file.h; issue 15, defects 1 and 2). Every case runs
// in its own temporary folder; the "victim" is a file outside it that a
// planted link points at and that must come out unchanged.
//
// Before the fix, save_onnx wrote "<out>.kvant-tmp-<pid>" and write_npy
// ".<name>.tmp-<pid>-<n>" with std::ofstream: PlantedLinksAtPredictableNames
// found the victim overwritten, and the FIFO/link targets were replaced by
// regular files.
#include "io/output_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "io/atomic_file.h"
#include "io/npy.h"
#include "onnx/reader.h"
#include "onnx/writer.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;

class OutputFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("kvant_output_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "out");
    victim_ = root_ / "victim.txt";
    std::ofstream(victim_) << "precious";
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string victim_text() const {
    std::ifstream in(victim_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // Files in out/ other than `keep`, e.g. leftover temporaries.
  std::vector<std::string> extra_files(const std::set<std::string>& keep) const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(root_ / "out")) {
      const std::string name = e.path().filename().string();
      if (!keep.count(name)) out.push_back(name);
    }
    return out;
  }

  fs::path root_, victim_;
};

Model tiny_model() {
  Model m;
  m.opset_imports[""] = 13;
  m.graph.name = "g";
  m.graph.inputs.push_back({"x", {DType::kFloat32, true, {{4, ""}}}});
  m.graph.outputs.push_back({"y", {DType::kFloat32, true, {{4, ""}}}});
  Node relu;
  relu.name = "relu";
  relu.op_type = "Relu";
  relu.inputs = {"x"};
  relu.outputs = {"y"};
  m.graph.nodes = {relu};
  return m;
}

TEST_F(OutputFileTest, PlantedLinksAtPredictableNames) {
  // Links at every name the old writers used for this process, and a few
  // pids around it, all pointing at the victim.
  std::set<std::string> planted;
  const int pid = ::getpid();
  for (int p = pid - 50; p <= pid + 50; ++p) {
    const std::string names[] = {"q.onnx.kvant-tmp-" + std::to_string(p), ".a.npy.tmp-" + std::to_string(p) + "-0",
                                 ".a.npy.tmp-" + std::to_string(p) + "-1",
                                 "q.onnx.data.kvant-tmp-" + std::to_string(p)};
    for (const auto& n : names) {
      fs::create_symlink(victim_, root_ / "out" / n);
      planted.insert(n);
    }
  }
  ASSERT_TRUE(save_onnx(tiny_model(), root_ / "out" / "q.onnx").ok());
  SaveOptions external;
  external.force_external_data = true;
  ASSERT_TRUE(save_onnx(tiny_model(), root_ / "out" / "q.onnx", external).ok());
  const Tensor t = Tensor::from_vector<float>({1, 2, 3}, {3});
  ASSERT_TRUE(write_npy(root_ / "out" / "a.npy", t).ok());
  ASSERT_TRUE(write_npy(root_ / "out" / "a.npy", t).ok());

  EXPECT_EQ(victim_text(), "precious");
  EXPECT_EQ(file_kind(root_ / "out" / "q.onnx"), "a regular file");
  EXPECT_EQ(file_kind(root_ / "out" / "a.npy"), "a regular file");
  EXPECT_TRUE(load_onnx(root_ / "out" / "q.onnx").ok());
  std::set<std::string> keep = planted;
  keep.insert({"q.onnx", "q.onnx.data", "a.npy"});
  EXPECT_EQ(extra_files(keep), std::vector<std::string>{}) << "temporary files were left behind";
}

TEST_F(OutputFileTest, SymlinkTargetIsRefusedAndTheVictimUntouched) {
  const fs::path target = root_ / "out" / "q.onnx";
  fs::create_symlink(victim_, target);
  const Status s = save_onnx(tiny_model(), target);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("symbolic link"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("q.onnx"), std::string::npos) << s.message();
  EXPECT_EQ(victim_text(), "precious");
  EXPECT_TRUE(fs::is_symlink(target));
  const Status j = write_file_atomic(target, "{}\n");
  EXPECT_FALSE(j.ok());
  EXPECT_EQ(victim_text(), "precious");
  EXPECT_EQ(extra_files({"q.onnx"}), std::vector<std::string>{});
  // A dangling link too: writing would create the file it names.
  const fs::path dangling = root_ / "out" / "d.npy";
  fs::create_symlink(root_ / "created_through_link", dangling);
  EXPECT_FALSE(write_npy(dangling, Tensor::from_vector<float>({1}, {1})).ok());
  EXPECT_FALSE(fs::exists(root_ / "created_through_link"));
}

TEST_F(OutputFileTest, FifoTargetIsRefusedNotReplaced) {
  const fs::path fifo = root_ / "out" / "pipe.onnx";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const Status s = save_onnx(tiny_model(), fifo);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("FIFO"), std::string::npos) << s.message();
  EXPECT_EQ(file_kind(fifo), "a FIFO");
  const Status n = write_npy(fifo, Tensor::from_vector<float>({1}, {1}));
  EXPECT_FALSE(n.ok());
  EXPECT_EQ(file_kind(fifo), "a FIFO");
  EXPECT_EQ(extra_files({"pipe.onnx"}), std::vector<std::string>{});
  try {
    check_output_target(fifo, true, "-o");
    ADD_FAILURE() << "check_output_target accepted a FIFO";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-o " + fifo.string() + " is a FIFO"), std::string::npos) << e.what();
  }
}

TEST_F(OutputFileTest, FolderTargetIsRefused) {
  fs::create_directories(root_ / "out" / "dir.onnx");
  const Status s = save_onnx(tiny_model(), root_ / "out" / "dir.onnx");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("a folder"), std::string::npos) << s.message();
}

TEST_F(OutputFileTest, ModesFollowUmaskOrTheReplacedFile) {
  const mode_t old = ::umask(027);
  const fs::path fresh = root_ / "out" / "fresh.json";
  ASSERT_TRUE(write_file_atomic(fresh, "{}\n").ok());
  struct stat st;
  ASSERT_EQ(::stat(fresh.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  ::umask(old);
  const fs::path kept = root_ / "out" / "kept.json";
  std::ofstream(kept) << "old";
  ASSERT_EQ(::chmod(kept.c_str(), 0604), 0);
  ASSERT_TRUE(write_file_atomic(kept, "new").ok());
  ASSERT_EQ(::stat(kept.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0604u);
}

TEST_F(OutputFileTest, UncommittedFileLeavesNothing) {
  const fs::path target = root_ / "out" / "x.bin";
  {
    OutputFile out(target);
    out.write("partial");
  }
  EXPECT_FALSE(fs::exists(target));
  EXPECT_EQ(extra_files({}), std::vector<std::string>{});
}

TEST_F(OutputFileTest, CheckOutputTargetNeedsForceForAnExistingFile) {
  const fs::path target = root_ / "out" / "q.onnx";
  EXPECT_NO_THROW(check_output_target(target, false, "-o"));
  std::ofstream(target) << "x";
  EXPECT_THROW(check_output_target(target, false, "-o"), Error);
  EXPECT_NO_THROW(check_output_target(target, true, "-o"));
  EXPECT_THROW(check_output_target(root_ / "nope" / "q.onnx", true, "-o"), Error);
}

}  // namespace
}  // namespace kvant
