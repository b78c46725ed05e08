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

namespace {

void rename_all(Graph& graph, const std::unordered_map<std::string, std::string>& renames, bool outputs_too) {
  for (Node& node : graph.nodes) {
    for (auto& in : node.inputs) {
      auto it = renames.find(in);
      if (it != renames.end()) in = it->second;
    }
    for (Graph* sub : subgraphs_of(node)) rename_all(*sub, renames, true);
  }
  if (!outputs_too) return;
  for (auto& o : graph.outputs) {
    auto it = renames.find(o.name);
    if (it != renames.end()) o.name = it->second;
  }
}

}  // namespace

void rename_reads(Graph& graph, const std::unordered_map<std::string, std::string>& renames) {
  if (!renames.empty()) rename_all(graph, renames, false);
}

bool is_graph_output(const Graph& graph, const std::string& name) {
  for (const auto& o : graph.outputs) {
    if (o.name == name) return true;
  }
  return false;
}

UniqueNames::UniqueNames(const Graph& graph) {
  for (const auto& v : graph.inputs) used_.insert(v.name);
  for (const auto& [name, t] : graph.initializers) used_.insert(name);
  for (const auto& n : graph.nodes) used_.insert(n.outputs.begin(), n.outputs.end());
}

std::string UniqueNames::make(const std::string& base) {
  std::string name = base;
  int& next = next_[base];
  if (next > 0 || used_.count(name)) {
    do {
      name = base + "_" + std::to_string(++next);
    } while (used_.count(name));
  }
  used_.insert(name);
  return name;
}

std::string unique_value_name(const Graph& graph, const std::string& base) { return UniqueNames(graph).make(base); }

void collect_names(const Graph& g, std::unordered_set<std::string>& used) {
  for (const auto& v : g.inputs) used.insert(v.name);
  for (const auto& [name, t] : g.initializers) used.insert(name);
  for (const auto& n : g.nodes) {
    used.insert(n.name);
    used.insert(n.outputs.begin(), n.outputs.end());
    for (const auto& [key, attr] : n.attributes) {
      if (attr.g) collect_names(*attr.g, used);
      for (const auto& sub : attr.graphs) collect_names(*sub, used);
    }
  }
}

}  // namespace kvant
