// model_stats() and type_to_string() (kvant.h): what `kvant inspect` prints,
// from runtime/model_stats.h (parameters, MACs) and the graph itself
// (operators, opsets, the quantization format).
#include <algorithm>
#include <set>

#include "api/api_internal.h"
#include "runtime/executor.h"
#include "runtime/model_stats.h"

namespace kvant {

namespace {

// Every node, subgraphs included, by operator ("domain:op" outside ONNX's).
void count_ops(const Graph& graph, std::map<std::string, int64_t>& histogram, int64_t& nodes,
               std::set<std::string>& formats) {
  static const std::set<std::string> kQOperator = {"QLinearConv",        "QLinearMatMul",
                                                   "ConvInteger",        "MatMulInteger",
                                                   "QLinearAdd",         "QLinearMul",
                                                   "QLinearConcat",      "QGemm",
                                                   "QLinearSigmoid",     "QLinearLeakyRelu",
                                                   "QLinearAveragePool", "QLinearGlobalAveragePool",
                                                   "QLinearSoftmax",     "DynamicQuantizeLinear",
                                                   "DynamicQuantizeLSTM"};
  for (const Node& node : graph.nodes) {
    histogram[node.domain.empty() ? node.op_type : node.domain + ":" + node.op_type] += 1;
    nodes += 1;
    if (node.op_type == "QuantizeLinear" || node.op_type == "DequantizeLinear") formats.insert("QDQ");
    if (kQOperator.count(node.op_type)) formats.insert("QOperator");
    if (node.op_type == "MatMulNBits") formats.insert("MatMulNBits");
    for (const auto& [key, attr] : node.attributes) {
      if (attr.g) count_ops(*attr.g, histogram, nodes, formats);
      for (const auto& g : attr.graphs) count_ops(*g, histogram, nodes, formats);
    }
  }
}

std::vector<TensorInfo> infos(const std::vector<ValueInfo>& values) {
  std::vector<TensorInfo> out;
  for (const ValueInfo& v : values) out.push_back(ApiAccess::info(v));
  return out;
}

// The type of a node's first output, from shape inference or the graph's outputs.
const ValueInfo* output_info(const Graph& graph, const Node& node) {
  if (node.outputs.empty() || node.outputs[0].empty()) return nullptr;
  if (auto it = graph.value_info.find(node.outputs[0]); it != graph.value_info.end()) return &it->second;
  for (const auto& out : graph.outputs) {
    if (out.name == node.outputs[0]) return &out;
  }
  return nullptr;
}

}  // namespace

std::string type_to_string(const TensorInfo& info) {
  TypeInfo type;
  type.dtype = static_cast<DType>(static_cast<int32_t>(info.dtype));
  type.has_shape = info.has_shape;
  for (size_t i = 0; i < info.shape.size(); ++i) {
    Dim d;
    d.value = info.shape[i];
    if (i < info.dim_names.size()) d.param = info.dim_names[i];
    type.dims.push_back(d);
  }
  return type.to_string();
}

Result<ModelStats> model_stats(const OnnxModel& onnx_model) {
  return guarded([&]() -> Result<ModelStats> {
    const Model& model = ApiAccess::impl(onnx_model, "model_stats").model;
    const Graph& graph = model.graph;
    ModelStats stats;
    stats.producer_name = model.producer_name;
    stats.producer_version = model.producer_version;
    stats.ir_version = model.ir_version;
    stats.opsets = model.opset_imports;
    stats.inputs = infos(graph.inputs);
    stats.outputs = infos(graph.outputs);

    std::map<std::string, int64_t> histogram;
    std::set<std::string> formats;
    count_ops(graph, histogram, stats.nodes, formats);
    for (const auto& [op, count] : histogram) stats.operators.push_back(OperatorCount{op, count});
    std::stable_sort(stats.operators.begin(), stats.operators.end(),
                     [](const OperatorCount& a, const OperatorCount& b) { return a.nodes > b.nodes; });
    for (const char* format : {"QDQ", "QOperator", "MatMulNBits"}) {
      if (formats.count(format)) stats.quantization.push_back(format);
    }
    stats.unsupported = unsupported_operators(model);

    const ParamStats params = count_parameters(graph);
    stats.parameters = params.parameters;
    stats.parameter_bytes = params.parameter_bytes;
    stats.initializer_bytes = params.total_bytes;
    for (const ParamGroup& g : params.by_dtype) {
      stats.initializers.push_back(
          InitializerGroup{ApiAccess::to_data_type(g.dtype), g.tensors, g.elements, g.bytes, is_float(g.dtype)});
    }

    const MacStats macs = count_macs(graph);
    stats.macs = macs.total;
    stats.macs_unknown = macs.unknown;
    for (const auto& l : macs.layers) {
      LayerCost layer;
      layer.node = l.node->name;
      layer.op_type = l.node->op_type;
      layer.macs = l.macs;
      layer.reason = l.reason;
      if (!l.node->outputs.empty()) layer.output.name = l.node->outputs[0];
      if (const ValueInfo* out = output_info(graph, *l.node)) {
        layer.has_output_type = true;
        layer.output = ApiAccess::info(*out);
      }
      stats.layers.push_back(std::move(layer));
    }
    return stats;
  });
}

}  // namespace kvant
