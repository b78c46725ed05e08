#include "runtime/executor.h"

#include <functional>
#include <set>
#include <unordered_set>

#include "ops/validate.h"

namespace kvant {

struct ReferenceExecutor::Scope {
  std::unordered_map<std::string, Tensor> values;
  const Scope* parent = nullptr;

  const Tensor* find(const std::string& name) const {
    for (const Scope* s = this; s != nullptr; s = s->parent) {
      auto it = s->values.find(name);
      if (it != s->values.end()) return &it->second;
    }
    return nullptr;
  }
};

// For each node, the locally defined values whose last reader it is.
struct ReferenceExecutor::GraphPlan {
  std::vector<std::vector<std::string>> release_after;
  std::vector<const OpDef*> ops;
};

namespace {

void collect_unsupported(const Graph& graph, const Model& model, std::map<std::string, std::vector<std::string>>& out) {
  for (const Node& node : graph.nodes) {
    if (find_op(node.domain, node.op_type) == nullptr) {
      const std::string key = node.domain.empty() ? node.op_type : node.domain + ":" + node.op_type;
      out[key].push_back(node.name.empty() ? "(unnamed)" : node.name);
    }
    for (const auto& [k, attr] : node.attributes) {
      if (attr.g) collect_unsupported(*attr.g, model, out);
      for (const auto& g : attr.graphs) collect_unsupported(*g, model, out);
    }
  }
}

}  // namespace

std::vector<std::string> unsupported_operators(const Model& model) {
  std::map<std::string, std::vector<std::string>> missing;
  collect_unsupported(model.graph, model, missing);
  std::vector<std::string> lines;
  for (const auto& [op, nodes] : missing) {
    std::string line = op + " (";
    for (size_t i = 0; i < nodes.size() && i < 5; ++i) line += (i ? ", " : "") + std::string("\"") + nodes[i] + "\"";
    if (nodes.size() > 5) line += ", and " + std::to_string(nodes.size() - 5) + " more";
    lines.push_back(line + ")");
  }
  return lines;
}

void check_input_type(const ValueInfo& declared, const Tensor& given, std::map<std::string, int64_t>& bindings) {
  const TypeInfo& type = declared.type;
  auto mismatch = [&](const std::string& what) {
    throw Error(ErrorCode::kInvalidArgument, "input \"" + declared.name + "\": expected " + type.to_string() +
                                                 ", got " + given.describe() + " (" + what + ")");
  };
  if (type.dtype != DType::kUndefined && type.dtype != given.dtype()) mismatch("wrong element type");
  if (!type.has_shape) return;
  if (type.dims.size() != given.shape().size()) mismatch("wrong rank");
  for (size_t i = 0; i < type.dims.size(); ++i) {
    const Dim& d = type.dims[i];
    const int64_t g = given.shape()[i];
    if (d.known() && d.value != g) mismatch("dimension " + std::to_string(i) + " differs");
    if (!d.known() && !d.param.empty()) {
      auto [it, inserted] = bindings.emplace(d.param, g);
      if (!inserted && it->second != g) {
        mismatch("dimension \"" + d.param + "\" is " + std::to_string(it->second) + " in another input");
      }
    }
  }
}

ReferenceExecutor::ReferenceExecutor(const Model& model) : model_(model) {
  validate_model(model);  // the same checks, and messages, as CompiledModel (ops/validate.h)
  auto missing = unsupported_operators(model);
  if (!missing.empty()) {
    std::string msg = "unsupported operators: ";
    for (size_t i = 0; i < missing.size(); ++i) msg += (i ? "; " : "") + missing[i];
    throw Error(ErrorCode::kUnsupported, msg);
  }
}

const ReferenceExecutor::GraphPlan& ReferenceExecutor::plan_for(const Graph& graph) {
  auto it = plans_.find(&graph);
  if (it != plans_.end()) return *it->second;
  auto plan = std::make_shared<GraphPlan>();
  std::unordered_set<std::string> local;
  for (const auto& node : graph.nodes) {
    for (const auto& o : node.outputs) {
      if (!o.empty()) local.insert(o);
    }
  }
  std::unordered_set<std::string> keep;
  for (const auto& o : graph.outputs) keep.insert(o.name);
  std::unordered_map<std::string, size_t> last_use;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& node = graph.nodes[i];
    for (const auto& in : node.inputs) last_use[in] = i;
    for (const auto& [k, attr] : node.attributes) {
      if (attr.g) {
        for (const auto& c : attr.g->captured_values()) last_use[c] = i;
      }
      for (const auto& g : attr.graphs) {
        for (const auto& c : g->captured_values()) last_use[c] = i;
      }
    }
    // An output nobody reads is released right after its node.
    for (const auto& o : node.outputs) {
      if (!last_use.count(o)) last_use[o] = i;
    }
  }
  plan->release_after.resize(graph.nodes.size());
  for (const auto& [name, idx] : last_use) {
    if (local.count(name) && !keep.count(name) && !name.empty()) plan->release_after[idx].push_back(name);
  }
  for (const auto& node : graph.nodes) plan->ops.push_back(find_op(node.domain, node.op_type));
  return *plans_.emplace(&graph, std::move(plan)).first->second;
}

