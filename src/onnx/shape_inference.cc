// Shape information at import. ONNX shape inference runs on the ModelProto
// (after input-shape overrides, before conversion); its results land in
// Graph::value_info. A failure of inference only costs information, so it is
// reported as a warning (Model::warnings), never as a load failure.
#include "onnx/shape_inference.h"

#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>

#include <exception>
#include <unordered_map>

namespace kvant {

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

ValueInfo value_from_proto(const onnx::ValueInfoProto& value) { return {value.name(), type_from_proto(value.type())}; }

namespace {

std::string dims_to_string(const std::vector<int64_t>& dims) {
  return shape_to_string(Shape(dims.begin(), dims.end()));
}

}  // namespace

void override_input_shapes(onnx::ModelProto& model, const std::map<std::string, std::vector<int64_t>>& shapes) {
  if (shapes.empty()) return;
  auto* graph = model.mutable_graph();
  std::unordered_map<std::string, int> initializers;
  for (const auto& init : graph->initializer()) initializers[init.name()] = 1;
  std::string names;
  for (const auto& in : graph->input()) {
    if (!initializers.count(in.name())) names += (names.empty() ? "" : ", ") + ("\"" + in.name() + "\"");
  }
  for (const auto& [name, dims] : shapes) {
    onnx::ValueInfoProto* input = nullptr;
    for (auto& in : *graph->mutable_input()) {
      if (in.name() == name && !initializers.count(name)) input = &in;
    }
    if (input == nullptr) {
      throw Error(ErrorCode::kInvalidArgument, "input_shapes names \"" + name +
                                                   "\", which is not an input of the model (inputs: " +
                                                   (names.empty() ? std::string("none") : names) + ")");
    }
    if (input->type().has_sequence_type() || input->type().has_map_type() || input->type().has_optional_type()) {
      throw Error(ErrorCode::kInvalidArgument, "input_shapes names \"" + name + "\", which is not a tensor");
    }
    for (int64_t d : dims) {
      if (d < 0) {
        throw Error(ErrorCode::kInvalidArgument,
                    "input_shapes gives input \"" + name + "\" a negative dim: " + dims_to_string(dims));
      }
    }
    auto* tensor_type = input->mutable_type()->mutable_tensor_type();
    if (tensor_type->has_shape() && tensor_type->shape().dim_size() != static_cast<int>(dims.size())) {
      throw Error(ErrorCode::kInvalidArgument, "input_shapes gives input \"" + name + "\" rank " +
                                                   std::to_string(dims.size()) + " " + dims_to_string(dims) +
                                                   ", but the model declares rank " +
                                                   std::to_string(tensor_type->shape().dim_size()) + " " +
                                                   type_from_proto(input->type()).to_string());
    }
    auto* shape = tensor_type->mutable_shape();
    shape->clear_dim();
    for (int64_t d : dims) shape->add_dim()->set_dim_value(d);
  }
}

namespace {

// Checks every node, in every subgraph, against its operator schema (input
// and output counts, required attributes and their types) as the ONNX
// checker's check_node does; throws onnx::checker::ValidationError. The
// whole-model checker is not used: it also demands things inference does not
// need (e.g. a shape on every graph output) and would refuse valid models.
void verify_nodes(const onnx::GraphProto& graph, const std::unordered_map<std::string, int>& opsets) {
  for (const auto& node : graph.node()) {
    const std::string domain = node.domain() == "ai.onnx" ? "" : node.domain();
    auto it = opsets.find(domain);
    if (it != opsets.end()) {
      const onnx::OpSchema* schema = onnx::OpSchemaRegistry::Schema(node.op_type(), it->second, domain);
      if (schema != nullptr) schema->Verify(node);
    }
    for (const auto& a : node.attribute()) {
      if (a.has_g()) verify_nodes(a.g(), opsets);
      for (const auto& g : a.graphs()) verify_nodes(g, opsets);
    }
  }
}

// libonnx 1.12's convolution inference indexes the weight's dims by the
// input's spatial rank without checking the weight's rank (ConvTranspose with
// a rank-3 W for a rank-4 X reads past the end; found by fuzzing; later ONNX
// releases check it). Where both ranks are declared before inference, the
// ranks must agree and be at least 3; likewise LayerNormalization's axis
// must index its declared input, and size attributes must be positive.
// Returns a description of the first node that breaks this, or "".
std::string check_inference_inputs(const onnx::GraphProto& graph) {
  std::unordered_map<std::string, int> rank;
  auto declare = [&](const onnx::ValueInfoProto& v) {
    if (v.type().has_tensor_type() && v.type().tensor_type().has_shape())
      rank[v.name()] = v.type().tensor_type().shape().dim_size();
  };
  for (const auto& v : graph.input()) declare(v);
  for (const auto& v : graph.value_info()) declare(v);
  for (const auto& t : graph.initializer()) rank[t.name()] = t.dims_size();
  for (const auto& node : graph.node()) {
    const std::string& op = node.op_type();
    int weight = -1;
    if (op == "Conv" || op == "ConvTranspose" || op == "ConvInteger") weight = 1;
    if (op == "QLinearConv") weight = 3;
    if (weight >= 0 && node.input_size() > weight) {
      auto x = rank.find(node.input(0));
      auto w = rank.find(node.input(weight));
      const bool bad_x = x != rank.end() && x->second < 3;
      const bool bad_w = w != rank.end() && w->second < 3;
      const bool mismatch = x != rank.end() && w != rank.end() && x->second != w->second;
      if (bad_x || bad_w || mismatch) {
        return "node \"" + node.name() + "\" (" + op + "): input rank " +
               (x == rank.end() ? std::string("?") : std::to_string(x->second)) + " and weight rank " +
               (w == rank.end() ? std::string("?") : std::to_string(w->second)) +
               " (both must be equal and at least 3)";
      }
    }
    // LayerNormalization's inference (1.12) indexes X's dims by `axis`
    // without a range check: a rank-0 X crashes it (found by fuzzing).
    if (op == "LayerNormalization" && node.input_size() > 0) {
      auto x = rank.find(node.input(0));
      int64_t axis = -1;
      for (const auto& a : node.attribute()) {
        if (a.name() == "axis") axis = a.i();
      }
      if (x != rank.end() && (x->second < 1 || axis < -x->second || axis >= x->second)) {
        return "node \"" + node.name() + "\" (" + op + "): axis " + std::to_string(axis) + " for an input of rank " +
               std::to_string(x->second);
      }
    }
    // The convolution/pooling inference divides by strides (a zero stride
    // raised SIGFPE, found by fuzzing) and sizes by kernel_shape and
    // dilations; SpaceToDepth/DepthToSpace divide by blocksize. No ONNX
    // operator allows any of these below 1, whatever its op type.
    for (const auto& a : node.attribute()) {
      const std::string& name = a.name();
      if (name != "strides" && name != "dilations" && name != "kernel_shape" && name != "blocksize") continue;
      bool positive = a.type() != onnx::AttributeProto::INT || a.i() >= 1;
      for (int64_t v : a.ints()) positive = positive && v >= 1;
      if (!positive) {
        return "node \"" + node.name() + "\" (" + op + "): attribute " + name + " has a value below 1";
      }
    }
    for (const auto& a : node.attribute()) {
      if (a.has_g()) {
        std::string bad = check_inference_inputs(a.g());
        if (!bad.empty()) return bad;
      }
      for (const auto& g : a.graphs()) {
        std::string bad = check_inference_inputs(g);
        if (!bad.empty()) return bad;
      }
    }
  }
  return {};
}

}  // namespace

std::string run_shape_inference(onnx::ModelProto& model) {
  // Opsets newer than this build's ONNX library (Debian 12's 1.12 knows up
  // to 17; kvant writes opset 21 for INT4): its schemas would reject valid
  // nodes with a misleading message, so say what is really the matter.
  for (const auto& op : model.opset_import()) {
    if (!op.domain().empty() && op.domain() != "ai.onnx") continue;
    const auto& known = onnx::OpSchemaRegistry::DomainToVersionRange::Instance().Map();
    auto it = known.find("");
    if (it != known.end() && op.version() > it->second.second) {
      return "shape inference skipped: the model uses opset " + std::to_string(op.version()) +
             ", this build's ONNX library knows opsets up to " + std::to_string(it->second.second) +
             " (shapes are taken from the model and computed when it runs)";
    }
  }
  // libonnx's inference functions trust the node they are given (Scan
  // without num_scan_inputs dereferences null, found by fuzzing): only nodes
  // that match their schema are handed to them.
  try {
    std::unordered_map<std::string, int> opsets;
    for (const auto& op : model.opset_import()) {
      opsets[op.domain() == "ai.onnx" ? "" : op.domain()] = static_cast<int>(op.version());
    }
    verify_nodes(model.graph(), opsets);
  } catch (const std::exception& e) {
    return std::string("shape inference skipped: ") + e.what();
  } catch (...) {
    return "shape inference skipped: a node does not match its operator schema";
  }
  if (std::string bad = check_inference_inputs(model.graph()); !bad.empty()) {
    return "shape inference skipped: " + bad;
  }
  try {
    // check_type off, error_mode 0 (a node that cannot be inferred is
    // skipped, the rest still gets shapes), no data propagation.
    onnx::ShapeInferenceOptions options(false, 0, false);
    onnx::shape_inference::InferShapes(model, onnx::OpSchemaRegistry::Instance(), options);
    return {};
  } catch (const std::exception& e) {
    return std::string("shape inference failed, intermediate shapes are unknown: ") + e.what();
  } catch (...) {
    return "shape inference failed, intermediate shapes are unknown (unknown error)";
  }
}

void copy_inferred_types(const onnx::GraphProto& proto, Graph& graph) {
  for (const auto& vi : proto.value_info()) {
    if (vi.name().empty() || !vi.type().has_tensor_type()) continue;
    graph.value_info[vi.name()] = value_from_proto(vi);
  }
  if (proto.output_size() == static_cast<int>(graph.outputs.size())) {
    for (size_t i = 0; i < graph.outputs.size(); ++i) {
      const auto& p = proto.output(static_cast<int>(i));
      TypeInfo& have = graph.outputs[i].type;
      if (p.name() != graph.outputs[i].name) continue;
      const TypeInfo inferred = type_from_proto(p.type());
      if (have.dtype == DType::kUndefined) have.dtype = inferred.dtype;
      if (!have.has_shape && inferred.has_shape) {
        have.has_shape = true;
        have.dims = inferred.dims;
      }
    }
  }
  // Subgraphs: the owning node is found by its first named output (output
  // names are unique in a graph after import).
  std::unordered_map<std::string, Node*> by_output;
  for (Node& node : graph.nodes) {
    for (const auto& o : node.outputs) {
      if (!o.empty()) {
        by_output.emplace(o, &node);
        break;
      }
    }
  }
  for (const auto& np : proto.node()) {
    Node* node = nullptr;
    for (const auto& o : np.output()) {
      if (o.empty()) continue;
      auto it = by_output.find(o);
      if (it != by_output.end()) node = it->second;
      break;
    }
    if (node == nullptr) continue;
    for (const auto& a : np.attribute()) {
      auto it = node->attributes.find(a.name());
      if (it == node->attributes.end()) continue;
      Attribute& attr = it->second;
      if (a.has_g() && attr.g) copy_inferred_types(a.g(), *attr.g);
      for (int i = 0; i < a.graphs_size() && i < static_cast<int>(attr.graphs.size()); ++i) {
        if (attr.graphs[static_cast<size_t>(i)]) copy_inferred_types(a.graphs(i), *attr.graphs[static_cast<size_t>(i)]);
      }
    }
  }
}

}  // namespace kvant
