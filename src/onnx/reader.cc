// ONNX import: bytes -> ModelProto -> (input shape overrides, shape
// inference) -> kvant Model, validated on the way.
//
// Checks, each ending in one message that names the file and the place:
//   - the bytes parse as a ModelProto that has a graph (text, PNG, zip or
//     random bytes that protobuf happens to accept are still refused);
//   - the default-domain opset is within 1..kMaxOnnxOpset;
//   - every tensor's data matches its dims (tensor_proto.cc), external data
//     stays inside the model's folder;
//   - every node has an op_type, every input is defined, no output is defined
//     twice, the graph is acyclic (topological_sort), every graph output is
//     produced;
//   - subgraphs nest at most kMaxSubgraphDepth deep.
#include "onnx/reader.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl.h>

#include <limits>
#include <map>
#include <set>
#include <unordered_set>

#include "io/input_file.h"
#include "ir/limits.h"
#include "onnx/shape_inference.h"
#include "onnx/tensor_proto.h"

namespace kvant {

namespace {

// Real models nest If/Loop bodies a few levels deep; more is a malformed or
// hostile file (each level multiplies the work of scope checks).
constexpr int kMaxSubgraphDepth = 16;
constexpr int kProtobufRecursionLimit = 400;
const std::string kUnparsable =
    ": the protobuf data could not be parsed (truncated or corrupted file, or messages nested "
    "more than 400 deep?)";

struct ImportContext {
  std::filesystem::path base_dir;
  // Top-level initializers already converted (load_onnx releases their
  // bytes in the proto as it goes), by name.
  std::map<std::string, Tensor>* converted = nullptr;
};

Graph graph_from_proto(const onnx::GraphProto& proto, const ImportContext& ctx, const std::vector<std::string>& outer,
                       int depth);

std::shared_ptr<Graph> subgraph_from_proto(const onnx::GraphProto& g, const Node& node, const std::string& attr,
                                           const ImportContext& ctx, const std::vector<std::string>& scope, int depth) {
  if (depth >= kMaxSubgraphDepth) {
    throw Error(ErrorCode::kInvalidArgument, node.describe() + ": attribute \"" + attr +
                                                 "\": subgraphs nest more than " + std::to_string(kMaxSubgraphDepth) +
                                                 " levels deep");
  }
  try {
    return std::make_shared<Graph>(graph_from_proto(g, ctx, scope, depth + 1));
  } catch (const Error& e) {
    throw Error(e.code(), node.describe() + ": attribute \"" + attr + "\": " + e.what());
  }
}

Attribute attribute_from_proto(const onnx::AttributeProto& a, const Node& node, const ImportContext& ctx,
                               const std::vector<std::string>& scope, int depth) {
  Attribute out;
  using A = onnx::AttributeProto;
  auto type = a.type();
  if (type == A::UNDEFINED) {  // very old exporters leave type unset: infer from the field used
    if (a.has_f())
      type = A::FLOAT;
    else if (a.has_i())
      type = A::INT;
    else if (a.has_s())
      type = A::STRING;
    else if (a.has_t())
      type = A::TENSOR;
    else if (a.has_g())
      type = A::GRAPH;
    else if (a.floats_size())
      type = A::FLOATS;
    else if (a.ints_size())
      type = A::INTS;
    else if (a.strings_size())
      type = A::STRINGS;
  }
  const std::string tensor_label = node.describe() + ": attribute \"" + a.name() + "\" tensor";
  switch (type) {
    case A::FLOAT:
      out.kind = Attribute::Kind::kFloat;
      out.f = a.f();
      break;
    case A::INT:
      out.kind = Attribute::Kind::kInt;
      out.i = a.i();
      break;
    case A::STRING:
      out.kind = Attribute::Kind::kString;
      out.s = a.s();
      break;
    case A::TENSOR:
      out.kind = Attribute::Kind::kTensor;
      out.t = tensor_from_proto(a.t(), ctx.base_dir, tensor_label);
      break;
    case A::GRAPH:
      out.kind = Attribute::Kind::kGraph;
      out.g = subgraph_from_proto(a.g(), node, a.name(), ctx, scope, depth);
      break;
    case A::FLOATS:
      out.kind = Attribute::Kind::kFloats;
      out.floats.assign(a.floats().begin(), a.floats().end());
      break;
    case A::INTS:
      out.kind = Attribute::Kind::kInts;
      out.ints.assign(a.ints().begin(), a.ints().end());
      break;
    case A::STRINGS:
      out.kind = Attribute::Kind::kStrings;
      out.strings.assign(a.strings().begin(), a.strings().end());
      break;
    case A::TENSORS:
      out.kind = Attribute::Kind::kTensors;
      for (const auto& t : a.tensors()) out.tensors.push_back(tensor_from_proto(t, ctx.base_dir, tensor_label));
      break;
    case A::GRAPHS:
      out.kind = Attribute::Kind::kGraphs;
      for (const auto& g : a.graphs()) out.graphs.push_back(subgraph_from_proto(g, node, a.name(), ctx, scope, depth));
      break;
    default:
      throw Error(ErrorCode::kUnsupported, node.describe() + ": attribute \"" + a.name() + "\" has unsupported type " +
                                               std::to_string(static_cast<int>(a.type())));
  }
  return out;
}

// Constant(value=...) -> a tensor; throws for forms kvant cannot hold.
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

std::string graph_label(const Graph& g) { return "graph \"" + g.name + "\""; }

Graph graph_from_proto(const onnx::GraphProto& proto, const ImportContext& ctx, const std::vector<std::string>& outer,
                       int depth) {
  Graph g;
  g.name = proto.name();
  for (const auto& init : proto.initializer()) {
    if (init.name().empty()) throw Error(ErrorCode::kInvalidArgument, graph_label(g) + ": an initializer has no name");
    if (g.initializers.count(init.name())) {
      throw Error(ErrorCode::kInvalidArgument,
                  graph_label(g) + ": initializer \"" + init.name() + "\" is defined twice");
    }
    auto done = depth == 0 && ctx.converted != nullptr ? ctx.converted->find(init.name())
                                                       : std::map<std::string, Tensor>::iterator{};
    if (depth == 0 && ctx.converted != nullptr && done != ctx.converted->end()) {
      g.initializers[init.name()] = std::move(done->second);
      ctx.converted->erase(done);
    } else {
      g.initializers[init.name()] = tensor_from_proto(init, ctx.base_dir, "initializer");
    }
  }
  if (proto.sparse_initializer_size() > 0) {
    throw Error(ErrorCode::kUnsupported, graph_label(g) + ": sparse initializers are not supported");
  }
  std::set<std::string> input_names;
  for (const auto& in : proto.input()) {
    if (in.name().empty()) throw Error(ErrorCode::kInvalidArgument, graph_label(g) + ": an input has no name");
    if (!input_names.insert(in.name()).second) {
      throw Error(ErrorCode::kInvalidArgument, graph_label(g) + ": input \"" + in.name() + "\" is declared twice");
    }
    if (g.initializers.count(in.name())) continue;  // an initializer listed as input: a constant
    g.inputs.push_back(value_from_proto(in));
  }
  for (const auto& out : proto.output()) {
    if (out.name().empty()) throw Error(ErrorCode::kInvalidArgument, graph_label(g) + ": an output has no name");
    g.outputs.push_back(value_from_proto(out));
  }
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
    if (node.op_type.empty()) {
      throw Error(ErrorCode::kInvalidArgument, graph_label(g) + ": " + node.describe() + " has no op_type");
    }
    for (const auto& a : np.attribute()) {
      if (!a.ref_attr_name().empty()) continue;  // only meaningful inside functions
      if (node.attributes.count(a.name())) {
        throw Error(ErrorCode::kInvalidArgument, node.describe() + ": attribute \"" + a.name() + "\" is given twice");
      }
      node.attributes[a.name()] = attribute_from_proto(a, node, ctx, scope, depth);
    }
    if (node.op_type == "Constant" && node.domain.empty() && node.outputs.size() == 1 && !node.outputs[0].empty()) {
      if (g.initializers.count(node.outputs[0])) {
        throw Error(ErrorCode::kInvalidArgument,
                    node.describe() + ": output \"" + node.outputs[0] + "\" is already an initializer");
      }
      g.initializers[node.outputs[0]] = constant_value(node);
      continue;
    }
    g.nodes.push_back(std::move(node));
  }
  topological_sort(g, outer);

