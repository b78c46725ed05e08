// End-to-end model tests: real architectures exported from PyTorch
// (scripts/make_fixtures.py) run through the ReferenceExecutor and compared
// with PyTorch's own outputs on the same inputs.
//
// For each output:  max_i |kvant_i - torch_i| / max_i |torch_i|  <=  1e-4.
// The error is measured against the output's largest magnitude, not per
// element: a float32 sum of thousands of products (a 3x3x512 convolution, a
// 3072-wide feed-forward) legitimately differs from PyTorch's in the last
// bits depending on summation order, and elements near zero would make a
// per-element relative error meaningless. 1e-4 is ~1000 float32 ulps of the
// largest value, which summation-order noise through 50+ layers stays far
// below, while a wrong kernel (off-by-one window, wrong epsilon, wrong
// broadcast) misses it by orders of magnitude.
//
// Fixtures live in $KVANT_FIXTURES (default <source>/.fixtures)/<name>/:
// model.onnx and test_data_set_0/input_K.pb, output_K.pb, inputs fed in graph
// input order. A missing fixture fails the test (never skips it).
//
// The bundled demo model (models/fashion_mnist_cnn.onnx, scripts/train_demo_cnn.py)
// is checked on its three sample images: each is classified as its label (as
// PyTorch does), and a batch of all three gives the same logits as one by one.
//
// Diagnostics: the first node whose output holds NaN/Inf is named, and the
// time spent per operator type is printed. KVANT_MODEL_TRACE=1 prints every
// node's output shape and max |x| as it runs.

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "io/npy.h"
#include "onnx/reader.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr double kMaxRelativeError = 1e-4;

fs::path fixtures_root() {
  const char* env = std::getenv("KVANT_FIXTURES");
  if (env != nullptr && *env != '\0') return fs::path(env);
  return fs::path(KVANT_SOURCE_DIR) / ".fixtures";
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// input_K.pb / output_K.pb sorted by K (input_10 after input_9).
std::vector<fs::path> numbered_files(const fs::path& dir, const std::string& prefix) {
  std::vector<std::pair<int, fs::path>> found;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string stem = entry.path().stem().string();
    if (entry.path().extension() != ".pb" || stem.rfind(prefix, 0) != 0) continue;
    const std::string number = stem.substr(prefix.size());
    if (number.empty() ||
        !std::all_of(number.begin(), number.end(), [](unsigned char ch) { return std::isdigit(ch) != 0; }))
      continue;
    found.emplace_back(std::stoi(number), entry.path());
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> files;
  for (auto& [index, path] : found) files.push_back(std::move(path));
  return files;
}

struct Comparison {
  double max_abs_diff = 0;
  double max_abs_want = 0;
  int64_t worst_index = -1;
  int64_t non_finite = 0;  // NaN/Inf in kvant's output where torch's is finite
  double relative() const { return max_abs_want > 0 ? max_abs_diff / max_abs_want : max_abs_diff; }
};

Comparison compare(const Tensor& got, const Tensor& want) {
  Comparison c;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double w = want.get_as_double(i);
    const double g = got.get_as_double(i);
    c.max_abs_want = std::max(c.max_abs_want, std::fabs(w));
    if (!std::isfinite(g) && std::isfinite(w)) {
      ++c.non_finite;
      continue;
    }
    const double diff = std::fabs(g - w);
    if (diff > c.max_abs_diff) {
      c.max_abs_diff = diff;
      c.worst_index = i;
    }
  }
  return c;
}

// Watches every node: time per operator type, the first non-finite output.
class NodeWatcher {
 public:
  explicit NodeWatcher(bool trace) : trace_(trace), last_(Clock::now()) {}

  void operator()(const Node& node, const std::vector<Tensor>& outputs) {
    const auto now = Clock::now();
    seconds_per_op_[node.op_type] += std::chrono::duration<double>(now - last_).count();
    ++count_per_op_[node.op_type];
    for (size_t k = 0; k < outputs.size(); ++k) {
      const Tensor& t = outputs[k];
      if (!t.defined() || !is_float(t.dtype())) continue;
      double max_abs = 0;
      bool finite = true;
      for (int64_t i = 0; i < t.numel(); ++i) {
        const double v = t.get_as_double(i);
        if (!std::isfinite(v)) finite = false;
        max_abs = std::max(max_abs, std::fabs(v));
      }
      if (!finite && first_non_finite_.empty()) {
        first_non_finite_ = node.describe() + " output " + std::to_string(k) + " \"" +
                            (k < node.outputs.size() ? node.outputs[k] : "") + "\"";
      }
      if (trace_) {
        std::cout << "  " << node.describe() << " -> " << t.describe() << " max|x| " << max_abs << "\n";
      }
    }
    last_ = Clock::now();  // the scan above is not charged to the next node
  }

