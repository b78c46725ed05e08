// compare_outputs: do two runs of a quantized model agree to within one
// quantization step of its output? (tests/interop/interop_test.sh: kvant's
// reference executor against ONNX Runtime.)
//
//   compare_outputs MODEL.onnx A.npy B.npy [A2.npy B2.npy ...] [--output NAME]
//                   [--min-agree PERCENT]
//
// The step is the scale of the DequantizeLinear that produces the graph
// output, or of the nearest one upstream of it through ops that only move,
// select or clip values already on that grid (Reshape, Transpose, MaxPool,
// Relu, ...). An output that a QuantizeLinear produces is integer: step 1. A
// float output with no DequantizeLinear upstream (an excluded float Gemm, an
// FP32 model) falls back to a tolerance of 1e-4 x max|A| and says so.
// Several A/B pairs (one per input sample) are pooled.
//
// Prints one line, e.g.
//   logits: 1280 elements, 99.92% within 1 step (scale 0.0123), max diff 2.1 steps
// Exit status: 0 when at least PERCENT (default 99.9) of the elements differ
// by at most step x (1 + 1e-5); 1 when fewer do; 2 on a usage or file error.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "io/npy.h"
#include "ir/graph.h"
#include "onnx/reader.h"

namespace {

using kvant::Graph;
using kvant::Node;
using kvant::Tensor;

[[noreturn]] void die(const std::string& message) {
  std::cerr << "compare_outputs: error: " << message << "\n";
  std::exit(2);
}

// Ops whose output (along input 0) holds only values of their input, or 0,
// or values clipped to a bound: a value on a quantization grid stays on it.
const std::set<std::string>& same_value_ops() {
  static const std::set<std::string> ops = {
      "Identity", "Reshape",      "Flatten",      "Squeeze",        "Unsqueeze", "Transpose", "Relu",
      "MaxPool",  "Slice",        "Gather",       "GatherElements", "Expand",    "Tile",      "Split",
      "Pad",      "DepthToSpace", "SpaceToDepth", "GlobalMaxPool",  "ReduceMax", "ReduceMin", "Dropout"};
  return ops;
}

// How the output's step is known.
struct Step {
  enum class Kind { kScale, kInteger, kRelative } kind = Kind::kRelative;
  std::vector<float> scale;  // kScale: one per tensor, or one per channel along `axis`
  bool per_axis = false;     // scale has one value per channel along `axis` (only for a DQ producing the output)
  int64_t axis = 1;
  std::string how;  // for the report
};

const Node* producer(const Graph& graph, const std::string& value) {
  for (const Node& node : graph.nodes) {
    for (const std::string& out : node.outputs) {
      if (out == value) return &node;
    }
  }
  return nullptr;
}

std::string fmt(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

Step find_step(const Graph& graph, const std::string& output) {
  Step step;
  std::string value = output;
  std::vector<std::string> path;  // same-value ops passed through
  for (size_t depth = 0; depth <= graph.nodes.size(); ++depth) {
    const Node* node = producer(graph, value);
    if (node == nullptr) {
      step.how = graph.initializers.count(value) ? "a constant" : "a graph input";
      break;
    }
    if (node->op_type == "DequantizeLinear" && node->domain.empty()) {
      auto it = graph.initializers.find(node->inputs.size() > 1 ? node->inputs[1] : "");
      if (it == graph.initializers.end()) die("the scale of " + node->describe() + " is not a constant");
      const Tensor& scale = it->second;
      if (node->attr_int("block_size", 0) > 0) die(node->describe() + " is blocked; no single step for its output");
      step.kind = Step::Kind::kScale;
      step.scale = scale.to_float_vector();
      if (step.scale.empty()) die("the scale of " + node->describe() + " is empty");
      step.how = node->describe();
      if (step.scale.size() > 1) {
        if (path.empty()) {
          step.per_axis = true;
          step.axis = node->attr_int("axis", 1);
        } else {
          // The axis may have moved; the largest scale bounds every channel's step.
          step.scale = {*std::max_element(step.scale.begin(), step.scale.end())};
          step.how += ", largest of its per-channel scales";
        }
      }
      if (!path.empty()) {
        std::string through;
        for (const std::string& p : path) through += (through.empty() ? "" : ", ") + p;
        step.how += " through " + through;
      }
      return step;
    }
    if (node->op_type == "QuantizeLinear" && node->domain.empty()) {
      step.kind = Step::Kind::kInteger;
      step.how = node->describe();
      return step;
    }
    if (path.empty() && node->domain.empty() && (node->op_type == "Gemm" || node->op_type == "MatMul") &&
        node->inputs.size() >= 2) {
      // The float logits of a quantized Gemm/MatMul (static mode writes no
      // Q/DQ there, design decision 68). Both runs agreeing within one step
      // on every input of the layer (the invariant upstream) bounds output n
      // by x_scale x sum_k |W[k, n]|: that is the step, its largest column.
      const Node* x = producer(graph, node->inputs[0]);
      const Node* w = producer(graph, node->inputs[1]);
      auto constant = [&](const Node* dq, size_t k) -> const Tensor* {
        if (dq == nullptr || dq->op_type != "DequantizeLinear" || !dq->domain.empty() || dq->inputs.size() <= k)
          return nullptr;
        auto it = graph.initializers.find(dq->inputs[k]);
        return it == graph.initializers.end() ? nullptr : &it->second;
      };
      const Tensor *xs = constant(x, 1), *wq = constant(w, 0), *ws = constant(w, 1), *wz = constant(w, 2);
      const bool k_first = node->op_type == "MatMul" || node->attr_int("transB", 0) == 0;  // W [K, N] or [N, K]
      const int64_t axis = w ? (w->attr_int("axis", 1) == 0 ? 0 : 1) : 1;
      if (xs && wq && ws && xs->numel() == 1 && wq->rank() == 2 &&
          (ws->numel() == 1 || ws->numel() == wq->dim(static_cast<int>(axis)))) {
        const int64_t rows = wq->dim(0), cols = wq->dim(1);
        std::vector<double> column(static_cast<size_t>(k_first ? cols : rows), 0.0);
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) {
            const int64_t ch = ws->numel() == 1 ? 0 : (axis == 0 ? r : c);
            const double zp = wz == nullptr ? 0.0 : wz->get_as_double(wz->numel() == 1 ? 0 : ch);
            const double v = std::abs((wq->get_as_double(r * cols + c) - zp) * ws->get_as_double(ch));
            column[static_cast<size_t>(k_first ? c : r)] += v;
          }
        }
        step.kind = Step::Kind::kScale;
        step.scale = {static_cast<float>(xs->get_as_double(0) * *std::max_element(column.begin(), column.end()))};
        step.how = "one step of each input of " + node->describe() + " (float logits: x_scale x max_n sum_k |W|)";
        return step;
      }
    }
    if (!node->domain.empty() || !same_value_ops().count(node->op_type) || node->inputs.empty()) {
      step.how = "float output of " + node->describe();
      break;
    }
    path.push_back(node->op_type);
    value = node->inputs[0];
  }
  step.kind = Step::Kind::kRelative;
  return step;
}