  std::unordered_set<std::string> defined(outer.begin(), outer.end());
  defined.insert(input_names.begin(), input_names.end());
  for (const auto& [name, t] : g.initializers) defined.insert(name);
  for (const auto& n : g.nodes) defined.insert(n.outputs.begin(), n.outputs.end());
  for (const auto& out : g.outputs) {
    if (!defined.count(out.name)) {
      throw Error(ErrorCode::kInvalidArgument,
                  graph_label(g) + ": output \"" + out.name + "\" is not produced by any node, input or initializer");
    }
  }
  return g;
}

void check_opsets(const Model& m) {
  if (!m.opset_imports.count("")) return;  // only other domains (e.g. ai.onnx.ml) are used
  const int64_t opset = m.opset("");
  if (opset < 1) {
    throw Error(ErrorCode::kInvalidArgument,
                "opset " + std::to_string(opset) + " of the default ONNX domain is not a valid version");
  }
  if (opset > kMaxOnnxOpset) {
    throw Error(ErrorCode::kUnsupported, "the model uses opset " + std::to_string(opset) +
                                             " of the default ONNX domain; kvant supports opsets 1 to " +
                                             std::to_string(kMaxOnnxOpset));
  }
}

// Why bytes that are not a usable ModelProto were refused, with a guess at
// what they are instead.
std::string not_onnx_reason(const void* data, size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  std::string what = "not an ONNX model";
  if (size >= 4 && bytes[0] == 0x89 && bytes[1] == 'P' && bytes[2] == 'N' && bytes[3] == 'G') {
    what += " (it is a PNG image)";
  } else if (size >= 2 && bytes[0] == 'P' && bytes[1] == 'K') {
    what += " (it is a zip archive, e.g. a PyTorch checkpoint; export it with torch.onnx.export)";
  } else {
    size_t printable = 0;
    const size_t probe = size < 256 ? size : 256;
    for (size_t i = 0; i < probe; ++i) {
      const unsigned char c = bytes[i];
      printable += (c >= 0x20 && c < 0x7f) || c == '\n' || c == '\r' || c == '\t';
    }
    if (probe > 0 && printable == probe) what += " (it looks like a text file)";
  }
  return what;
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
  if (m.opset_imports.empty()) m.opset_imports[""] = 1;  // IR v1/v2 models without opset_import
  check_opsets(m);
  m.graph = graph_from_proto(proto.graph(), ctx, {}, 0);
  return m;
}

std::string prefix_for(const std::string& display) { return display + ": "; }

}  // namespace

