// Reference executor: runs a Model node by node with the reference kernels
// (src/ops). Intermediate tensors are released right after their last use.
// This is the oracle the compiled path is checked against (DESIGN.md §2, §4).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "ir/graph.h"
#include "ops/op_registry.h"

namespace kvant {

class ReferenceExecutor {
 public:
  // Checks that every node's operator is known (throws Error(kUnsupported)
  // listing all unknown ones).
  explicit ReferenceExecutor(const Model& model);

  // Runs the main graph. `feeds` maps graph input names to tensors; inputs
  // that are also initializers may be left out. Throws Error on a missing,
  // extra or mistyped input and on any kernel error.
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& feeds);

  // Called after every node with its outputs (for per-layer reports and
  // debugging); the tensors are valid only during the call.
  using Observer = std::function<void(const Node&, const std::vector<Tensor>&)>;
  void set_observer(Observer observer) { observer_ = std::move(observer); }

 private:
  struct Scope;
  struct GraphPlan;
  friend class ScopedRunner;
  std::vector<Tensor> run_graph(const Graph& graph, const Scope* parent, const std::vector<Tensor>& inputs);
  const GraphPlan& plan_for(const Graph& graph);

  const Model& model_;
  std::unordered_map<const Graph*, std::shared_ptr<GraphPlan>> plans_;
  Observer observer_;
};

// Checks a tensor against a declared type: dtype, rank and known dims.
// `bindings` records symbolic dims seen so far ("batch" -> 4) and is checked
// for consistency across inputs. Throws Error naming the input.
void check_input_type(const ValueInfo& declared, const Tensor& given, std::map<std::string, int64_t>& bindings);

// Lists "domain:op (node names)" for every node whose operator kvant lacks,
// recursively through subgraphs; empty when all are supported.
std::vector<std::string> unsupported_operators(const Model& model);

}  // namespace kvant
