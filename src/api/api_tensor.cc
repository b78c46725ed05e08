// The public tensor types (kvant.h): OwnedTensor over the library's Tensor,
// views over the caller's bytes, .npy files.
#include <numeric>

#include "api/api_internal.h"
#include "io/npy.h"

namespace kvant {

const char* version() { return KVANT_VERSION_STRING; }

const char* data_type_name(DataType type) {
  const auto code = static_cast<int32_t>(type);
  if (type == DataType::kUndefined || !is_known_dtype(code) || code == static_cast<int32_t>(DType::kString)) {
    return "undefined";
  }
  return dtype_name(static_cast<DType>(code));
}

Result<size_t> byte_size(DataType type, const std::vector<int64_t>& shape) {
  return guarded([&]() -> Result<size_t> {
    const DType dtype = ApiAccess::to_dtype(type, "byte_size");
    const int64_t numel = checked_numel(shape, dtype);
    return static_cast<size_t>((numel * dtype_bits(dtype) + 7) / 8);
  });
}

DType ApiAccess::to_dtype(DataType type, const std::string& what) {
  const auto code = static_cast<int32_t>(type);
  if (type == DataType::kUndefined || !is_known_dtype(code) || code == static_cast<int32_t>(DType::kString)) {
    throw Error(ErrorCode::kInvalidArgument, what + ": DataType " + std::to_string(code) + " is not a tensor type");
  }
  return static_cast<DType>(code);
}

OwnedTensor ApiAccess::wrap(const Tensor& tensor) {
  OwnedTensor out;
  out.dtype_ = to_data_type(tensor.dtype());
  out.shape_ = tensor.shape();
  out.nbytes_ = tensor.nbytes();
  auto holder = std::make_shared<Tensor>(tensor);
  out.data_ = std::shared_ptr<void>(holder, holder->raw());
  return out;
}

Tensor ApiAccess::view(const TensorView& view, const std::string& what) {
  const DType dtype = to_dtype(view.dtype, what);
  const int64_t numel = checked_numel(view.shape, dtype);
  if (view.data == nullptr && numel > 0) {
    throw Error(ErrorCode::kInvalidArgument,
                what + ": data is null for " + dtype_name(dtype) + shape_to_string(view.shape));
  }
  // The aliasing constructor with no owner: a pointer that keeps nothing
  // alive and allocates nothing.
  auto* bytes = static_cast<std::byte*>(const_cast<void*>(view.data));
  return Tensor::view(dtype, view.shape, std::shared_ptr<std::byte>(), bytes);
}

Tensor ApiAccess::share(const OwnedTensor& tensor) {
  const DType dtype = to_dtype(tensor.dtype_, "OwnedTensor");
  auto* bytes = static_cast<std::byte*>(tensor.data_.get());
  return Tensor::view(dtype, tensor.shape_, std::shared_ptr<std::byte>(tensor.data_, bytes), bytes);
}

int64_t OwnedTensor::numel() const {
  if (dtype_ == DataType::kUndefined) return 0;
  return std::accumulate(shape_.begin(), shape_.end(), int64_t{1}, std::multiplies<int64_t>());
}

Result<OwnedTensor> OwnedTensor::create(DataType dtype, const std::vector<int64_t>& shape) {
  return guarded([&]() -> Result<OwnedTensor> {
    return ApiAccess::wrap(Tensor(ApiAccess::to_dtype(dtype, "OwnedTensor::create"), shape));
  });
}

Result<OwnedTensor> OwnedTensor::copy_of(const TensorView& view) {
  return guarded([&]() -> Result<OwnedTensor> { return ApiAccess::wrap(ApiAccess::view(view, "copy_of").clone()); });
}

Result<OwnedTensor> load_npy(const std::string& path) {
  return guarded([&]() -> Result<OwnedTensor> {
    auto tensor = read_npy(path);
    if (!tensor.ok()) return tensor.status();
    return ApiAccess::wrap(*tensor);
  });
}

Status save_npy(const std::string& path, const TensorView& tensor) {
  return guarded([&]() -> Status { return write_npy(path, ApiAccess::view(tensor, path)); });
}

}  // namespace kvant
