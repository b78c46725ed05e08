// ONNX backend conformance runner.
//
// Walks the backend test cases shipped by libonnx-testdata (node,
// pytorch-converted, pytorch-operator, simple): each case is a model.onnx and
// one or more test_data_set_N folders of input_K.pb / output_K.pb tensors.
// A case is run when kvant supports all of its operators and element types;
// its outputs are compared with ONNX's own backend-runner tolerance
// (|got - want| <= atol + rtol * |want|, rtol 1e-3, atol 1e-7, NaN == NaN),
// integers and bools exactly. A case kvant cannot run (missing operator,
// unsupported type or attribute) is skipped with its reason; the reasons are
// grouped into a markdown table (--skipped-table FILE). Any failure -> exit 1.
//
// --compiled runs each case on the compiled runtime (CompiledModel: fast
// kernels, memory plan, control-flow bodies compiled) instead of the
// reference executor; --control-flow only the cases with If/Loop/Scan.
//
// usage: kvant_conformance DATA_DIR [--filter SUBSTRING] [--skipped-table FILE] [--min-passed N] [--verbose]
//                          [--compiled] [--control-flow]

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "onnx/reader.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace fs = std::filesystem;
using namespace kvant;

namespace {

constexpr const char* kSuites[] = {"node", "pytorch-converted", "pytorch-operator", "simple"};
constexpr double kDefaultRtol = 1e-3;
constexpr double kDefaultAtol = 1e-7;

// Cases whose stored data contradicts the ONNX specification as ONNX Runtime
// and later ONNX releases read it. They are reported as skipped, with the
// reason, never counted as passed.
struct KnownIssue {
  const char* name;
  const char* reason;
};
constexpr KnownIssue kKnownTestDataIssues[] = {
    {"node/test_cast_FLOAT_to_BFLOAT16",
     "test data truncates float->bfloat16; kvant rounds to nearest even (ONNX >= 1.14 data, ONNX Runtime)"},
    {"node/test_castlike_FLOAT_to_BFLOAT16", "test data input \"like\" is [1] but the model declares [3,4]"},
    {"node/test_castlike_FLOAT_to_BFLOAT16_expanded", "test data input \"like\" is [1] but the model declares [3,4]"},
    {"node/test_castlike_BFLOAT16_to_FLOAT", "test data input \"like\" is [1] but the model declares [3,4]"},
    {"node/test_castlike_BFLOAT16_to_FLOAT_expanded", "test data input \"like\" is [1] but the model declares [3,4]"},
};

enum class Outcome { kPassed, kFailed, kSkipped };

struct CaseResult {
  Outcome outcome = Outcome::kPassed;
  std::string reason;  // why it failed or was skipped
};

std::vector<fs::path> sorted_files(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) == 0 && e.path().extension() == ".pb") files.push_back(e.path());
  }
  // input_10.pb sorts after input_9.pb: compare by the number.
  auto index = [&](const fs::path& p) {
    const std::string stem = p.stem().string();
    return std::stoi(stem.substr(prefix.size()));
  };
  std::sort(files.begin(), files.end(), [&](const fs::path& a, const fs::path& b) { return index(a) < index(b); });
  return files;
}

// Empty string when equal within tolerance, else a description of the first
// mismatch.
std::string compare(const Tensor& got, const Tensor& want, double rtol, double atol) {
  if (got.dtype() != want.dtype()) {
    return std::string("type ") + dtype_name(got.dtype()) + ", expected " + dtype_name(want.dtype());
  }
  if (got.shape() != want.shape())
    return "shape " + shape_to_string(got.shape()) + ", expected " + shape_to_string(want.shape());
  const bool floating = is_float(want.dtype());
  for (int64_t i = 0; i < want.numel(); ++i) {
    if (floating) {
      const double g = got.get_as_double(i), w = want.get_as_double(i);
      if (std::isnan(w) && std::isnan(g)) continue;
      if (std::isinf(w) && g == w) continue;
      if (!(std::fabs(g - w) <= atol + rtol * std::fabs(w))) {
        return "element " + std::to_string(i) + " is " + std::to_string(g) + ", expected " + std::to_string(w);
      }
    } else if (got.get_as_int64(i) != want.get_as_int64(i)) {
      return "element " + std::to_string(i) + " is " + std::to_string(got.get_as_int64(i)) + ", expected " +
             std::to_string(want.get_as_int64(i));
    }
  }
  return {};
}