namespace {

// The kvant Model of a parsed proto: input overrides, conversion (checks
// everything before inference sees it), shape inference. With `lean`, each
// top-level initializer's bytes are released from the proto as soon as its
// tensor exists, so the model's weights are never held twice; shape
// inference then sees the declared types and dims of those weights (and
// the values of small ones, such as Reshape shapes, which are kept).
Result<Model> model_from_parsed(onnx::ModelProto& proto, const std::filesystem::path& base_dir,
                                const std::string& prefix, const LoadOptions& options, bool lean) {
  try {
    std::map<std::string, Tensor> converted;
    const ImportContext ctx{base_dir, lean ? &converted : nullptr};
    override_input_shapes(proto, options.input_shapes);
    if (lean) {
      constexpr size_t kKeep = 4096;  // small constants stay for shape inference
      std::unordered_set<std::string> seen;
      for (auto& init : *proto.mutable_graph()->mutable_initializer()) {
        if (init.name().empty() || !seen.insert(init.name()).second) continue;  // graph_from_proto names the error
        if (init.raw_data().size() <= kKeep && init.external_data_size() == 0) continue;
        converted[init.name()] = tensor_from_proto(init, ctx.base_dir, "initializer");
        init.clear_raw_data();
        init.clear_float_data();
        init.clear_int32_data();
        init.clear_int64_data();
        init.clear_double_data();
        init.clear_uint64_data();
        init.clear_external_data();
        init.clear_data_location();
      }
    }
    Model m = model_from_proto(proto, ctx);
    if (options.infer_shapes) {
      const std::string warning = run_shape_inference(proto);
      if (warning.empty()) {
        copy_inferred_types(proto.graph(), m.graph);
      } else {
        m.warnings.push_back(prefix + warning);
      }
    }
    return m;
  } catch (const Error& e) {
    return Status(e.code(), prefix + e.what());
  } catch (const std::bad_alloc&) {
    return invalid_argument(prefix + "out of memory while reading the model");
  } catch (const std::exception& e) {
    return invalid_argument(prefix + e.what());
  }
}

}  // namespace

