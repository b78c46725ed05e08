// The part of a model that static calibration can run (design decision 24):
// nodes whose operator kvant has a reference kernel for, in every subgraph
// they hold, and all of whose inputs come from graph inputs, initializers or
// other such nodes. A node outside it (an operator kvant does not know, a
// custom-domain operator, or anything reading a value only such a node
// makes) is never run during calibration, so its values get no range and it
// stays FP32; the planner records why (calibration_blocked).
#include <map>

#include "kvant/status.h"
#include "ops/op_registry.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

std::string op_name(const Node& n) { return n.domain.empty() ? n.op_type : n.domain + "." + n.op_type; }

// The first operator in `g` (recursively) that kvant cannot run, or "".
std::string first_unknown(const Graph& g);

std::string first_unknown_in_subgraphs(const Node& n) {
  for (const auto& [key, attr] : n.attributes) {
    if (attr.g) {
      if (std::string u = first_unknown(*attr.g); !u.empty()) return u;
    }
    for (const auto& sub : attr.graphs) {
      if (std::string u = first_unknown(*sub); !u.empty()) return u;
    }
  }
  return "";
}

std::string first_unknown(const Graph& g) {
  for (const Node& n : g.nodes) {
    if (find_op(n.domain, n.op_type) == nullptr) return op_name(n);
    if (std::string u = first_unknown_in_subgraphs(n); !u.empty()) return u;
  }
  return "";
}

// What `n` reads: its inputs and the outer values its subgraphs capture.
std::vector<std::string> reads_of(const Node& n) {
  std::vector<std::string> out = n.inputs;
  for (const auto& [key, attr] : n.attributes) {
    if (attr.g) {
      for (auto& c : attr.g->captured_values()) out.push_back(std::move(c));
    }
    for (const auto& sub : attr.graphs) {
      for (auto& c : sub->captured_values()) out.push_back(std::move(c));
    }
  }
  return out;
}

}  // namespace

Model calibration_scope(const Model& model, std::vector<std::pair<std::string, std::string>>* blocked,
                        const std::map<std::string, std::string>& refused) {
  Model out = model;
  Graph& g = out.graph;
  // value -> the node (original name) whose unknown operator it descends from
  std::map<std::string, std::string> tainted;
  std::vector<Node> kept;
  for (const Node& n : model.graph.nodes) {
    std::string reason;
    std::string source;
    for (const std::string& in : reads_of(n)) {
      auto it = tainted.find(in);
      if (!in.empty() && it != tainted.end()) {
        source = it->second;
        break;
      }
    }
    if (auto r = refused.find(n.name); !n.name.empty() && r != refused.end()) {
      reason = "its kernel refused the first calibration sample: " + r->second;
      source = n.name;
    } else if (find_op(n.domain, n.op_type) == nullptr) {
      reason = (n.domain.empty() ? "operator " : "custom-domain operator ") + op_name(n) +
               " has no kvant kernel: calibration cannot run it";
      source = n.name.empty() ? op_name(n) : n.name;
    } else if (std::string u = first_unknown_in_subgraphs(n); !u.empty()) {
      reason = "its subgraph holds operator " + u + ", which has no kvant kernel";
      source = n.name;
    } else if (!source.empty()) {
      reason = "reads a value computed after \"" + source + "\", which calibration cannot run";
    }
    if (reason.empty()) {
      kept.push_back(n);
      continue;
    }
    for (const std::string& o : n.outputs) tainted[o] = source;
    if (blocked) blocked->emplace_back(n.name.empty() ? op_name(n) : n.name, reason);
  }
  if (kept.size() == g.nodes.size()) return out;
  g.nodes = std::move(kept);
  std::vector<ValueInfo> outputs;
  for (const ValueInfo& o : g.outputs) {
    if (!tainted.count(o.name)) outputs.push_back(o);
  }
  if (outputs.empty() && !g.nodes.empty() && !g.nodes.back().outputs.empty()) {
    ValueInfo v;
    v.name = g.nodes.back().outputs[0];
    outputs.push_back(v);
  }
  g.outputs = std::move(outputs);
  return out;
}

Model runnable_for_calibration(const Model& model, const std::map<std::string, Tensor>* sample,
                               std::vector<std::pair<std::string, std::string>>* blocked) {
  std::map<std::string, std::string> refused;  // node -> what its kernel said
  std::vector<std::pair<std::string, std::string>> local;
  Model runnable = calibration_scope(model, &local, refused);
  for (size_t tries = 0; sample != nullptr && tries < model.graph.nodes.size(); ++tries) {
    try {
      ReferenceExecutor(runnable).run(*sample);
      break;
    } catch (const Error& e) {
      // Only a main-graph node whose kernel says it cannot do this
      // (kUnsupported) is taken out; anything else is for the calibration
      // run to report in context.
      if (e.code() != ErrorCode::kUnsupported) break;
      const std::string message = e.what();
      const Node* culprit = nullptr;
      for (const Node& n : runnable.graph.nodes) {
        if (!n.name.empty() && message.find(n.describe()) != std::string::npos) culprit = &n;
      }
      if (culprit == nullptr || refused.count(culprit->name)) break;
      refused[culprit->name] = message.substr(message.find(culprit->describe()) + culprit->describe().size() +
                                              (message.size() > culprit->describe().size() + 2 ? 2 : 0));
      local.clear();
      runnable = calibration_scope(model, &local, refused);
    }
  }
  if (blocked) blocked->insert(blocked->end(), local.begin(), local.end());
  return runnable;
}

}  // namespace kvant
