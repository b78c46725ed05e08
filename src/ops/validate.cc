#include "ops/validate.h"

#include <cmath>
#include <limits>
#include <set>

namespace kvant {

namespace {

// Constants visible to a node: its graph's initializers and its ancestors'.
struct Scope {
  const Graph& graph;
  const Scope* parent;

  const Tensor* constant(const std::string& name) const {
    if (name.empty()) return nullptr;
    for (const Scope* s = this; s != nullptr; s = s->parent) {
      auto it = s->graph.initializers.find(name);
      if (it != s->graph.initializers.end()) return &it->second;
    }
    return nullptr;
  }
  const Tensor* input(const Node& node, size_t i) const {
    return i < node.inputs.size() ? constant(node.inputs[i]) : nullptr;
  }
};

[[noreturn]] void bad(const Node& node, const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, node.describe() + ": " + message);
}

void check_window_values(const Node& node, const char* attr, int64_t min) {
  if (!node.has_attr(attr)) return;
  const std::vector<int64_t> values = node.attr_ints(attr);
  for (size_t i = 0; i < values.size(); ++i) {
    if (values[i] < min || values[i] > kMaxWindowValue) {
      bad(node, std::string(attr) + "[" + std::to_string(i) + "] = " + std::to_string(values[i]) +
                    " is out of range (" + std::to_string(min) + " to " + std::to_string(kMaxWindowValue) + ")");
    }
  }
}

void check_windowed(const Node& node) {
  check_window_values(node, "kernel_shape", 1);
  check_window_values(node, "strides", 1);
  check_window_values(node, "dilations", 1);
  check_window_values(node, "pads", 0);
}

void check_conv(const Node& node, const Scope& scope, size_t weight_input) {
  const Tensor* w = scope.input(node, weight_input);
  if (w == nullptr) return;
  if (w->rank() < 3) bad(node, "W must have rank >= 3, got " + w->describe());
  const std::vector<int64_t> kernel(w->shape().begin() + 2, w->shape().end());
  if (node.has_attr("kernel_shape") && node.attr_ints("kernel_shape") != kernel) {
    bad(node, "kernel_shape attribute " + shape_to_string(node.attr_ints("kernel_shape")) +
                  " does not match W's shape " + shape_to_string(w->shape()));
  }
}

void check_rnn(const Node& node, const Scope& scope, int64_t gates) {
  if (!node.has_attr("hidden_size")) return;
  const int64_t hidden = node.attr_int("hidden_size", 0);
  if (hidden < 1 || hidden > kMaxWindowValue) {
    bad(node,
        "hidden_size " + std::to_string(hidden) + " is out of range (1 to " + std::to_string(kMaxWindowValue) + ")");
  }
  const Tensor* w = scope.input(node, 1);
  const Tensor* r = scope.input(node, 2);
  if (w != nullptr && (w->rank() != 3 || w->dim(1) != gates * hidden)) {
    bad(node, "hidden_size " + std::to_string(hidden) + " needs W of shape [dirs, " + std::to_string(gates * hidden) +
                  ", input] (" + std::to_string(gates) + " gates x hidden_size), got " + w->describe());
  }
  if (r != nullptr && (r->rank() != 3 || r->dim(1) != gates * hidden || r->dim(2) != hidden)) {
    bad(node, "hidden_size " + std::to_string(hidden) + " needs R of shape [dirs, " + std::to_string(gates * hidden) +
                  ", " + std::to_string(hidden) + "], got " + r->describe());
  }
}

// A constant scale must be a finite normal positive float: zero divides by
// zero in QuantizeLinear and in every requantization, a subnormal or
// non-finite one gives no usable multiplier (the same rule kvant applies to
// the models it writes, onnx/export_check.h).
void check_scale_values(const Node& node, const Tensor& scale, const std::string& which) {
  if (!is_float(scale.dtype())) return;
  for (int64_t i = 0; i < scale.numel(); ++i) {
    const double s = scale.get_as_double(i);
    if (std::isfinite(s) && s >= std::numeric_limits<float>::min()) continue;
    bad(node, which + " " + scale.describe() + ": element " + std::to_string(i) + " is " + std::to_string(s) +
                  "; scales must be finite, positive and at least 1.18e-38");
  }
}

void check_qdq(const Node& node, const Scope& scope) {
  const Tensor* x = scope.input(node, 0);
  const Tensor* scale = scope.input(node, 1);
  const Tensor* zp = scope.input(node, 2);
  if (scale == nullptr) return;
  check_scale_values(node, *scale, "scale");
  const bool blocked = node.attr_int("block_size", 0) > 0;
  if (!blocked && scale->rank() > 1) {
    bad(node, "scale " + scale->describe() + " has rank " + std::to_string(scale->rank()) +
                  "; it must be a scalar or 1-D (per axis) without block_size");
  }
  if (blocked && x != nullptr && scale->rank() != x->rank()) {
    bad(node, "a blocked scale must have the input's rank: scale " + scale->describe() + ", input " + x->describe());
  }
  if (zp != nullptr && zp->shape() != scale->shape() && !(zp->numel() == 1 && scale->numel() == 1)) {
    bad(node, "zero point " + zp->describe() + " must have the scale's shape " + shape_to_string(scale->shape()));
  }
  if (!blocked && scale->rank() == 1 && scale->numel() > 1 && x != nullptr) {
    int64_t axis = node.attr_int("axis", 1);
    if (axis < 0) axis += x->rank();
    if (axis < 0 || axis >= x->rank()) {
      bad(node, "axis " + std::to_string(node.attr_int("axis", 1)) + " is out of range for " + x->describe());
    }
    if (x->dim(static_cast<int>(axis)) != scale->numel()) {
      bad(node, "scale " + scale->describe() + " needs one value per index of axis " + std::to_string(axis) + " of " +
                    x->describe());
    }
  }
}

void validate_graph(const Graph& graph, const Scope* parent) {
  const Scope scope{graph, parent};
  for (const Node& node : graph.nodes) {
    const std::string& op = node.op_type;
    const bool onnx_domain = node.domain.empty();
    if (onnx_domain && (op == "Conv" || op == "ConvTranspose" || op == "ConvInteger")) {
      check_windowed(node);
      check_conv(node, scope, 1);
    } else if (onnx_domain && op == "QLinearConv") {
      check_windowed(node);
      check_conv(node, scope, 3);
    } else if (onnx_domain && (op == "MaxPool" || op == "AveragePool" || op == "LpPool")) {
      check_windowed(node);
    } else if (onnx_domain && (op == "LSTM" || op == "GRU" || op == "RNN")) {
      check_rnn(node, scope, op == "LSTM" ? 4 : op == "GRU" ? 3 : 1);
    } else if (onnx_domain && (op == "QuantizeLinear" || op == "DequantizeLinear")) {
      check_qdq(node, scope);
    }
    if (op == "QLinearConv" || op == "QLinearMatMul" || op == "QLinearAdd" || op == "QLinearMul") {
      for (size_t i : {1, 4, 6}) {
        if (const Tensor* s = scope.input(node, i)) check_scale_values(node, *s, "input " + std::to_string(i));
      }
    }
    for (const auto& [key, attr] : node.attributes) {
      if (attr.g) validate_graph(*attr.g, &scope);
      for (const auto& g : attr.graphs) validate_graph(*g, &scope);
    }
  }
}

}  // namespace

void validate_model(const Model& model) { validate_graph(model.graph, nullptr); }

}  // namespace kvant
