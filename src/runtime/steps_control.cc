// Control flow (If, Loop, Scan) in a compiled model. The node runs its
// reference kernel (ops/control_flow.cc: branch choice, iteration, scan
// slicing and stacking), and every body it runs is a compiled model of its
// own: the body graph with its formal inputs, plus the outer values it
// captures as extra inputs. A body is compiled on its first run, when the
// captured values' types are known, and keeps its plan while the shapes it
// sees stay the same (a Loop whose state grows re-plans each iteration).
// Bodies with control flow of their own nest the same way.
#include <cstdint>
#include <map>
#include <memory>

#include "ops/op_registry.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

bool has_random_op(const Graph& g) {
  for (const Node& n : g.nodes) {
    const std::string& op = n.op_type;
    if (op.rfind("Random", 0) == 0 || op == "Bernoulli" || op == "Multinomial") return true;
    for (const auto& [k, attr] : n.attributes) {
      if (attr.g && has_random_op(*attr.g)) return true;
      for (const auto& sub : attr.graphs) {
        if (has_random_op(*sub)) return true;
      }
    }
  }
  return false;
}

bool shares_bytes(const Tensor& t, std::span<const Tensor* const> in) {
  if (!t.defined() || t.nbytes() == 0) return false;
  const auto lo = reinterpret_cast<std::uintptr_t>(t.raw());
  const std::uintptr_t hi = lo + t.nbytes();
  for (const Tensor* x : in) {
    if (x == nullptr || !x->defined() || x->nbytes() == 0) continue;
    const auto xlo = reinterpret_cast<std::uintptr_t>(x->raw());
    if (lo < xlo + x->nbytes() && xlo < hi) return true;
  }
  return false;
}

