// PartialModel models for per-layer sensitivity (quant/sensitivity.h): a layer's
// replacement nodes plus what lies downstream of them in a base model, fed
// from the base model's values kept per sample. Internal to
// quant/sensitivity.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "ir/graph.h"

namespace kvant {

// Name -> producing node index, and every value name, of a main graph.
struct GraphIndex {
  std::unordered_map<std::string, size_t> producer;
  std::unordered_set<std::string> values;  // graph inputs and node outputs
  explicit GraphIndex(const Graph& g);
};

// A partial model and where its inputs come from.
struct PartialModel {
  Model model;
  std::vector<std::pair<std::string, std::string>> feeds;  // partial input <- base value
  bool affects_output = true;                              // false: the output is the base model's
  int64_t nodes = 0;
  int64_t work = 0;  // estimated multiply-adds (for the time left)
};

// Layer i's quantized subgraph in `q`: the nodes from `tensor` back to the
// float values its QuantizeLinears read (as layer_report.cc's own layer);
// nullopt when it is not a small subgraph.
std::optional<std::vector<Node>> quantized_subgraph(const Model& q, const GraphIndex& qi, const GraphIndex& fi,
                                                    const std::string& tensor);

// `replacement` plus the base model's nodes downstream of it, pruned to
// what `output` needs (partial_model.cc has the rules). `other` holds the
// replacement's initializers and value types. nullopt with `why` when it
// cannot be built (control flow downstream, a value nothing computes).
std::optional<PartialModel> build_partial(const Model& base, const GraphIndex& bi, const Model& other,
                                          const std::vector<Node>& replacement, const std::string& output,
                                          std::string* why);

// The model with every value in `keep` as an extra output.
Model with_outputs(const Model& model, const std::set<std::string>& keep);

}  // namespace kvant
