// Graph passes: rewrites of a Graph that keep what it computes (DESIGN.md §3).
//
// A pass returns true when it changed the graph, so passes can be repeated
// until none applies (run_to_fixed_point). Each rewrite lives in its own file
// with its algebra and legality conditions on top (STYLE.md §3). Passes keep
// `nodes` in topological order and values named as ONNX does (a subgraph
// never shadows an outer name, so renaming a value renames its captures too).
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ir/graph.h"

namespace kvant {

using Pass = std::function<bool(Graph&)>;

// Runs `passes` in order, again and again, until a whole round changes
// nothing or `max_rounds` rounds ran. Returns true if anything changed.
bool run_to_fixed_point(Graph& graph, const std::vector<Pass>& passes, int max_rounds = 32);

// Identity, and Dropout in inference (mask unused), are removed; their
// consumers read the input instead (eliminate_identity.cc).
bool eliminate_identity(Graph& graph);

// Nodes none of whose outputs reach a graph output, and initializers nothing
// reads (eliminate_dead_nodes.cc).
bool eliminate_dead_nodes(Graph& graph);

// Nodes whose inputs are all initializers are evaluated with the reference
// kernel and replaced by initializers (fold_constants.cc). `opset` is the
// default-domain opset the kernels follow (Model::opset()).
bool fold_constants(Graph& graph, int64_t opset);

// Conv -> BatchNormalization and Gemm -> BatchNormalization with constant
// parameters become one Conv / Gemm (fold_batchnorm.cc).
bool fold_batchnorm(Graph& graph);

// Reshape/Transpose/Slice/Concat/... between DequantizeLinears and a
// QuantizeLinear of the same per-tensor 8-bit scale and zero point move the
// codes, and the Q goes (codes_through_moves.cc).
bool codes_through_moves(Graph& graph);

// 2-D Conv and pooling nodes that `convert` accepts become their com.kvant
// Nhwc* twins, and chains of them keep NHWC activations, with Transposes
// where they meet NCHW-only nodes (nhwc_layout.cc). `opset`: the model's
// ai.onnx opset (the twins record it). Needs 4-D ranks in value_info.
bool nhwc_layout(Graph& graph, int64_t opset, const std::function<bool(const Node&)>& convert);

// Rewrites a model at ai.onnx opset 7..12 into the same computation at opset
// 13 (upgrade_opset13.cc, docs/opsets.md), using the shapes in value_info
// where they help. No-op at 13 or later; throws Error(kUnsupported) below
// opset 7 or naming a node it cannot carry over.
void upgrade_to_opset13(Model& model);

// --- helpers shared by the passes (pass.cc) ---

// How many times each value is read: node inputs, captures of subgraphs, and
// graph outputs (one read each).
std::unordered_map<std::string, int> count_reads(const Graph& graph);
// Renames every read of `from` to `to`: node inputs, and captures inside
// subgraphs (including a subgraph output that is an outer value). The
// graph's own outputs are its interface and are not renamed; neither are
// definitions.
void rename_reads(Graph& graph, const std::string& from, const std::string& to);
// The same for many renames at once, in one walk over the graph: every read
// of a key becomes a read of its value. O(nodes + reads) whatever the count,
// where one rename_reads per pair would be O(nodes x pairs).
void rename_reads(Graph& graph, const std::unordered_map<std::string, std::string>& renames);
bool is_graph_output(const Graph& graph, const std::string& name);

// Every name a graph and its subgraphs use (inputs, initializers, node
// names and outputs), for making fresh ones.
void collect_names(const Graph& graph, std::unordered_set<std::string>& used);
// Subgraphs held by a node's attributes.
std::vector<Graph*> subgraphs_of(Node& node);
// A value name not yet used in the graph: `base`, else `base_1`, `base_2`...
std::string unique_value_name(const Graph& graph, const std::string& base);
// The same for passes that make many names: the graph's names are collected
// once, and each base remembers its next suffix, so k names cost O(k), not
// one graph walk (or one probe per earlier name of that base) each.
class UniqueNames {
 public:
  explicit UniqueNames(const Graph& graph);
  std::string make(const std::string& base);

 private:
  std::unordered_set<std::string> used_;
  std::unordered_map<std::string, int> next_;
};

}  // namespace kvant
