// The graph rewrites every quantization mode runs first (DESIGN.md §5):
// Identity/Dropout removed, constant subgraphs folded, BatchNormalization
// folded into the Conv/Gemm before it (so the folded weight is what gets
// quantized, once, instead of a weight and a BN that would each round), dead
// nodes dropped. A model below opset 13 is first upgraded to 13
// (passes/upgrade_opset13.cc), so the quantized file is valid at 13 or later.
// Relu/Clip after a compute node are not rewritten here: the static planner
// keeps them and places Q/DQ after them (static_ptq.cc).
#include <functional>

#include "kvant/status.h"
#include "passes/pass.h"
#include "quant/quantize.h"

namespace kvant {

Model prepare_for_quantization(const Model& model) {
  Model out = model;
  // Opsets 7..12 first become 13 (per-axis Q/DQ, the output kvant writes).
  upgrade_to_opset13(out);
  const int64_t opset = out.opset();
  const std::vector<Pass> passes = {
      eliminate_identity,
      [opset](Graph& g) { return fold_constants(g, opset); },
      fold_batchnorm,
      eliminate_dead_nodes,
  };
  run_to_fixed_point(out.graph, passes);
  return out;
}

std::set<std::string> resolve_excluded_nodes(const Graph& graph, const std::vector<std::string>& exclude,
                                             const std::set<std::string>& compute_ops) {
  std::set<std::string> out;
  std::vector<const Node*> compute;
  for (const Node& n : graph.nodes) {
    if (compute_ops.count(n.op_type)) compute.push_back(&n);
  }
  for (const std::string& e : exclude) {
    bool matched = false;
    if ((e == "first" || e == "last") && !compute.empty()) {
      out.insert(e == "first" ? compute.front()->name : compute.back()->name);
      matched = true;
    }
    // Names and types match inside If/Loop/Scan bodies too, at any depth.
    const std::function<void(const Graph&)> visit = [&](const Graph& g) {
      for (const Node& n : g.nodes) {
        if (n.name == e || n.op_type == e) {
          out.insert(n.name);
          matched = true;
        }
        for (const auto& [key, attr] : n.attributes) {
          if (attr.g) visit(*attr.g);
          for (const auto& body : attr.graphs) visit(*body);
        }
      }
    };
    visit(graph);
    if (!matched) {
      throw Error(ErrorCode::kInvalidArgument,
                  "--exclude \"" + e + "\" matches no node name or operator type in the model" +
                      (e == "first" || e == "last" ? " (it has no quantizable layer)" : ""));
    }
  }
  return out;
}

}  // namespace kvant