bool use_compiled = false;

bool has_control_flow(const Graph& g) {
  for (const Node& n : g.nodes) {
    for (const auto& [k, attr] : n.attributes) {
      if (attr.g || !attr.graphs.empty()) return true;
    }
  }
  return false;
}

CaseResult run_case(const fs::path& dir, bool control_flow_only) {
  auto model = load_onnx(dir / "model.onnx");
  if (!model.ok()) {
    const bool unsupported = model.status().code() == ErrorCode::kUnsupported;
    return {unsupported ? Outcome::kSkipped : Outcome::kFailed, model.status().message()};
  }
  auto missing = unsupported_operators(*model);
  if (!missing.empty()) {
    const std::string op = missing.front().substr(0, missing.front().find(' '));
    return {Outcome::kSkipped, "missing operator " + op};
  }
  if (control_flow_only && !has_control_flow(model->graph)) return {Outcome::kSkipped, "no control flow"};
  try {
    ReferenceExecutor exec(*model);
    std::unique_ptr<CompiledModel> compiled;
    if (use_compiled) compiled = std::make_unique<CompiledModel>(*model);
    std::vector<fs::path> sets;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
    }
    std::sort(sets.begin(), sets.end());
    if (sets.empty()) return {Outcome::kSkipped, "no test data"};
    for (const auto& set : sets) {
      std::map<std::string, Tensor> feeds;
      const auto input_files = sorted_files(set, "input_");
      const auto& graph_inputs = model->graph.inputs;
      for (size_t i = 0; i < input_files.size(); ++i) {
        auto t = load_tensor_pb(input_files[i]);
        if (!t.ok()) return {Outcome::kSkipped, "input is not a tensor (sequence/optional)"};
        if (i >= graph_inputs.size()) return {Outcome::kFailed, "more input files than graph inputs"};
        // ONNX 1.12's test data stores bfloat16 tensors as uint16 (numpy has no
        // bfloat16); the bits are bfloat16's, so view them as such.
        if (graph_inputs[i].type.dtype == DType::kBFloat16 && t->dtype() == DType::kUInt16) {
          *t = t->bitcast(DType::kBFloat16);
        }
        feeds[graph_inputs[i].name] = std::move(*t);
      }
      auto outputs = compiled ? compiled->run(feeds) : exec.run(feeds);
      const auto output_files = sorted_files(set, "output_");
      for (size_t i = 0; i < output_files.size(); ++i) {
        auto want = load_tensor_pb(output_files[i]);
        if (!want.ok()) return {Outcome::kSkipped, "output is not a tensor (sequence/optional)"};
        if (i >= model->graph.outputs.size()) return {Outcome::kFailed, "more output files than graph outputs"};
        const std::string& name = model->graph.outputs[i].name;
        if (outputs.at(name).dtype() == DType::kBFloat16 && want->dtype() == DType::kUInt16) {
          *want = want->bitcast(DType::kBFloat16);  // the same test-data quirk
        }
        const std::string diff = compare(outputs.at(name), *want, kDefaultRtol, kDefaultAtol);
        if (!diff.empty()) {
          return {Outcome::kFailed, set.filename().string() + " output \"" + name + "\": " + diff};
        }
      }
    }
  } catch (const Error& e) {
    return {e.code() == ErrorCode::kUnsupported ? Outcome::kSkipped : Outcome::kFailed, e.what()};
  } catch (const std::exception& e) {
    return {Outcome::kFailed, std::string("exception: ") + e.what()};
  }
  return {Outcome::kPassed, {}};
}

