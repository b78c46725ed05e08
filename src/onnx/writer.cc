#include "onnx/writer.h"

#include <memory>
#include <system_error>

#include "io/output_file.h"
#include "onnx/export_check.h"
#include "onnx/tensor_proto.h"

namespace kvant {

namespace {

constexpr int64_t kProtobufLimit = (int64_t{1} << 31) - (int64_t{1} << 24);  // 2 GB less headroom

void type_to_proto(const TypeInfo& type, onnx::TypeProto* proto) {
  auto* tt = proto->mutable_tensor_type();
  tt->set_elem_type(static_cast<int32_t>(type.dtype));
  if (!type.has_shape) return;
  auto* shape = tt->mutable_shape();
  for (const Dim& d : type.dims) {
    auto* dim = shape->add_dim();
    if (d.known()) {
      dim->set_dim_value(d.value);
    } else if (!d.param.empty()) {
      dim->set_dim_param(d.param);
    }
  }
}

void value_to_proto(const ValueInfo& v, onnx::ValueInfoProto* proto) {
  proto->set_name(v.name);
  if (v.type.dtype != DType::kUndefined) type_to_proto(v.type, proto->mutable_type());
}

void graph_to_proto(const Graph& graph, onnx::GraphProto* proto);

void attribute_to_proto(const std::string& name, const Attribute& a, onnx::AttributeProto* p) {
  using A = onnx::AttributeProto;
  p->set_name(name);
  switch (a.kind) {
    case Attribute::Kind::kFloat:
      p->set_type(A::FLOAT);
      p->set_f(a.f);
      break;
    case Attribute::Kind::kInt:
      p->set_type(A::INT);
      p->set_i(a.i);
      break;
    case Attribute::Kind::kString:
      p->set_type(A::STRING);
      p->set_s(a.s);
      break;
    case Attribute::Kind::kTensor:
      p->set_type(A::TENSOR);
      tensor_to_proto(a.t, *p->mutable_t());
      break;
    case Attribute::Kind::kGraph:
      p->set_type(A::GRAPH);
      graph_to_proto(*a.g, p->mutable_g());
      break;
    case Attribute::Kind::kFloats:
      p->set_type(A::FLOATS);
      for (float f : a.floats) p->add_floats(f);
      break;
    case Attribute::Kind::kInts:
      p->set_type(A::INTS);
      for (int64_t i : a.ints) p->add_ints(i);
      break;
    case Attribute::Kind::kStrings:
      p->set_type(A::STRINGS);
      for (const auto& s : a.strings) p->add_strings(s);
      break;
    case Attribute::Kind::kTensors:
      p->set_type(A::TENSORS);
      for (const auto& t : a.tensors) tensor_to_proto(t, *p->add_tensors());
      break;
    case Attribute::Kind::kGraphs:
      p->set_type(A::GRAPHS);
      for (const auto& g : a.graphs) graph_to_proto(*g, p->add_graphs());
      break;
    case Attribute::Kind::kUndefined: break;
  }
}

void graph_to_proto(const Graph& graph, onnx::GraphProto* proto) {
  proto->set_name(graph.name);
  for (const auto& v : graph.inputs) value_to_proto(v, proto->add_input());
  for (const auto& v : graph.outputs) value_to_proto(v, proto->add_output());
  for (const auto& [name, v] : graph.value_info) value_to_proto(v, proto->add_value_info());
  for (const auto& [name, t] : graph.initializers) {
    auto* init = proto->add_initializer();
    tensor_to_proto(t, *init);
    init->set_name(name);
  }
  for (const Node& node : graph.nodes) {
    auto* n = proto->add_node();
    n->set_name(node.name);
    n->set_op_type(node.op_type);
    if (!node.domain.empty()) n->set_domain(node.domain);
    for (const auto& in : node.inputs) n->add_input(in);
    for (const auto& out : node.outputs) n->add_output(out);
    for (const auto& [key, attr] : node.attributes) attribute_to_proto(key, attr, n->add_attribute());
  }
}

onnx::ModelProto model_to_proto(const Model& model) {
  onnx::ModelProto proto;
  // IR version 10 is what opset 21 needs; older models keep theirs when higher.
  proto.set_ir_version(std::max<int64_t>(model.ir_version, model.opset() >= 21 ? 10 : 7));
  proto.set_producer_name("kvant");
  proto.set_producer_version(KVANT_VERSION_STRING);
  for (const auto& [domain, version] : model.opset_imports) {
    auto* op = proto.add_opset_import();
    op->set_domain(domain);
    op->set_version(version);
  }
  graph_to_proto(model.graph, proto.mutable_graph());
  return proto;
}

// Moves large initializers of the main graph into `out` (the side file
// named `location`), recording location/offset/length as ONNX's external-data
// convention says.
void externalize(onnx::ModelProto& proto, OutputFile& out, const std::string& location, int64_t threshold) {
  int64_t offset = 0;
  for (auto& init : *proto.mutable_graph()->mutable_initializer()) {
    if (static_cast<int64_t>(init.raw_data().size()) < threshold) continue;
    // Align each tensor to 4 KiB, as ONNX's own tools do, so it can be mapped.
    const int64_t aligned = (offset + 4095) / 4096 * 4096;
    if (aligned > offset) out.write(std::string(static_cast<size_t>(aligned - offset), '\0'));
    offset = aligned;
    const std::string& raw = init.raw_data();
    out.write(raw);
    auto add = [&](const char* key, const std::string& value) {
      auto* kv = init.add_external_data();
      kv->set_key(key);
      kv->set_value(value);
    };
    add("location", location);
    add("offset", std::to_string(offset));
    add("length", std::to_string(raw.size()));
    offset += static_cast<int64_t>(raw.size());
    init.clear_raw_data();
    init.set_data_location(onnx::TensorProto::EXTERNAL);
  }
}

bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  return std::filesystem::exists(a, ec) && std::filesystem::exists(b, ec) && std::filesystem::equivalent(a, b, ec);
}

}  // namespace

