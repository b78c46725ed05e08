// The generic steps: a reference operator as a fallback, and views.
#include <cstdint>
#include <set>

#include "ops/op_registry.h"
#include "runtime/step.h"

namespace kvant {

namespace {

// Runs `op` on `in` and returns its outputs.
std::vector<Tensor> run_reference(const OpDef& op, const Node& node, int64_t opset, std::span<const Tensor* const> in) {
  KernelContext ctx{node, opset, {in.begin(), in.end()}, {}, nullptr};
  ctx.outputs.resize(node.outputs.size());
  op.run(ctx);
  return std::move(ctx.outputs);
}

class FallbackStep : public Step {
 public:
  FallbackStep(const Node& node, int64_t opset, const OpDef* op) : node_(node), opset_(opset), op_(op) {}
  std::string kernel() const override { return "reference " + node_.op_type; }
  Kind kind() const override { return Kind::kFallback; }
  bool reads_shapes_only() const override {
    return node_.domain.empty() && (node_.op_type == "Shape" || node_.op_type == "Size");
  }
  bool deterministic() const override {
    const std::string& op = node_.op_type;
    return op.rfind("Random", 0) != 0 && op != "Bernoulli" && op != "Multinomial";
  }
  void infer(std::span<const Tensor* const>, std::vector<TensorSpec>&) const override {
    throw Error(ErrorCode::kInternal, "infer called on a fallback step");
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    std::vector<Tensor> results = run_reference(*op_, node_, opset_, in);
    for (size_t i = 0; i < out.size(); ++i) {
      if (out[i] == nullptr) continue;
      if (i >= results.size() || !results[i].defined()) {
        throw Error(ErrorCode::kInternal, node_.describe() + ": produced no value for output " + std::to_string(i));
      }
      // A reference kernel may return an input itself (Dropout, Identity,
      // an Optional's value): its bytes then belong to the input's value,
      // which the memory plan may reuse once this step has read it, so the
      // output gets its own copy.
      if (shares_bytes_with(results[i], in)) results[i] = results[i].clone();
      *out[i] = std::move(results[i]);
    }
  }

 private:
  static bool shares_bytes_with(const Tensor& t, std::span<const Tensor* const> in) {
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

  Node node_;
  int64_t opset_;
  const OpDef* op_;
};

class ViewStep : public Step {
 public:
  ViewStep(const Node& node, int64_t opset, const OpDef* op) : node_(node), opset_(opset), op_(op) {}
  std::string kernel() const override { return "view (" + node_.op_type + ")"; }
  Kind kind() const override { return Kind::kView; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    std::vector<Tensor> results = run_reference(*op_, node_, opset_, in);
    out.assign(1, TensorSpec{results.at(0).dtype(), results.at(0).shape()});
    shape_ = results.at(0).shape();
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    // The planned shape stays; only the storage follows the input.
    *out[0] = in[0]->reshaped(shape_);
  }

 private:
  Node node_;
  int64_t opset_;
  const OpDef* op_;
  mutable Shape shape_;  // planned by infer()
};

}  // namespace

std::unique_ptr<Step> make_fallback_step(const Node& node, int64_t opset) {
  const OpDef* op = find_op(node.domain, node.op_type);
  if (op == nullptr) throw Error(ErrorCode::kUnsupported, node.describe() + ": kvant has no kernel for this operator");
  return std::make_unique<FallbackStep>(node, opset, op);
}

std::unique_ptr<Step> make_view_step(const Node& node, int64_t opset) {
  static const std::set<std::string> kViews = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"};
  if (!node.domain.empty() || !kViews.count(node.op_type)) return nullptr;
  if (node.op_type == "Dropout" && node.outputs.size() > 1 && !node.outputs[1].empty()) return nullptr;
  return std::make_unique<ViewStep>(node, opset, find_op(node.domain, node.op_type));
}

}  // namespace kvant
