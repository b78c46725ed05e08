#include "onnx/reader.h"

#include <fstream>
#include <limits>
#include <set>

#include "onnx/tensor_proto.h"

namespace kvant {

namespace {

struct ImportContext {
  std::filesystem::path base_dir;
};

TypeInfo type_from_proto(const onnx::TypeProto& type) {
  TypeInfo info;
  if (!type.has_tensor_type()) return info;  // sequences, maps, optionals: undefined
  const auto& tt = type.tensor_type();
  if (is_known_dtype(tt.elem_type())) info.dtype = static_cast<DType>(tt.elem_type());
  if (tt.has_shape()) {
    info.has_shape = true;
    for (const auto& d : tt.shape().dim()) {
      Dim dim;
      if (d.has_dim_value() && d.dim_value() >= 0) dim.value = d.dim_value();
      if (d.has_dim_param()) dim.param = d.dim_param();
      info.dims.push_back(dim);
    }
  }
  return info;
}

ValueInfo value_from_proto(const onnx::ValueInfoProto& v) { return {v.name(), type_from_proto(v.type())}; }

Graph graph_from_proto(const onnx::GraphProto& proto, const ImportContext& ctx, const std::vector<std::string>& outer);

Attribute attribute_from_proto(const onnx::AttributeProto& a, const Node& node, const ImportContext& ctx,
                               const std::vector<std::string>& scope) {
  Attribute out;
  using A = onnx::AttributeProto;
  auto type = a.type();
  if (type == A::UNDEFINED) {  // very old exporters leave type unset: infer from the field used
    if (a.has_f()) type = A::FLOAT;
    else if (a.has_i()) type = A::INT;
    else if (a.has_s()) type = A::STRING;
    else if (a.has_t()) type = A::TENSOR;
    else if (a.has_g()) type = A::GRAPH;
    else if (a.floats_size()) type = A::FLOATS;
    else if (a.ints_size()) type = A::INTS;
    else if (a.strings_size()) type = A::STRINGS;
  }
  switch (type) {
    case A::FLOAT: out.kind = Attribute::Kind::kFloat; out.f = a.f(); break;
    case A::INT: out.kind = Attribute::Kind::kInt; out.i = a.i(); break;
    case A::STRING: out.kind = Attribute::Kind::kString; out.s = a.s(); break;
    case A::TENSOR: out.kind = Attribute::Kind::kTensor; out.t = tensor_from_proto(a.t(), ctx.base_dir); break;
    case A::GRAPH:
      out.kind = Attribute::Kind::kGraph;
      out.g = std::make_shared<Graph>(graph_from_proto(a.g(), ctx, scope));
      break;
    case A::FLOATS: out.kind = Attribute::Kind::kFloats; out.floats.assign(a.floats().begin(), a.floats().end()); break;
    case A::INTS: out.kind = Attribute::Kind::kInts; out.ints.assign(a.ints().begin(), a.ints().end()); break;
    case A::STRINGS:
      out.kind = Attribute::Kind::kStrings;
      out.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case A::TENSORS:
      out.kind = Attribute::Kind::kTensors;
      for (const auto& t : a.tensors()) out.tensors.push_back(tensor_from_proto(t, ctx.base_dir));
      break;
    case A::GRAPHS:
      out.kind = Attribute::Kind::kGraphs;
      for (const auto& g : a.graphs()) out.graphs.push_back(std::make_shared<Graph>(graph_from_proto(g, ctx, scope)));
      break;
    default:
      throw Error(ErrorCode::kUnsupported, node.describe() + ": attribute \"" + a.name() + "\" has unsupported type " +
                                               std::to_string(static_cast<int>(a.type())));
  }
  return out;
}

// Constant(value=...) -> a tensor; nullopt for forms kvant cannot hold.
Tensor constant_value(const Node& node) {
  if (const Tensor* t = node.attr_tensor("value")) return *t;
  if (node.has_attr("value_float")) return Tensor::scalar<float>(node.attr_float("value_float", 0));
  if (node.has_attr("value_int")) return Tensor::scalar<int64_t>(node.attr_int("value_int", 0));
  if (node.has_attr("value_floats")) {
    auto v = node.attr_floats("value_floats");
    return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  }
  if (node.has_attr("value_ints")) {
    auto v = node.attr_ints("value_ints");
    return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  }
  throw Error(ErrorCode::kUnsupported,
              node.describe() + ": only tensor, float and int constants are supported (not sparse or string)");
}

Graph graph_from_proto(const onnx::GraphProto& proto, const ImportContext& ctx, const std::vector<std::string>& outer) {
  Graph g;
  g.name = proto.name();
  for (const auto& init : proto.initializer()) {
    if (init.name().empty()) throw Error(ErrorCode::kInvalidArgument, "graph \"" + g.name + "\": an initializer has no name");
    if (g.initializers.count(init.name())) {
      throw Error(ErrorCode::kInvalidArgument, "graph \"" + g.name + "\": initializer \"" + init.name() + "\" is defined twice");
    }
    g.initializers[init.name()] = tensor_from_proto(init, ctx.base_dir);
  }
  if (proto.sparse_initializer_size() > 0) {
    throw Error(ErrorCode::kUnsupported, "graph \"" + g.name + "\": sparse initializers are not supported");
  }
  std::set<std::string> input_names;
  for (const auto& in : proto.input()) {
    if (!input_names.insert(in.name()).second) {
      throw Error(ErrorCode::kInvalidArgument, "graph \"" + g.name + "\": input \"" + in.name() + "\" is declared twice");
    }
    if (g.initializers.count(in.name())) continue;  // an initializer listed as input: a constant
    g.inputs.push_back(value_from_proto(in));
  }
  for (const auto& out : proto.output()) g.outputs.push_back(value_from_proto(out));
  for (const auto& vi : proto.value_info()) g.value_info[vi.name()] = value_from_proto(vi);

  // Names visible to subgraphs of this graph: outer scope + everything here.
  std::vector<std::string> scope = outer;
  for (const auto& in : proto.input()) scope.push_back(in.name());
  for (const auto& init : proto.initializer()) scope.push_back(init.name());
  for (const auto& n : proto.node()) {
    for (const auto& o : n.output()) scope.push_back(o);
  }

  int unnamed = 0;
  for (const auto& np : proto.node()) {
    Node node;
    node.name = np.name().empty() ? np.op_type() + "_" + std::to_string(unnamed++) : np.name();
    node.op_type = np.op_type();
    node.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    node.inputs.assign(np.input().begin(), np.input().end());
    node.outputs.assign(np.output().begin(), np.output().end());
    if (node.op_type.empty()) throw Error(ErrorCode::kInvalidArgument, node.describe() + " has no op_type");
    for (const auto& a : np.attribute()) {
      if (!a.ref_attr_name().empty()) continue;  // only meaningful inside functions
      node.attributes[a.name()] = attribute_from_proto(a, node, ctx, scope);
    }
    if (node.op_type == "Constant" && node.domain.empty() && node.outputs.size() == 1 && !node.outputs[0].empty()) {
      if (g.initializers.count(node.outputs[0])) {
        throw Error(ErrorCode::kInvalidArgument, node.describe() + ": output \"" + node.outputs[0] + "\" is already an initializer");
      }
      g.initializers[node.outputs[0]] = constant_value(node);
      continue;
    }
    g.nodes.push_back(std::move(node));
  }
  topological_sort(g, outer);
  for (const auto& out : g.outputs) {
    bool defined = g.initializers.count(out.name) || input_names.count(out.name);
    for (const auto& n : g.nodes) {
      for (const auto& o : n.outputs) defined = defined || o == out.name;
    }
    for (const auto& o : outer) defined = defined || o == out.name;
    if (!defined) {
      throw Error(ErrorCode::kInvalidArgument, "graph \"" + g.name + "\": output \"" + out.name + "\" is never produced");
    }
  }
  return g;
}

Model model_from_proto(const onnx::ModelProto& proto, const ImportContext& ctx) {
  Model m;
  m.ir_version = proto.ir_version();
  m.producer_name = proto.producer_name();
  m.producer_version = proto.producer_version();
  for (const auto& op : proto.opset_import()) {
    const std::string domain = op.domain() == "ai.onnx" ? "" : op.domain();
    m.opset_imports[domain] = op.version();
  }
  if (!proto.has_graph()) throw Error(ErrorCode::kInvalidArgument, "the model has no graph");
  if (m.opset_imports.empty()) m.opset_imports[""] = 1;  // IR v1/v2 models without opset_import
  m.graph = graph_from_proto(proto.graph(), ctx, {});
  return m;
}

std::string prefix_for(const std::string& display) { return display + ": "; }

}  // namespace

Result<Model> load_onnx_bytes(const void* data, size_t size, const std::filesystem::path& base_dir,
                              const std::string& display_name) {
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return invalid_argument(prefix_for(display_name) + "larger than 2 GB; store the weights as external data");
  }
  onnx::ModelProto proto;
  if (!proto.ParseFromArray(data, static_cast<int>(size))) {
    return invalid_argument(prefix_for(display_name) + "not a valid ONNX model (the protobuf data could not be parsed)");
  }
  try {
    Model m = model_from_proto(proto, ImportContext{base_dir});
    return m;
  } catch (const Error& e) {
    return Status(e.code(), prefix_for(display_name) + e.what());
  } catch (const std::exception& e) {
    return invalid_argument(prefix_for(display_name) + e.what());
  }
}

Result<Model> load_onnx(const std::filesystem::path& file, const LoadOptions& options) {
  (void)options;  // TODO(import): shape inference and input shape overrides
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) return not_found(file.string() + ": no such file");
  if (std::filesystem::is_directory(file, ec)) return invalid_argument(file.string() + ": is a folder, not an ONNX file");
  std::ifstream in(file, std::ios::binary);
  if (!in) return not_found(file.string() + ": cannot be opened");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) return invalid_argument(file.string() + ": the file is empty");
  auto dir = file.parent_path();
  if (dir.empty()) dir = ".";
  auto result = load_onnx_bytes(bytes.data(), bytes.size(), dir, file.string());
  if (result.ok()) result->source_path = file;
  return result;
}

Result<Tensor> load_tensor_pb(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return not_found(file.string() + ": cannot be opened");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  onnx::TensorProto proto;
  if (!proto.ParseFromString(bytes)) return invalid_argument(file.string() + ": not a serialized ONNX TensorProto");
  try {
    return tensor_from_proto(proto, file.parent_path());
  } catch (const Error& e) {
    return Status(e.code(), file.string() + ": " + e.what());
  }
}

}  // namespace kvant