Result<std::string> serialize_onnx(const Model& model) {
  try {
    std::string bytes;
    if (!model_to_proto(model).SerializeToString(&bytes)) return invalid_argument("the model could not be serialized");
    return bytes;
  } catch (const Error& e) {
    return e.status();
  }
}

PendingSave::PendingSave() = default;
PendingSave::~PendingSave() = default;

void PendingSave::commit() {
  if (data_) data_->commit();
  model_->commit();
}

int64_t PendingSave::bytes() const { return model_->size() + (data_ ? data_->size() : 0); }

Result<std::unique_ptr<PendingSave>> prepare_save(const Model& model, const std::filesystem::path& file,
                                                  const SaveOptions& options) {
  if (!options.allow_overwrite_source && !model.source_path.empty() && same_file(model.source_path, file)) {
    return invalid_argument(file.string() + ": refusing to overwrite the input model; choose another output file");
  }
  const auto dir = file.parent_path().empty() ? std::filesystem::path(".") : file.parent_path();
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec))
    return not_found(file.string() + ": folder " + dir.string() + " does not exist");
  const std::string data_name = file.filename().string() + ".data";
  try {
    onnx::ModelProto proto = model_to_proto(model);
    check_for_export(model, proto);  // an invalid model is an error, never a file
    const bool external = options.force_external_data || static_cast<int64_t>(proto.ByteSizeLong()) > kProtobufLimit;
    auto pending = std::make_unique<PendingSave>();
    pending->file_ = file;
    if (external) {
      pending->data_ = std::make_unique<OutputFile>(dir / data_name);
      externalize(proto, *pending->data_, data_name,
                  options.force_external_data ? 1024 : options.external_data_threshold);
    }
    pending->model_ = std::make_unique<OutputFile>(file);
    if (!proto.SerializeToFileDescriptor(pending->model_->fd())) {
      throw Error(ErrorCode::kInvalidArgument, "write failed (disk full?)");
    }
    return pending;
  } catch (const Error& e) {
    const std::string message = e.what();
    return Status(e.code(), message.starts_with(file.string()) ? message : file.string() + ": " + message);
  } catch (const std::exception& e) {
    return invalid_argument(file.string() + ": " + e.what());
  }
}

Status save_onnx(const Model& model, const std::filesystem::path& file, const SaveOptions& options) {
  auto pending = prepare_save(model, file, options);
  if (!pending.ok()) return pending.status();
  try {
    (*pending)->commit();
  } catch (const Error& e) {
    return e.status();
  }
  return {};
}

}  // namespace kvant