struct Options {
  std::string model;
  std::vector<std::string> files;
  std::string output;
  double min_agree = 99.9;
  double rel_tol = 1e-4;  // tolerance x max|A| where no DequantizeLinear gives a step
};

Options parse_args(int argc, char** argv) {
  Options opt;
  const std::string usage =
      "usage: compare_outputs MODEL.onnx A.npy B.npy [A2.npy B2.npy ...] [--output NAME] [--min-agree PERCENT] "
      "[--rel-tol X]";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::cout << usage << "\n";
      std::exit(0);
    } else if (a == "--output" || a == "--min-agree" || a == "--rel-tol") {
      if (i + 1 >= argc) die(a + " needs a value");
      const std::string v = argv[++i];
      if (a == "--output") {
        opt.output = v;
      } else if (a == "--rel-tol") {
        char* end = nullptr;
        opt.rel_tol = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || !(opt.rel_tol > 0 && opt.rel_tol < 1)) {
          die("--rel-tol must be in (0, 1), got '" + v + "'");
        }
      } else {
        char* end = nullptr;
        opt.min_agree = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0' || !(opt.min_agree >= 0 && opt.min_agree <= 100)) {
          die("--min-agree must be a percentage, got '" + v + "'");
        }
      }
    } else if (a.size() > 1 && a[0] == '-') {
      die("unknown option " + a + "\n" + usage);
    } else if (opt.model.empty()) {
      opt.model = a;
    } else {
      opt.files.push_back(a);
    }
  }
  if (opt.model.empty() || opt.files.empty() || opt.files.size() % 2 != 0) die(usage);
  return opt;
}

Tensor read(const std::string& file) {
  auto t = kvant::read_npy(file);
  if (!t.ok()) die(t.status().message());
  return *t;
}

