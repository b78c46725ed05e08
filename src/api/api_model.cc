// OnnxModel (kvant.h): a loaded model, shared and immutable.
#include <filesystem>

#include "api/api_internal.h"
#include "onnx/reader.h"
#include "onnx/writer.h"
#include "quant/quantize.h"

namespace kvant {

namespace {

LoadOptions to_load_options(const ModelLoadOptions& options) {
  LoadOptions out;
  out.infer_shapes = options.infer_shapes;
  out.input_shapes = options.input_shapes;
  return out;
}

const OnnxModel::Impl& empty_impl() {
  static const OnnxModel::Impl kEmpty;
  return kEmpty;
}

}  // namespace

TensorInfo ApiAccess::info(const ValueInfo& value) {
  TensorInfo out;
  out.name = value.name;
  out.dtype = to_data_type(value.type.dtype);
  out.has_shape = value.type.has_shape;
  for (const Dim& d : value.type.dims) {
    out.shape.push_back(d.known() ? d.value : -1);
    out.dim_names.push_back(d.known() ? "" : d.param);
  }
  return out;
}

OnnxModel ApiAccess::make_model(Model model, std::string display_name, std::shared_ptr<const Model> inferred,
                                std::shared_ptr<const Model> before_renaming) {
  auto impl = std::make_shared<OnnxModel::Impl>();
  impl->model = std::move(model);
  impl->before_renaming = std::move(before_renaming);
  impl->display_name = std::move(display_name);
  impl->inferred = std::move(inferred);
  // Inputs and outputs as a Session sees them (with inferred types).
  const Graph& g = impl->runnable().graph;
  for (const ValueInfo& in : g.inputs) {
    if (!g.initializers.count(in.name)) impl->inputs.push_back(info(in));
  }
  for (const ValueInfo& out : g.outputs) impl->outputs.push_back(info(out));
  OnnxModel result;
  result.impl_ = std::move(impl);
  return result;
}

const OnnxModel::Impl& ApiAccess::impl(const OnnxModel& model, const char* what) {
  if (!model.impl_)
    throw Error(ErrorCode::kInvalidArgument, std::string(what) + ": the model is empty (no model loaded)");
  return *model.impl_;
}

OnnxModel::OnnxModel() = default;
OnnxModel::~OnnxModel() = default;
OnnxModel::OnnxModel(const OnnxModel&) = default;
OnnxModel& OnnxModel::operator=(const OnnxModel&) = default;
OnnxModel::OnnxModel(OnnxModel&&) noexcept = default;
OnnxModel& OnnxModel::operator=(OnnxModel&&) noexcept = default;

Result<OnnxModel> OnnxModel::load(const std::string& path, const ModelLoadOptions& options) {
  return guarded([&]() -> Result<OnnxModel> {
    auto model = load_onnx(path, to_load_options(options));
    if (!model.ok()) return model.status();
    return ApiAccess::make_model(std::move(model).value(), path);
  });
}

Result<OnnxModel> OnnxModel::load_from_bytes(const void* data, size_t size, const ModelLoadOptions& options,
                                             const std::string& name) {
  return guarded([&]() -> Result<OnnxModel> {
    if (data == nullptr && size > 0) return invalid_argument(name + ": data is null");
    auto model = load_onnx_bytes(data, size, {}, name, to_load_options(options));
    if (!model.ok()) return model.status();
    return ApiAccess::make_model(std::move(model).value(), name);
  });
}

Status OnnxModel::save(const std::string& path) const {
  return guarded([&]() -> Status { return save_onnx(ApiAccess::impl(*this, "save").model, path); });
}

Result<std::string> OnnxModel::to_bytes() const {
  return guarded([&]() -> Result<std::string> { return serialize_onnx(ApiAccess::impl(*this, "to_bytes").model); });
}

const std::vector<TensorInfo>& OnnxModel::inputs() const { return (impl_ ? *impl_ : empty_impl()).inputs; }
const std::vector<TensorInfo>& OnnxModel::outputs() const { return (impl_ ? *impl_ : empty_impl()).outputs; }
const std::vector<std::string>& OnnxModel::warnings() const { return (impl_ ? *impl_ : empty_impl()).model.warnings; }
bool OnnxModel::is_quantized() const { return impl_ && is_quantized_model(impl_->model); }
int64_t OnnxModel::opset() const { return impl_ ? impl_->model.opset() : 0; }

}  // namespace kvant
