// fold_constants: a node whose inputs are all initializers is evaluated once,
// with its reference kernel (src/ops, found through find_op), and replaced by
// initializers holding its outputs.
//
// Legal when: the op is deterministic (no Random*, Bernoulli, Multinomial),
// has no subgraphs, has at least one input, and no input is a graph input
// that happens to have a default initializer (it can be fed at run time).
// Skipped: results over kMaxFoldedBytes (folding would bloat the model; the
// node computes them at run time instead), ops kvant has no kernel for, and
// nodes whose kernel reports an error (left for the run to report in
// context). Inputs left unread are removed by eliminate_dead_nodes.
#include <algorithm>

#include "ops/op_registry.h"
#include "passes/pass.h"

namespace kvant {

namespace {

constexpr int64_t kMaxFoldedBytes = int64_t{64} << 20;

bool is_random(const Node& node) {
  static const char* const kOps[] = {"RandomNormal",      "RandomUniform", "RandomNormalLike",
                                     "RandomUniformLike", "Bernoulli",     "Multinomial"};
  for (const char* op : kOps) {
    if (node.op_type == op) return true;
  }
  return false;
}

// Ops whose output size is set by input values: estimate it before running,
// so a 4-byte shape tensor cannot make the pass allocate gigabytes. Returns
// -1 when unknown.
int64_t estimated_output_elements(const Node& node, const std::vector<const Tensor*>& inputs) {
  auto product = [](const std::vector<int64_t>& v) {
    int64_t n = 1;
    for (int64_t d : v) {
      if (d < 0) return int64_t{-1};
      if (d != 0 && n > (int64_t{1} << 50) / d) return int64_t{1} << 50;
      n *= d;
    }
    return n;
  };
  if (node.op_type == "ConstantOfShape" && !inputs.empty() && inputs[0]) return product(inputs[0]->to_int64_vector());
  if (node.op_type == "Expand" && inputs.size() > 1 && inputs[0] && inputs[1]) {
    std::vector<int64_t> shape = inputs[1]->to_int64_vector();
    const Shape& in = inputs[0]->shape();
    if (in.size() > shape.size()) shape.insert(shape.begin(), in.size() - shape.size(), 1);
    for (size_t i = 0; i < in.size(); ++i) {
      auto& d = shape[shape.size() - in.size() + i];
      d = std::max(d, in[i]);
    }
    return product(shape);
  }
  if (node.op_type == "Tile" && inputs.size() > 1 && inputs[0] && inputs[1]) {
    const int64_t reps = product(inputs[1]->to_int64_vector());
    if (reps < 0) return -1;
    const int64_t n = inputs[0]->numel();
    return n != 0 && reps > (int64_t{1} << 50) / n ? int64_t{1} << 50 : n * reps;
  }
  return -1;
}

// Evaluates graph.nodes[i] if legal; returns its outputs or an empty vector.
std::vector<Tensor> try_evaluate(const Graph& graph, const Node& node, int64_t opset) {
  if (is_random(node) || node.num_present_inputs() == 0) return {};
  for (const auto& [key, attr] : node.attributes) {
    if (attr.g || !attr.graphs.empty()) return {};
  }
  const OpDef* op = find_op(node.domain, node.op_type);
  if (op == nullptr) return {};
  std::vector<const Tensor*> inputs;
  for (const auto& name : node.inputs) {
    if (name.empty()) {
      inputs.push_back(nullptr);
      continue;
    }
    auto it = graph.initializers.find(name);
    if (it == graph.initializers.end() || graph.find_input(name) != nullptr) return {};
    inputs.push_back(&it->second);
  }
  try {
    const int64_t estimate = estimated_output_elements(node, inputs);
    if (estimate > kMaxFoldedBytes / 8) return {};  // elements; 8 bytes is the widest element
    KernelContext ctx{node, opset, inputs, {}, nullptr};
    ctx.outputs.resize(node.outputs.size());
    op->run(ctx);
    int64_t bytes = 0;
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i].empty()) continue;
      if (!ctx.outputs[i].defined()) return {};
      bytes += static_cast<int64_t>(ctx.outputs[i].nbytes());
    }
    if (bytes > kMaxFoldedBytes) return {};
    return std::move(ctx.outputs);
  } catch (const Error&) {
    return {};
  } catch (const std::bad_alloc&) {
    return {};
  }
}

}  // namespace

bool fold_constants(Graph& graph, int64_t opset) {
  bool changed = false;
  for (Node& node : graph.nodes) {
    for (Graph* sub : subgraphs_of(node)) changed = fold_constants(*sub, opset) || changed;
  }
  std::vector<Node> kept;
  kept.reserve(graph.nodes.size());
  for (Node& node : graph.nodes) {
    std::vector<Tensor> outputs = try_evaluate(graph, node, opset);
    if (outputs.empty()) {
      kept.push_back(std::move(node));
      continue;
    }
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i].empty()) continue;
      graph.initializers[node.outputs[i]] = std::move(outputs[i]);
      graph.value_info.erase(node.outputs[i]);
    }
    changed = true;
  }
  graph.nodes = std::move(kept);
  return changed;
}

}  // namespace kvant
