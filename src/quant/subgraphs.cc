// Quantizing inside If/Loop/Scan bodies (subgraphs.h, design decision 25).
#include "quant/subgraphs.h"

#include <map>

#include "passes/pass.h"

namespace kvant {

std::vector<Graph*> unshare_bodies(Node& node) {
  std::vector<Graph*> out;
  for (auto& [key, attr] : node.attributes) {
    if (attr.g) {
      attr.g = std::make_shared<Graph>(*attr.g);
      out.push_back(attr.g.get());
    }
    for (auto& sub : attr.graphs) {
      if (!sub) continue;
      sub = std::make_shared<Graph>(*sub);
      out.push_back(sub.get());
    }
  }
  return out;
}

bool localize_outer_constants(Graph& b, const std::vector<const Graph*>& outer, int64_t opset,
                              std::unordered_set<std::string>& used) {
  std::unordered_set<std::string> local;
  for (const auto& v : b.inputs) local.insert(v.name);
  for (const auto& [name, t] : b.initializers) local.insert(name);
  for (const Node& n : b.nodes) local.insert(n.outputs.begin(), n.outputs.end());
  std::map<std::string, std::string> copies;  // outer name -> name in the body
  for (Node& n : b.nodes) {
    for (std::string& in : n.inputs) {
      if (in.empty() || local.count(in)) continue;
      if (auto c = copies.find(in); c != copies.end()) {
        in = c->second;
        continue;
      }
      for (auto scope = outer.rbegin(); scope != outer.rend(); ++scope) {
        auto it = (*scope)->initializers.find(in);
        if (it == (*scope)->initializers.end()) continue;
        std::string name = in + "/" + b.name;
        for (int suffix = 1; used.count(name); ++suffix) name = in + "/" + b.name + "_" + std::to_string(suffix);
        used.insert(name);
        b.initializers[name] = it->second;
        copies[in] = name;
        in = name;
        break;
      }
    }
  }
  if (copies.empty()) return false;
  fold_constants(b, opset);
  eliminate_dead_nodes(b);
  return true;
}

}  // namespace kvant