Result<Model> load_onnx_bytes(const void* data, size_t size, const std::filesystem::path& base_dir,
                              const std::string& display_name, const LoadOptions& options) {
  const std::string prefix = prefix_for(display_name);
  if (size == 0) return invalid_argument(prefix + "the file is empty");
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return invalid_argument(prefix + "larger than 2 GB; store the weights as external data");
  }
  onnx::ModelProto proto;
  // Protobuf's default nesting limit (100 messages) is reached by ~32 nested
  // If/Loop bodies (3 messages a level), which then read as "corrupted":
  // parse deeper, so that kvant's own kMaxSubgraphDepth check names the node.
  google::protobuf::io::CodedInputStream stream(static_cast<const uint8_t*>(data), static_cast<int>(size));
  stream.SetRecursionLimit(kProtobufRecursionLimit);
  if (!proto.ParseFromCodedStream(&stream) || !stream.ConsumedEntireMessage()) {
    return invalid_argument(prefix + not_onnx_reason(data, size) + kUnparsable);
  }
  // Protobuf accepts many byte strings (unknown fields are skipped); a model
  // without a graph is not one.
  if (!proto.has_graph()) return invalid_argument(prefix + not_onnx_reason(data, size) + ": it holds no graph");
  return model_from_parsed(proto, base_dir, prefix, options, false);
}

// Parsed straight from the file (no copy of its bytes), then converted with
// the proto's initializer bytes released as they are converted: the peak is
// about one copy of the weights, not three.
Result<Model> load_onnx(const std::filesystem::path& file, const LoadOptions& options) {
  const std::string prefix = prefix_for(file.string());
  auto dir = file.parent_path();
  if (dir.empty()) dir = ".";
  onnx::ModelProto proto;
  try {
    const InputFile in(file);  // refuses FIFOs, devices, folders (io/input_file.h)
    if (in.size() > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
      return invalid_argument(prefix + "larger than 2 GB; store the weights as external data");
    }
    if (in.size() == 0) return invalid_argument(prefix + "the file is empty");
    check_memory(static_cast<int64_t>(in.size()), file.string() + ": the model file");
    google::protobuf::io::FileInputStream raw(in.fd());
    bool parsed = false;
    {
      google::protobuf::io::CodedInputStream stream(&raw);
      stream.SetRecursionLimit(kProtobufRecursionLimit);
      parsed = proto.ParseFromCodedStream(&stream) && stream.ConsumedEntireMessage();
    }
    if (!parsed || !proto.has_graph()) {
      std::string head(512, '\0');
      head.resize(in.read_up_to(0, head.data(), head.size()));
      return invalid_argument(prefix + not_onnx_reason(head.data(), head.size()) +
                              (parsed ? ": it holds no graph" : kUnparsable));
    }
  } catch (const Error& e) {
    return e.status();
  } catch (const std::bad_alloc&) {
    return invalid_argument(prefix + "out of memory while reading the model");
  }
  auto result = model_from_parsed(proto, dir, prefix, options, true);
  if (result.ok()) result->source_path = file;
  return result;
}

Result<Tensor> load_tensor_pb(const std::filesystem::path& file) {
  try {
    const std::string bytes = InputFile(file).read_all();
    onnx::TensorProto proto;
    if (!proto.ParseFromString(bytes)) return invalid_argument(file.string() + ": not a serialized ONNX TensorProto");
    return tensor_from_proto(proto, file.parent_path());
  } catch (const Error& e) {
    const std::string message = e.what();
    return Status(e.code(), message.starts_with(file.string()) ? message : file.string() + ": " + message);
  }
}

}  // namespace kvant