class ControlFlowStep : public Step {
 public:
  ControlFlowStep(const Node& node, int64_t opset, const OpDef* op, const Model& parent, const CompileOptions& options,
                  std::vector<std::string> captures, std::map<std::string, Tensor> constants)
      : node_(node),
        opset_(opset),
        op_(op),
        options_(options),
        captures_(std::move(captures)),
        constants_(std::move(constants)) {
    opsets_ = parent.opset_imports;
    ir_version_ = parent.ir_version;
    deterministic_ = true;
    for (const auto& [k, attr] : node_.attributes) {
      if (attr.g && has_random_op(*attr.g)) deterministic_ = false;
      for (const auto& sub : attr.graphs) deterministic_ = deterministic_ && !has_random_op(*sub);
    }
  }
  std::string kernel() const override { return "control flow " + node_.op_type + " (bodies compiled)"; }
  Kind kind() const override { return Kind::kFallback; }
  bool deterministic() const override { return deterministic_; }
  void infer(std::span<const Tensor* const>, std::vector<TensorSpec>&) const override {
    throw Error(ErrorCode::kInternal, "infer called on a control-flow step");
  }

  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const size_t n = node_.inputs.size();
    Runner runner(*this, in.subspan(n));
    KernelContext ctx{node_, opset_, {in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n)}, {}, &runner};
    ctx.outputs.resize(node_.outputs.size());
    op_->run(ctx);
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i] == nullptr) continue;
      if (i >= ctx.outputs.size() || !ctx.outputs[i].defined()) {
        throw Error(ErrorCode::kInternal, node_.describe() + ": produced no value for output " + std::to_string(i));
      }
      // A branch may return an outer value itself: its bytes belong to that
      // value, which the memory plan may reuse after this step.
      if (shares_bytes(ctx.outputs[i], in)) ctx.outputs[i] = ctx.outputs[i].clone();
      *out[i] = std::move(ctx.outputs[i]);
    }
  }

 private:
  // A compiled model plans for its input shapes by running every step once:
  // a body whose shapes keep changing (a Loop growing its state) would pay
  // that on every call, so after kMaxReplans new shapes it runs on the
  // reference executor instead.
  static constexpr int kMaxReplans = 3;
  struct Body {
    std::unique_ptr<Model> def;  // the body as a model (the reference executor refers to it)
    std::unique_ptr<CompiledModel> model;
    std::unique_ptr<ReferenceExecutor> reference;
    std::vector<std::string> captures;  // the body's own, a subset of the step's
    std::vector<Shape> last_shapes;
    int replans = 0;
  };

  class Runner : public SubgraphRunner {
   public:
    Runner(ControlFlowStep& step, std::span<const Tensor* const> captured) : step_(step), captured_(captured) {}
    std::vector<Tensor> run_subgraph(const Graph& graph, const std::vector<Tensor>& inputs) override {
      Body& body = step_.body(graph, captured_);
      std::map<std::string, Tensor> feeds;
      for (size_t i = 0; i < inputs.size() && i < graph.inputs.size(); ++i) feeds[graph.inputs[i].name] = inputs[i];
      for (const auto& name : body.captures) feeds[name] = *step_.captured(name, captured_);
      std::vector<Shape> shapes;
      for (const auto& [name, t] : feeds) shapes.push_back(t.shape());
      if (shapes != body.last_shapes) {
        if (!body.last_shapes.empty()) ++body.replans;
        body.last_shapes = std::move(shapes);
      }
      if (body.replans >= kMaxReplans && !body.reference) {
        body.reference = std::make_unique<ReferenceExecutor>(*body.def);
        body.model.reset();  // its arena and packed weights are not needed any more
      }
      std::map<std::string, Tensor> results = body.reference ? body.reference->run(feeds) : body.model->run(feeds);
      std::vector<Tensor> out;
      out.reserve(graph.outputs.size());
      for (const auto& o : graph.outputs) out.push_back(results.at(o.name));
      return out;
    }

   private:
    ControlFlowStep& step_;
    std::span<const Tensor* const> captured_;
  };

  const Tensor* captured(const std::string& name, std::span<const Tensor* const> values) const {
    for (size_t i = 0; i < captures_.size() && i < values.size(); ++i) {
      if (captures_[i] == name && values[i] != nullptr) return values[i];
    }
    throw Error(ErrorCode::kInternal, node_.describe() + ": no value for the captured \"" + name + "\"");
  }

  // The compiled model of `graph`, made on first use: its captures become
  // inputs typed by the values they hold now (any shape later).
  Body& body(const Graph& graph, std::span<const Tensor* const> values) {
    auto it = bodies_.find(&graph);
    if (it != bodies_.end()) return it->second;
    Model m;
    m.ir_version = ir_version_;
    m.opset_imports = opsets_;
    m.graph = graph;
    Body b;
    for (const auto& name : graph.captured_values()) {
      auto c = constants_.find(name);
      if (c != constants_.end()) {  // an outer constant: the body's own initializer
        m.graph.initializers.emplace(name, c->second);
        continue;
      }
      b.captures.push_back(name);
      const Tensor* t = captured(name, values);
      ValueInfo v;
      v.name = name;
      v.type.dtype = t->dtype();
      v.type.has_shape = true;
      v.type.dims.assign(static_cast<size_t>(t->rank()), Dim{});
      m.graph.inputs.push_back(v);
    }
    b.model = std::make_unique<CompiledModel>(m, options_);
    b.def = std::make_unique<Model>(std::move(m));
    return bodies_.emplace(&graph, std::move(b)).first->second;
  }

  Node node_;
  int64_t opset_;
  const OpDef* op_;
  CompileOptions options_;
  std::vector<std::string> captures_;
  std::map<std::string, Tensor> constants_;
  std::map<std::string, int64_t> opsets_;
  int64_t ir_version_ = 0;
  bool deterministic_ = true;
  std::map<const Graph*, Body> bodies_;
};

}  // namespace

std::unique_ptr<Step> make_control_flow_step(const Node& node, int64_t opset, const Model& parent,
                                             const CompileOptions& options, std::vector<std::string> captures,
                                             std::map<std::string, Tensor> constants) {
  const OpDef* op = find_op(node.domain, node.op_type);
  if (op == nullptr) throw Error(ErrorCode::kUnsupported, node.describe() + ": kvant has no kernel for this operator");
  return std::make_unique<ControlFlowStep>(node, opset, op, parent, options, std::move(captures), std::move(constants));
}

}  // namespace kvant
