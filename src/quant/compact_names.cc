// Short names for what quantization added (DESIGN.md §10): inside kvant the
// QDQ tensors carry readable derived names ("t/float", "t/q", "W/scale"),
// which repeat the often long exporter name of the tensor up to eight times.
// On small models that is a tenth of the file (measured: the demo CNN's INT8
// file 31.2% -> 28.1% of FP32). Before writing, every value the rewrite
// created gets a short unique name and every node it created loses its
// name; every name the FP32 model had stays, so tensors can still be matched
// between the two files.
#include <unordered_set>

#include "quant/quantize.h"

namespace kvant {

namespace {

void collect_names(const Graph& g, std::unordered_set<std::string>& values, std::unordered_set<std::string>& nodes) {
  for (const auto& in : g.inputs) values.insert(in.name);
  for (const auto& out : g.outputs) values.insert(out.name);
  for (const auto& [name, t] : g.initializers) values.insert(name);
  for (const Node& n : g.nodes) {
    nodes.insert(n.name);
    for (const auto& v : n.inputs) values.insert(v);
    for (const auto& v : n.outputs) values.insert(v);
  }
}

}  // namespace

void compact_new_names(const Model& original, Model& quantized) {
  std::unordered_set<std::string> kept_values, kept_nodes;
  collect_names(original.graph, kept_values, kept_nodes);
  std::unordered_set<std::string> used_values, used_nodes;
  collect_names(quantized.graph, used_values, used_nodes);
  std::unordered_map<std::string, std::string> rename;
  int64_t next = 0;
  auto fresh = [&]() {
    std::string name;
    do {
      name.assign(1, 'q');  // (not "q" + to_string: GCC 12's -Wrestrict false positive)
      name.append(std::to_string(next++));
    } while (used_values.count(name) || kept_values.count(name));
    used_values.insert(name);
    return name;
  };
  auto mapped = [&](const std::string& v) -> const std::string& {
    if (v.empty() || kept_values.count(v)) return v;
    auto it = rename.find(v);
    if (it == rename.end()) it = rename.emplace(v, fresh()).first;
    return it->second;
  };
  Graph& g = quantized.graph;
  std::map<std::string, Tensor> initializers;
  for (auto& [name, t] : g.initializers) initializers.emplace(mapped(name), std::move(t));
  g.initializers = std::move(initializers);
  for (Node& n : g.nodes) {
    for (auto& v : n.inputs) v = mapped(v);
    for (auto& v : n.outputs) v = mapped(v);
    if (!kept_nodes.count(n.name)) n.name.clear();
  }
  std::map<std::string, ValueInfo> value_info;
  for (auto& [name, vi] : g.value_info) {
    const std::string& to = mapped(name);
    value_info[to] = {to, vi.type};
  }
  g.value_info = std::move(value_info);
}

}  // namespace kvant
