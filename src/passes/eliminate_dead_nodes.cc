// eliminate_dead_nodes: removes nodes whose outputs reach no graph output,
// and initializers nothing reads.
//
// Liveness runs backwards over the topologically sorted nodes: graph outputs
// are live; a node is live when one of its outputs is live, and then its
// inputs and the outer values its subgraphs capture become live. Subgraphs
// are cleaned first (their own outputs being their roots), so captures they
// no longer need stop keeping outer nodes alive. Initializers that are also
// graph inputs (overridable defaults) are part of the interface and stay.
#include <unordered_set>

#include "passes/pass.h"

namespace kvant {

bool eliminate_dead_nodes(Graph& graph) {
  bool changed = false;
  for (Node& node : graph.nodes) {
    for (Graph* sub : subgraphs_of(node)) changed = eliminate_dead_nodes(*sub) || changed;
  }
  std::unordered_set<std::string> live;
  for (const auto& o : graph.outputs) live.insert(o.name);
  std::vector<bool> keep(graph.nodes.size(), false);
  for (size_t i = graph.nodes.size(); i-- > 0;) {
    const Node& node = graph.nodes[i];
    bool node_live = false;
    for (const auto& o : node.outputs) node_live = node_live || (!o.empty() && live.count(o));
    if (!node_live) continue;
    keep[i] = true;
    for (const auto& in : node.inputs) {
      if (!in.empty()) live.insert(in);
    }
    for (const auto& [key, attr] : node.attributes) {
      if (attr.g) {
        for (const auto& c : attr.g->captured_values()) live.insert(c);
      }
      for (const auto& g : attr.graphs) {
        for (const auto& c : g->captured_values()) live.insert(c);
      }
    }
  }
  std::vector<Node> kept;
  kept.reserve(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (keep[i]) {
      kept.push_back(std::move(graph.nodes[i]));
    } else {
      for (const auto& o : graph.nodes[i].outputs) graph.value_info.erase(o);
      changed = true;
    }
  }
  graph.nodes = std::move(kept);
  for (auto it = graph.initializers.begin(); it != graph.initializers.end();) {
    if (!live.count(it->first) && graph.find_input(it->first) == nullptr) {
      it = graph.initializers.erase(it);
      changed = true;
    } else {
      ++it;
    }
  }
  return changed;
}

}  // namespace kvant