  const std::string& first_non_finite() const { return first_non_finite_; }

  std::string time_report() const {
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& [op, s] : seconds_per_op_) rows.emplace_back(s, op);
    std::sort(rows.rbegin(), rows.rend());
    std::ostringstream out;
    out << std::fixed << std::setprecision(3);
    for (const auto& [s, op] : rows) out << "    " << op << " x" << count_per_op_.at(op) << ": " << s << " s\n";
    return out.str();
  }

 private:
  bool trace_;
  Clock::time_point last_;
  std::map<std::string, double> seconds_per_op_;
  std::map<std::string, int> count_per_op_;
  std::string first_non_finite_;
};

class ModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelTest, MatchesPyTorch) {
  const std::string name = GetParam();
  const fs::path root = fixtures_root();
  const fs::path dir = root / name;
  const fs::path data = dir / "test_data_set_0";
  ASSERT_TRUE(fs::exists(dir / "model.onnx") && fs::is_directory(data))
      << "fixture " << dir << " is missing: make it with\n  /usr/bin/python3 scripts/make_fixtures.py --out " << root
      << "\n(scripts/test.sh does this first; KVANT_FIXTURES selects another folder)";

  const auto load_start = Clock::now();
  auto model = load_onnx(dir / "model.onnx");
  ASSERT_TRUE(model.ok()) << model.status().message();
  const double load_seconds = seconds_since(load_start);

  const auto input_files = numbered_files(data, "input_");
  const auto output_files = numbered_files(data, "output_");
  const auto& graph_inputs = model->graph.inputs;
  const auto& graph_outputs = model->graph.outputs;
  ASSERT_EQ(input_files.size(), graph_inputs.size()) << "input_K.pb files vs graph inputs";
  ASSERT_EQ(output_files.size(), graph_outputs.size()) << "output_K.pb files vs graph outputs";

  std::map<std::string, Tensor> feeds;
  for (size_t i = 0; i < input_files.size(); ++i) {
    auto t = load_tensor_pb(input_files[i]);
    ASSERT_TRUE(t.ok()) << t.status().message();
    feeds[graph_inputs[i].name] = std::move(*t);
  }

  const char* trace = std::getenv("KVANT_MODEL_TRACE");
  NodeWatcher watcher(trace != nullptr && std::string(trace) == "1");
  std::map<std::string, Tensor> outputs;
  double run_seconds = 0;
  try {
    ReferenceExecutor executor(*model);
    executor.set_observer([&](const Node& node, const std::vector<Tensor>& values) { watcher(node, values); });
    const auto run_start = Clock::now();
    outputs = executor.run(feeds);
    run_seconds = seconds_since(run_start);
  } catch (const Error& e) {
    FAIL() << name << ": " << e.what();
  }
  // The compiled model (fast kernels, arena, 2 threads) against the same outputs.
  std::map<std::string, Tensor> compiled_outputs;
  double compiled_seconds = 0;
  try {
    CompiledModel compiled(*model, default_compile_options(2));
    const auto run_start = Clock::now();
    compiled_outputs = compiled.run(feeds);
    compiled_seconds = seconds_since(run_start);
    std::cout << name << " compiled: " << compiled.stats().kernel_steps << " kernel steps, "
              << compiled.stats().fallback_steps << " reference fallbacks; first run (plans, then runs) "
              << compiled_seconds << " s\n";
  } catch (const Error& e) {
    FAIL() << name << " compiled: " << e.what();
  }

  std::cout << name << ": " << model->graph.nodes.size() << " nodes, load " << std::fixed << std::setprecision(2)
            << load_seconds << " s, run " << run_seconds << " s; time per operator:\n"
            << watcher.time_report();
  RecordProperty("load_seconds", std::to_string(load_seconds));
  RecordProperty("run_seconds", std::to_string(run_seconds));

