#include "onnx/export_check.h"

#include <onnx/defs/schema.h>

#include <cmath>
#include <limits>
#include <set>

namespace kvant {

namespace {

constexpr float kMinNormal = std::numeric_limits<float>::min();  // quant_params.h's kMinScale

[[noreturn]] void bad(const Node& node, const std::string& message) {
  throw Error(ErrorCode::kInvalidArgument, node.describe() + ": " + message + " (kvant does not write invalid models)");
}

const Tensor* constant(const Graph& graph, const std::vector<const Graph*>& outer, const Node& node, size_t i) {
  if (node.inputs.size() <= i || node.inputs[i].empty()) return nullptr;
  auto it = graph.initializers.find(node.inputs[i]);
  if (it != graph.initializers.end()) return &it->second;
  for (const Graph* g : outer) {
    auto o = g->initializers.find(node.inputs[i]);
    if (o != g->initializers.end()) return &o->second;
  }
  return nullptr;
}

void check_scale_values(const Node& node, const Tensor& scale, const std::string& which) {
  if (!is_float(scale.dtype())) return;
  for (int64_t i = 0; i < scale.numel(); ++i) {
    const double s = scale.get_as_double(i);
    if (std::isfinite(s) && s >= kMinNormal) continue;
    const std::string what = std::isnan(s) ? "NaN" : std::isinf(s) ? "infinite" : s <= 0 ? "not positive" : "subnormal";
    bad(node, which + " element " + std::to_string(i) + " is " + what + " (" + std::to_string(s) +
                  "); scales must be normal positive floats (>= 1.18e-38)");
  }
}

bool is_narrow_int(DType t) { return t == DType::kInt4 || t == DType::kUInt4; }
bool is_opset21_type(DType t) { return is_narrow_int(t) || t == DType::kInt16 || t == DType::kUInt16; }

// Rule 2: QuantizeLinear / DequantizeLinear at `opset`.
void check_qdq(const Graph& graph, const std::vector<const Graph*>& outer, const Node& node, int64_t opset) {
  if (opset < 10) bad(node, node.op_type + " needs opset 10 or later; the model declares " + std::to_string(opset));
  const bool dq = node.op_type == "DequantizeLinear";
  const Tensor* x = constant(graph, outer, node, 0);
  const Tensor* scale = constant(graph, outer, node, 1);
  const Tensor* zp = constant(graph, outer, node, 2);
  const int64_t block = node.attr_int("block_size", 0);
  if (node.has_attr("axis") && opset < 13)
    bad(node, "the axis attribute needs opset 13 (the model declares " + std::to_string(opset) + ")");
  if (node.has_attr("block_size") && opset < 21)
    bad(node, "block_size needs opset 21 (the model declares " + std::to_string(opset) + ")");
  for (const Tensor* t : {dq ? x : nullptr, zp}) {
    if (t != nullptr && is_opset21_type(t->dtype()) && opset < 21) {
      bad(node, std::string(dtype_name(t->dtype())) + " data needs opset 21 (the model declares " +
                    std::to_string(opset) + ")");
    }
  }
  if (scale == nullptr) return;  // computed at run time: nothing to check here
  check_scale_values(node, *scale, "scale");
  if (opset < 13 && scale->numel() != 1) {
    bad(node, "a per-axis scale (" + scale->describe() + ") needs opset 13 (the model declares " +
                  std::to_string(opset) + ")");
  }
  if (block > 0) {
    if (x != nullptr && scale->rank() != x->rank()) {
      bad(node, "a blocked scale must have the input's rank: scale " + scale->describe() + ", input " + x->describe());
    }
  } else if (scale->rank() > 1) {
    bad(node, "scale " + scale->describe() + " has rank " + std::to_string(scale->rank()) +
                  "; per-tensor and per-axis scales have rank 0 or 1 (rank > 1 needs block_size)");
  } else if (scale->numel() > 1 && x != nullptr) {
    int64_t axis = node.attr_int("axis", 1);
    if (axis < 0) axis += x->rank();
    if (axis < 0 || axis >= x->rank() || x->dim(static_cast<int>(axis)) != scale->numel()) {
      bad(node, "scale " + scale->describe() + " does not give one value per channel of " + x->describe() +
                    " along axis " + std::to_string(node.attr_int("axis", 1)));
    }
  }
  if (zp != nullptr && zp->shape() != scale->shape() && !(zp->numel() == 1 && scale->numel() == 1)) {
    bad(node, "zero point " + zp->describe() + " and scale " + scale->describe() + " differ in shape");
  }
  if (dq && zp != nullptr && x != nullptr && zp->dtype() != x->dtype()) {
    bad(node, std::string("zero point type ") + dtype_name(zp->dtype()) + " differs from the data's " +
                  dtype_name(x->dtype()));
  }
}

// Inputs that are scales, by operator (rule 3); QuantizeLinear and
// DequantizeLinear are checked with their shapes in check_qdq.
std::vector<size_t> scale_inputs(const Node& node) {
  if (node.op_type == "QLinearConv" || node.op_type == "QLinearMatMul") return {1, 4, 6};
  if (node.op_type == "QLinearAdd" || node.op_type == "QLinearMul") return {1, 4, 6};
  if (node.op_type == "MatMulNBits") return {2};
  return {};
}

void check_graph(const Model& model, const Graph& graph, std::vector<const Graph*>& outer) {
  for (const Node& node : graph.nodes) {
    if (!model.opset_imports.count(node.domain) && !(node.domain == "ai.onnx" && model.opset_imports.count(""))) {
      bad(node, "its domain \"" + node.domain + "\" is not among the model's opset imports");
    }
    if (node.domain.empty() && (node.op_type == "QuantizeLinear" || node.op_type == "DequantizeLinear")) {
      check_qdq(graph, outer, node, model.opset(""));
    }
    for (size_t i : scale_inputs(node)) {
      if (const Tensor* s = constant(graph, outer, node, i))
        check_scale_values(node, *s, "scale input " + std::to_string(i));
    }
    for (const auto& [key, attr] : node.attributes) {
      std::vector<const Graph*> subs;
      if (attr.g) subs.push_back(attr.g.get());
      for (const auto& g : attr.graphs) subs.push_back(g.get());
      for (const Graph* sub : subs) {
        outer.push_back(&graph);
        check_graph(model, *sub, outer);
        outer.pop_back();
      }
    }
  }
}

// Rule 1: schema verification where libonnx knows the opset.
std::string describe(const onnx::NodeProto& node) {
  const std::string name = !node.name().empty() ? node.name() : node.output_size() > 0 ? node.output(0) : "";
  return "node \"" + name + "\" (" + node.op_type() + ")";
}

void verify_schemas(const onnx::GraphProto& graph, const std::map<std::string, int64_t>& opsets) {
  const auto& known = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
  for (const auto& node : graph.node()) {
    const std::string domain = node.domain() == "ai.onnx" ? "" : node.domain();
    auto version = opsets.find(domain);
    auto range = known.find(domain);
    if (version != opsets.end() && range != known.end() && version->second <= range->second.second) {
      const onnx::OpSchema* schema =
          onnx::OpSchemaRegistry::Schema(node.op_type(), static_cast<int>(version->second), domain);
      if (schema == nullptr && domain.empty()) {
        throw Error(ErrorCode::kInvalidArgument, describe(node) + ": no such operator at opset " +
                                                     std::to_string(version->second) +
                                                     " (kvant does not write invalid models)");
      }
      if (schema != nullptr) {
        try {
          schema->Verify(node);
        } catch (const std::exception& e) {
          throw Error(ErrorCode::kInvalidArgument, describe(node) + " is invalid at opset " +
                                                       std::to_string(version->second) + ": " + e.what() +
                                                       " (kvant does not write invalid models)");
        }
      }
    }
    for (const auto& a : node.attribute()) {
      if (a.has_g()) verify_schemas(a.g(), opsets);
      for (const auto& g : a.graphs()) verify_schemas(g, opsets);
    }
  }
}

}  // namespace

void check_for_export(const Model& model, const onnx::ModelProto& proto) {
  std::vector<const Graph*> outer;
  check_graph(model, model.graph, outer);
  verify_schemas(proto.graph(), model.opset_imports);
}

}  // namespace kvant