// "missing operator X" stays as is; other reasons are cut to their gist.
std::string skip_group(const std::string& reason) {
  if (reason.rfind("missing operator", 0) == 0 || reason.rfind("known test-data issue", 0) == 0) return reason;
  auto colon = reason.find("): ");
  std::string gist = colon == std::string::npos ? reason : reason.substr(colon + 3);
  auto q = gist.find('"');
  if (q != std::string::npos) gist = gist.substr(0, q);
  return gist.substr(0, 90);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: kvant_conformance DATA_DIR [--filter SUBSTRING] [--skipped-table FILE] [--min-passed N] "
                 "[--verbose] [--compiled] [--control-flow]\n";
    return 2;
  }
  const fs::path root = argv[1];
  std::string filter, table_file;
  bool verbose = false, control_flow_only = false;
  int min_passed = 0;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--filter" && i + 1 < argc) {
      filter = argv[++i];
    } else if (arg == "--skipped-table" && i + 1 < argc) {
      table_file = argv[++i];
    } else if (arg == "--min-passed" && i + 1 < argc) {
      min_passed = std::atoi(argv[++i]);
    } else if (arg == "--verbose") {
      verbose = true;
    } else if (arg == "--compiled") {
      use_compiled = true;
    } else if (arg == "--control-flow") {
      control_flow_only = true;
    } else {
      std::cerr << "unknown argument " << arg << "\n";
      return 2;
    }
  }
  if (!fs::is_directory(root / "node")) {
    std::cerr << root << " does not hold the ONNX backend test data (install libonnx-testdata)\n";
    return 2;
  }
  int passed = 0, failed = 0, skipped = 0;
  std::map<std::string, std::vector<std::string>> skipped_by_reason;
  for (const char* suite : kSuites) {
    std::vector<fs::path> cases;
    std::error_code ec;
    if (!fs::is_directory(root / suite, ec)) {
      std::cout << "note: no " << suite << " folder under " << root << "\n";
      continue;
    }
    for (const auto& e : fs::directory_iterator(root / suite)) {
      if (fs::exists(e.path() / "model.onnx")) cases.push_back(e.path());
    }
    std::sort(cases.begin(), cases.end());
    for (const auto& dir : cases) {
      const std::string name = std::string(suite) + "/" + dir.filename().string();
      if (!filter.empty() && name.find(filter) == std::string::npos) continue;
      CaseResult r;
      const KnownIssue* known = nullptr;
      for (const auto& k : kKnownTestDataIssues) {
        if (name == k.name) known = &k;
      }
      r = known ? CaseResult{Outcome::kSkipped, std::string("known test-data issue: ") + known->reason}
                : run_case(dir, control_flow_only);
      switch (r.outcome) {
        case Outcome::kPassed:
          ++passed;
          if (verbose) std::cout << "PASS " << name << "\n";
          break;
        case Outcome::kFailed:
          ++failed;
          std::cout << "FAIL " << name << ": " << r.reason << "\n";
          break;
        case Outcome::kSkipped:
          ++skipped;
          skipped_by_reason[skip_group(r.reason)].push_back(name);
          if (verbose) std::cout << "SKIP " << name << ": " << r.reason << "\n";
          break;
      }
    }
  }
  if (!table_file.empty()) {
    std::vector<std::pair<std::string, std::vector<std::string>>> rows(skipped_by_reason.begin(),
                                                                       skipped_by_reason.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      return a.second.size() != b.second.size() ? a.second.size() > b.second.size() : a.first < b.first;
    });
    std::ofstream out(table_file);
    out << "| reason | cases | examples |\n|---|---:|---|\n";
    for (const auto& [reason, names] : rows) {
      out << "| " << reason << " | " << names.size() << " | ";
      for (size_t i = 0; i < names.size() && i < 3; ++i) out << (i ? ", " : "") << names[i];
      out << " |\n";
    }
  }
  std::cout << "conformance: " << passed << " passed, " << failed << " failed, " << skipped << " skipped\n";
  if (passed < min_passed) {
    std::cout << "conformance: " << passed << " passed is fewer than --min-passed " << min_passed
              << " (a case that passed before is now skipped)\n";
    return 1;
  }
  return failed == 0 ? 0 : 1;
}