// Channel index of flat element i for a per-axis scale along `axis`.
int64_t channel_of(const Tensor& t, int64_t axis, int64_t i) {
  int64_t inner = 1;
  for (int d = static_cast<int>(axis) + 1; d < t.rank(); ++d) inner *= t.dim(d);
  return (i / inner) % t.dim(static_cast<int>(axis));
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  kvant::LoadOptions load;
  load.infer_shapes = false;
  auto model = kvant::load_onnx(opt.model, load);
  if (!model.ok()) die(model.status().message());
  const Graph& graph = model->graph;

  std::string output = opt.output;
  if (output.empty()) {
    if (graph.outputs.size() != 1) {
      std::string names;
      for (const auto& o : graph.outputs) names += (names.empty() ? "" : ", ") + o.name;
      die(opt.model + " has " + std::to_string(graph.outputs.size()) + " outputs (" + names + "); pass --output NAME");
    }
    output = graph.outputs[0].name;
  } else if (std::none_of(graph.outputs.begin(), graph.outputs.end(),
                          [&](const kvant::ValueInfo& v) { return v.name == output; })) {
    die(opt.model + " has no output \"" + output + "\"");
  }
  const Step step = find_step(graph, output);

  int64_t total = 0;
  int64_t within = 0;
  double max_diff_steps = 0;
  double max_abs_a = 0;
  std::vector<std::pair<Tensor, Tensor>> pairs;
  for (size_t k = 0; k < opt.files.size(); k += 2) {
    Tensor a = read(opt.files[k]);
    Tensor b = read(opt.files[k + 1]);
    if (a.shape() != b.shape()) {
      die(opt.files[k] + " is " + a.describe() + " but " + opt.files[k + 1] + " is " + b.describe());
    }
    if (step.per_axis) {
      const int64_t axis = step.axis < 0 ? step.axis + a.rank() : step.axis;
      if (axis < 0 || axis >= a.rank() || a.dim(static_cast<int>(axis)) != static_cast<int64_t>(step.scale.size())) {
        die(opt.files[k] + ": shape " + a.describe() + " does not fit " + std::to_string(step.scale.size()) +
            " per-channel scales along axis " + std::to_string(step.axis));
      }
    }
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double v = std::abs(a.get_as_double(i));
      if (std::isfinite(v)) max_abs_a = std::max(max_abs_a, v);
    }
    pairs.emplace_back(std::move(a), std::move(b));
  }

  const double relative_tol = opt.rel_tol * max_abs_a;
  for (const auto& [a, b] : pairs) {
    const int64_t axis = step.axis < 0 ? step.axis + a.rank() : step.axis;
    for (int64_t i = 0; i < a.numel(); ++i) {
      const double x = a.get_as_double(i);
      const double y = b.get_as_double(i);
      double unit = 1;
      if (step.kind == Step::Kind::kScale) {
        unit = step.scale.size() == 1 ? step.scale[0] : step.scale[static_cast<size_t>(channel_of(a, axis, i))];
      } else if (step.kind == Step::Kind::kRelative) {
        unit = relative_tol;
      }
      ++total;
      if (std::isnan(x) && std::isnan(y)) {
        ++within;
        continue;
      }
      const double diff = std::abs(x - y);
      if (diff <= unit * (1 + 1e-5)) ++within;
      const double in_steps = unit > 0 ? diff / unit : (diff > 0 ? INFINITY : 0);
      if (std::isnan(diff) || std::isinf(diff)) {
        max_diff_steps = INFINITY;
      } else {
        max_diff_steps = std::max(max_diff_steps, in_steps);
      }
    }
  }
  if (total == 0) die("no elements to compare");

  // Rounded down, so that a failing run never prints 99.90%.
  const double percent = std::floor(10000.0 * static_cast<double>(within) / static_cast<double>(total)) / 100.0;
  std::ostringstream line;
  char pct[32];
  std::snprintf(pct, sizeof(pct), "%.2f%%", percent);
  char maxd[32];
  std::snprintf(maxd, sizeof(maxd), "%.3g", max_diff_steps);
  line << output << ": " << total << " elements, " << pct;
  switch (step.kind) {
    case Step::Kind::kScale:
      if (step.scale.size() == 1) {
        line << " within 1 step (scale " << fmt(step.scale[0]) << ")";
      } else {
        const auto [lo, hi] = std::minmax_element(step.scale.begin(), step.scale.end());
        line << " within 1 step (per-channel scale " << fmt(*lo) << ".." << fmt(*hi) << ")";
      }
      line << ", max diff " << maxd << " steps; step from " << step.how;
      break;
    case Step::Kind::kInteger: line << " within 1 (integer output of " << step.how << "), max diff " << maxd; break;
    case Step::Kind::kRelative:
      line << " within " << fmt(opt.rel_tol) << " x max|A| = " << fmt(relative_tol)
           << " (no DequantizeLinear upstream: " << step.how << "), max diff " << maxd << " x that";
      break;
  }
  const bool ok = static_cast<double>(within) * 100.0 >= opt.min_agree * static_cast<double>(total) - 1e-9;
  if (!ok) line << "  FAIL (need " << fmt(opt.min_agree) << "%)";
  std::cout << line.str() << "\n";
  return ok ? 0 : 1;
}
