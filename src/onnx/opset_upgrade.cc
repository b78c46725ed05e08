#include "onnx/opset_upgrade.h"

#include <set>

#include "kvant/status.h"
#include "passes/pass.h"

namespace kvant {

namespace {

const std::set<std::string> kReduceWithAxesAttribute = {"ReduceMax",    "ReduceMin",       "ReduceMean",
                                                        "ReduceProd",   "ReduceL1",        "ReduceL2",
                                                        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};

void upgrade_graph(Graph& graph, int64_t from, int64_t target) {
  for (Node& node : graph.nodes) {
    for (auto& [key, attr] : node.attributes) {
      if (attr.g) upgrade_graph(*attr.g, from, target);
      for (auto& g : attr.graphs) upgrade_graph(*g, from, target);
    }
    if (!node.domain.empty()) continue;
    if (from < 18 && target >= 18 && kReduceWithAxesAttribute.count(node.op_type) && node.has_attr("axes")) {
      const std::vector<int64_t> axes = node.attr_ints("axes");
      const std::string name = node.name + "/axes";
      graph.initializers[name] = Tensor::from_vector(axes, {static_cast<int64_t>(axes.size())});
      node.attributes.erase("axes");
      node.inputs.resize(1);
      node.inputs.push_back(name);
    }
    if (from < 18 && target >= 18 && node.op_type == "Split" && node.num_present_inputs() < 2 &&
        !node.has_attr("num_outputs")) {
      set_attr(node, "num_outputs", static_cast<int64_t>(node.outputs.size()));
    }
    if (from < 20 && target >= 20 && (node.op_type == "DFT" || node.op_type == "GridSample")) {
      throw Error(ErrorCode::kUnsupported, node.describe() + ": cannot carry this operator from opset " +
                                               std::to_string(from) + " to " + std::to_string(target));
    }
  }
}

}  // namespace

void upgrade_opset(Model& model, int64_t target) {
  const int64_t from = model.opset();
  if (from >= target) return;
  if (from < 13) {
    upgrade_to_opset13(model);  // 7..12 -> 13 (passes/upgrade_opset13.cc)
    if (target == 13) return;
  }
  upgrade_graph(model.graph, model.opset(), target);
  model.opset_imports[""] = target;
}

}  // namespace kvant