class ScopedRunner : public SubgraphRunner {
 public:
  ScopedRunner(ReferenceExecutor& exec, const ReferenceExecutor::Scope* scope) : exec_(exec), scope_(scope) {}
  std::vector<Tensor> run_subgraph(const Graph& graph, const std::vector<Tensor>& inputs) override {
    return exec_.run_graph(graph, scope_, inputs);
  }

 private:
  ReferenceExecutor& exec_;
  const ReferenceExecutor::Scope* scope_;
};

std::vector<Tensor> ReferenceExecutor::run_graph(const Graph& graph, const Scope* parent,
                                                 const std::vector<Tensor>& inputs) {
  const GraphPlan& plan = plan_for(graph);
  Scope scope;
  scope.parent = parent;
  for (const auto& [name, t] : graph.initializers) scope.values[name] = t;
  if (inputs.size() > graph.inputs.size()) {
    throw Error(ErrorCode::kInvalidArgument, "graph \"" + graph.name + "\" takes " +
                                                 std::to_string(graph.inputs.size()) + " inputs, got " +
                                                 std::to_string(inputs.size()));
  }
  for (size_t i = 0; i < inputs.size(); ++i) scope.values[graph.inputs[i].name] = inputs[i];

  ScopedRunner runner(*this, &scope);
  for (size_t n = 0; n < graph.nodes.size(); ++n) {
    const Node& node = graph.nodes[n];
    KernelContext ctx{node, model_.opset(node.domain), {}, {}, &runner};
    ctx.inputs.reserve(node.inputs.size());
    for (const auto& name : node.inputs) {
      if (name.empty()) {
        ctx.inputs.push_back(nullptr);
        continue;
      }
      const Tensor* t = scope.find(name);
      if (t == nullptr) {
        throw Error(ErrorCode::kInvalidArgument, node.describe() + ": input \"" + name + "\" has no value");
      }
      ctx.inputs.push_back(t);
    }
    ctx.outputs.resize(node.outputs.size());
    try {
      plan.ops[n]->run(ctx);
    } catch (const Error& e) {
      // Every error names its node ("shape [...] is too large" alone does not
      // say where), once: kernels that already name it are left as they are.
      const std::string message = e.what();
      if (message.find(node.describe()) != std::string::npos) throw;
      throw Error(e.code(), node.describe() + ": " + message);
    } catch (const std::bad_alloc&) {
      throw Error(ErrorCode::kInvalidArgument, node.describe() + ": out of memory");
    }
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (node.outputs[i].empty()) continue;
      if (!ctx.outputs[i].defined()) {
        throw Error(ErrorCode::kInternal,
                    node.describe() + ": produced no value for output \"" + node.outputs[i] + "\"");
      }
    }
    if (observer_) observer_(node, ctx.outputs);
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (!node.outputs[i].empty()) scope.values[node.outputs[i]] = std::move(ctx.outputs[i]);
    }
    for (const auto& name : plan.release_after[n]) scope.values.erase(name);
  }
  std::vector<Tensor> outputs;
  outputs.reserve(graph.outputs.size());
  for (const auto& o : graph.outputs) {
    const Tensor* t = scope.find(o.name);
    if (t == nullptr) {
      throw Error(ErrorCode::kInvalidArgument, "graph output \"" + o.name + "\" was never computed");
    }
    outputs.push_back(*t);
  }
  return outputs;
}

std::map<std::string, Tensor> ReferenceExecutor::run(const std::map<std::string, Tensor>& feeds) {
  const Graph& graph = model_.graph;
  std::set<std::string> known;
  std::map<std::string, int64_t> bindings;
  std::vector<Tensor> inputs;
  for (const auto& in : graph.inputs) {
    known.insert(in.name);
    auto it = feeds.find(in.name);
    if (it == feeds.end()) {
      auto init = graph.initializers.find(in.name);
      if (init != graph.initializers.end()) {
        inputs.push_back(init->second);
        continue;
      }
      throw Error(ErrorCode::kInvalidArgument, "input \"" + in.name + "\" (" + in.type.to_string() + ") was not given");
    }
    check_input_type(in, it->second, bindings);
    inputs.push_back(it->second);
  }
  for (const auto& [name, t] : feeds) {
    if (!known.count(name)) {
      std::string names;
      for (const auto& in : graph.inputs) names += (names.empty() ? "" : ", ") + in.name;
      throw Error(ErrorCode::kInvalidArgument, "the model has no input named \"" + name + "\" (inputs: " + names + ")");
    }
  }
  std::vector<Tensor> outs = run_graph(graph, nullptr, inputs);
  std::map<std::string, Tensor> result;
  for (size_t i = 0; i < outs.size(); ++i) result[graph.outputs[i].name] = std::move(outs[i]);
  return result;
}

}  // namespace kvant
