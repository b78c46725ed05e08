// eliminate_identity: y = Identity(x)  ==>  readers of y read x.
//
// Also Dropout at inference: Dropout(x[, ratio, training_mode]) is y = x when
// training_mode is absent (or a constant false) and is_test (opset < 7) is
// not 0; it is removed only when its mask output is unused.
//
// When y is a graph output the graph's interface must keep the name y: then
// the producer of x is renamed to produce y instead (legal only when x comes
// from a node of this graph and is not itself a graph output). An Identity
// from a graph input or initializer straight to a graph output stays.
// Subgraphs are processed too.
#include "passes/pass.h"

namespace kvant {

namespace {

bool is_removable(const Node& node, const Graph& graph, const std::unordered_map<std::string, int>& reads) {
  if (!node.domain.empty() || node.inputs.empty() || node.inputs[0].empty() || node.outputs.empty() ||
      node.outputs[0].empty()) {
    return false;
  }
  if (node.op_type == "Identity") return node.outputs.size() == 1;
  if (node.op_type != "Dropout") return false;
  if (node.attr_int("is_test", 1) == 0) return false;  // opset < 7 training mode
  if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
    auto it = graph.initializers.find(node.inputs[2]);
    if (it == graph.initializers.end() || it->second.numel() != 1 || it->second.get_as_int64(0) != 0) return false;
    if (graph.find_input(node.inputs[2]) != nullptr) return false;  // may be fed at run time
  }
  for (size_t i = 1; i < node.outputs.size(); ++i) {
    if (!node.outputs[i].empty() && reads.count(node.outputs[i])) return false;  // the mask is used
  }
  return true;
}

}  // namespace

bool eliminate_identity(Graph& graph) {
  bool changed = false;
  for (Node& node : graph.nodes) {
    for (Graph* sub : subgraphs_of(node)) changed = eliminate_identity(*sub) || changed;
  }
  for (size_t i = 0; i < graph.nodes.size();) {
    if (graph.nodes[i].op_type != "Identity" && graph.nodes[i].op_type != "Dropout") {
      ++i;
      continue;
    }
    const auto reads = count_reads(graph);
    Node& node = graph.nodes[i];
    if (!is_removable(node, graph, reads)) {
      ++i;
      continue;
    }
    const std::string x = node.inputs[0];
    const std::string y = node.outputs[0];
    if (!is_graph_output(graph, y)) {
      rename_reads(graph, y, x);
      graph.nodes.erase(graph.nodes.begin() + static_cast<std::ptrdiff_t>(i));
      changed = true;
      continue;
    }
    // y is a graph output: make x's producer write y, if x has one here.
    Node* producer = nullptr;
    for (size_t p = 0; p < i; ++p) {
      for (auto& o : graph.nodes[p].outputs) {
        if (o == x) producer = &graph.nodes[p];
      }
    }
    if (producer == nullptr || is_graph_output(graph, x)) {
      ++i;
      continue;
    }
    for (auto& o : producer->outputs) {
      if (o == x) o = y;
    }
    graph.value_info.erase(x);
    graph.nodes.erase(graph.nodes.begin() + static_cast<std::ptrdiff_t>(i));
    rename_reads(graph, x, y);
    changed = true;
  }
  return changed;
}

}  // namespace kvant