  for (size_t k = 0; k < output_files.size(); ++k) {
    const std::string& output_name = graph_outputs[k].name;
    auto want = load_tensor_pb(output_files[k]);
    ASSERT_TRUE(want.ok()) << want.status().message();
    auto it = outputs.find(output_name);
    ASSERT_NE(it, outputs.end()) << "output \"" << output_name << "\" was not produced";
    const Tensor& got = it->second;
    ASSERT_EQ(got.dtype(), want->dtype()) << output_name;
    ASSERT_EQ(got.shape(), want->shape()) << output_name << ": " << got.describe() << " vs " << want->describe();

    const Comparison c = compare(got, *want);
    std::cout << "  output \"" << output_name << "\" " << got.describe() << ": max|diff| " << std::scientific
              << std::setprecision(3) << c.max_abs_diff << ", max|torch| " << c.max_abs_want << ", relative "
              << c.relative() << std::fixed << "\n";
    EXPECT_EQ(c.non_finite, 0) << output_name << " has " << c.non_finite
                               << " NaN/Inf elements; first non-finite value came from "
                               << (watcher.first_non_finite().empty() ? "?" : watcher.first_non_finite());
    EXPECT_LE(c.relative(), kMaxRelativeError)
        << output_name << ": max|kvant - torch| / max|torch| = " << c.relative() << " (worst element " << c.worst_index
        << ": kvant " << got.get_as_double(c.worst_index) << ", torch " << want->get_as_double(c.worst_index)
        << "); rerun with KVANT_MODEL_TRACE=1 to see every node";
  }
  for (size_t k = 0; k < output_files.size(); ++k) {
    const std::string& output_name = graph_outputs[k].name;
    auto want = load_tensor_pb(output_files[k]);
    ASSERT_TRUE(want.ok()) << want.status().message();
    auto it = compiled_outputs.find(output_name);
    ASSERT_NE(it, compiled_outputs.end()) << "compiled: output \"" << output_name << "\" was not produced";
    ASSERT_EQ(it->second.shape(), want->shape()) << output_name;
    const Comparison c = compare(it->second, *want);
    std::cout << "  compiled output \"" << output_name << "\": relative " << std::scientific << c.relative()
              << std::fixed << "\n";
    EXPECT_EQ(c.non_finite, 0) << "compiled " << output_name;
    EXPECT_LE(c.relative(), kMaxRelativeError)
        << "compiled " << output_name << ": max|kvant - torch| / max|torch| = " << c.relative();
  }
}

