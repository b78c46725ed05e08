// run_to_fixed_point and the small graph queries the passes share.
#include "passes/pass.h"

#include <unordered_set>

namespace kvant {

bool run_to_fixed_point(Graph& graph, const std::vector<Pass>& passes, int max_rounds) {
  bool any = false;
  for (int round = 0; round < max_rounds; ++round) {
    bool changed = false;
    for (const Pass& pass : passes) changed = pass(graph) || changed;
    if (!changed) break;
    any = true;
  }
  return any;
}

std::vector<Graph*> subgraphs_of(Node& node) {
  std::vector<Graph*> out;
  for (auto& [key, attr] : node.attributes) {
    if (attr.g) out.push_back(attr.g.get());
    for (auto& g : attr.graphs) {
      if (g) out.push_back(g.get());
    }
  }
  return out;
}

std::unordered_map<std::string, int> count_reads(const Graph& graph) {
  std::unordered_map<std::string, int> reads;
  for (const Node& node : graph.nodes) {
    for (const auto& in : node.inputs) {
      if (!in.empty()) ++reads[in];
    }
    for (const auto& [key, attr] : node.attributes) {
      if (attr.g) {
        for (const auto& c : attr.g->captured_values()) ++reads[c];
      }
      for (const auto& g : attr.graphs) {
        for (const auto& c : g->captured_values()) ++reads[c];
      }
    }
  }
  for (const auto& o : graph.outputs) ++reads[o.name];
  return reads;
}

namespace {

void rename_in_subgraph(Graph& graph, const std::string& from, const std::string& to) {
  for (Node& node : graph.nodes) {
    for (auto& in : node.inputs) {
      if (in == from) in = to;
    }
    for (Graph* sub : subgraphs_of(node)) rename_in_subgraph(*sub, from, to);
  }
  for (auto& o : graph.outputs) {
    if (o.name == from) o.name = to;
  }
}

}  // namespace

void rename_reads(Graph& graph, const std::string& from, const std::string& to) {
  for (Node& node : graph.nodes) {
    for (auto& in : node.inputs) {
      if (in == from) in = to;
    }
    for (Graph* sub : subgraphs_of(node)) rename_in_subgraph(*sub, from, to);
  }
}

bool is_graph_output(const Graph& graph, const std::string& name) {
  for (const auto& o : graph.outputs) {
    if (o.name == name) return true;
  }
  return false;
}

std::string unique_value_name(const Graph& graph, const std::string& base) {
  std::unordered_set<std::string> used;
  for (const auto& v : graph.inputs) used.insert(v.name);
  for (const auto& [name, t] : graph.initializers) used.insert(name);
  for (const auto& n : graph.nodes) used.insert(n.outputs.begin(), n.outputs.end());
  if (!used.count(base)) return base;
  for (int i = 1;; ++i) {
    std::string name = base + "_" + std::to_string(i);
    if (!used.count(name)) return name;
  }
}

}  // namespace kvant