// The fixture names come from CMake (tests/models/CMakeLists.txt), the one
// list that also registers one ctest per model.
std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  std::stringstream list(KVANT_MODEL_FIXTURES);
  for (std::string name; std::getline(list, name, ',');) names.push_back(name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, ModelTest, ::testing::ValuesIn(fixture_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

int64_t argmax(const Tensor& logits, int64_t row) {
  const int64_t classes = logits.dim(1);
  int64_t best = 0;
  for (int64_t c = 1; c < classes; ++c) {
    if (logits.get_as_double(row * classes + c) > logits.get_as_double(row * classes + best)) best = c;
  }
  return best;
}

TEST(DemoModel, ClassifiesBundledSamples) {
  const fs::path models = fs::path(KVANT_SOURCE_DIR) / "models";
  auto model = load_onnx(models / "fashion_mnist_cnn.onnx");
  ASSERT_TRUE(model.ok()) << model.status().message();

  // "fashion_mnist_K.npy: label N (...)" lines, as scripts/demo.sh reads them.
  std::ifstream readme(models / "samples" / "README.md");
  ASSERT_TRUE(readme) << "models/samples/README.md is missing";
  std::map<int, int64_t> labels;
  const std::regex line_pattern(R"(^fashion_mnist_(\d+)\.npy: label (\d+))");
  for (std::string line; std::getline(readme, line);) {
    std::smatch m;
    if (std::regex_search(line, m, line_pattern)) labels[std::stoi(m[1])] = std::stoll(m[2]);
  }
  ASSERT_EQ(labels.size(), 3u) << "expected labels for 3 samples in models/samples/README.md";
  ASSERT_EQ(labels.begin()->first, 0);
  ASSERT_EQ(labels.rbegin()->first, 2);

  ReferenceExecutor executor(*model);
  Tensor batch(DType::kFloat32, {3, 1, 28, 28});
  std::vector<Tensor> single_logits;
  for (const auto& [index, label] : labels) {
    auto image = read_npy(models / "samples" / ("fashion_mnist_" + std::to_string(index) + ".npy"));
    ASSERT_TRUE(image.ok()) << image.status().message();
    ASSERT_EQ(image->shape(), (Shape{1, 1, 28, 28}));
    std::copy_n(image->data<float>(), 28 * 28, batch.data<float>() + index * 28 * 28);
    auto outputs = executor.run({{"image", *image}});
    const Tensor& logits = outputs.at("logits");
    ASSERT_EQ(logits.shape(), (Shape{1, 10}));
    EXPECT_EQ(argmax(logits, 0), label) << "sample " << index;
    single_logits.push_back(logits);
  }

  // Dynamic batch: N = 3 must give each image's logits as N = 1 did.
  auto outputs = executor.run({{"image", batch}});
  const Tensor& logits = outputs.at("logits");
  ASSERT_EQ(logits.shape(), (Shape{3, 10}));
  for (int64_t row = 0; row < 3; ++row) {
    for (int64_t c = 0; c < 10; ++c) {
      const double single = single_logits[static_cast<size_t>(row)].get_as_double(c);
      EXPECT_NEAR(logits.get_as_double(row * 10 + c), single, 1e-4 * (1 + std::fabs(single)))
          << "row " << row << " class " << c;
    }
  }
}

// The Fashion-MNIST zoo (models/fmnist, scripts/train_fmnist_models.py): kvant
// reproduces PyTorch's logits on the 8 saved test images.
class ZooTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ZooTest, MatchesPyTorch) {
  const fs::path root(KVANT_SOURCE_DIR);
  const std::string name = GetParam();
  auto model = load_onnx(root / "models" / "fmnist" / (name + ".onnx"));
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto input = read_npy(root / "tests" / "data" / "fmnist" / (name + "_input.npy"));
  auto expected = read_npy(root / "tests" / "data" / "fmnist" / (name + "_logits.npy"));
  ASSERT_TRUE(input.ok() && expected.ok());
  ReferenceExecutor executor(*model);
  const Tensor got = executor.run({{"image", *input}}).at("logits");
  ASSERT_EQ(got.shape(), expected->shape());
  double max_ref = 0, max_err = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    max_ref = std::max(max_ref, std::fabs(expected->get_as_double(i)));
    max_err = std::max(max_err, std::fabs(got.get_as_double(i) - expected->get_as_double(i)));
  }
  EXPECT_LE(max_err, 1e-4 * max_ref) << name;
}

INSTANTIATE_TEST_SUITE_P(Fmnist, ZooTest,
                         ::testing::Values("resnet_small", "mobilenet_small", "mobilenet_relu", "mobilenet_skewed",
                                           "lstm_rows", "vit_tiny"),
                         [](const auto& info) { return info.param; });

// A QDQ model exported by PyTorch's quantization-aware training
// (scripts/make_qat_fixture.py): kvant's QDQ simulation gives PyTorch's
// fake-quantized logits to within one output quantization step on at least
// 99.9% of the elements.
TEST(ZooQat, PyTorchQatExportMatchesWithinOneStep) {
  const fs::path root(KVANT_SOURCE_DIR);
  auto model = load_onnx(root / "models" / "fmnist" / "qat_cnn.onnx");
  ASSERT_TRUE(model.ok()) << model.status().message();
  auto input = read_npy(root / "tests" / "data" / "fmnist" / "qat_cnn_input.npy");
  auto expected = read_npy(root / "tests" / "data" / "fmnist" / "qat_cnn_logits.npy");
  ASSERT_TRUE(input.ok() && expected.ok());
  // The step: the scale of the DequantizeLinear that produces the logits.
  float step = 0;
  for (const Node& n : model->graph.nodes) {
    if (n.op_type == "DequantizeLinear" && n.outputs[0] == "logits") {
      step = static_cast<float>(model->graph.initializers.at(n.inputs[1]).get_as_double(0));
    }
  }
  ASSERT_GT(step, 0.0f) << "the QAT export should end in DequantizeLinear -> logits";
  ReferenceExecutor executor(*model);
  const Tensor got = executor.run({{"image", *input}}).at("logits");
  ASSERT_EQ(got.shape(), expected->shape());
  int64_t within = 0;
  for (int64_t i = 0; i < got.numel(); ++i) {
    within += std::fabs(got.get_as_double(i) - expected->get_as_double(i)) <= step * (1 + 1e-5);
  }
  EXPECT_GE(static_cast<double>(within), 0.999 * static_cast<double>(got.numel()))
      << within << " of " << got.numel() << " within one step (" << step << ")";
}

}  // namespace
}  // namespace kvant
