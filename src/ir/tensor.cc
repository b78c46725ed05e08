#include "ir/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "ir/limits.h"

namespace kvant {

namespace {

constexpr int64_t kMaxTensorBytes = int64_t{1} << 40;
constexpr size_t kAlignment = 64;

// Frees the block and gives its bytes back to the memory budget.
struct BudgetedFree {
  int64_t bytes;
  void operator()(std::byte* p) const {
    std::free(p);
    release_memory(bytes);
  }
};

// Counted against the memory budget (ir/limits.h) before it is allocated.
std::shared_ptr<std::byte> allocate_zeroed(size_t nbytes, const Shape& shape, DType dtype) {
  const size_t rounded = std::max((nbytes + kAlignment - 1) / kAlignment * kAlignment, kAlignment);
  const auto budgeted = static_cast<int64_t>(rounded);
  reserve_memory(budgeted, std::string("a tensor ") + dtype_name(dtype) + shape_to_string(shape));
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (p == nullptr) {
    release_memory(budgeted);
    throw Error(ErrorCode::kInvalidArgument, "out of memory allocating " + describe_bytes(budgeted) + " for a tensor " +
                                                 dtype_name(dtype) + shape_to_string(shape));
  }
  std::memset(p, 0, rounded);
  return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), BudgetedFree{budgeted});
}

}  // namespace

int64_t checked_numel(const Shape& shape, DType dtype) {
  const int bits = dtype_bits(dtype) == 0 ? 8 : dtype_bits(dtype);
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) throw Error(ErrorCode::kInvalidArgument, "negative dimension in shape " + shape_to_string(shape));
    if (d != 0 && n > kMaxTensorBytes / d) {
      throw Error(ErrorCode::kInvalidArgument, "shape " + shape_to_string(shape) + " is too large");
    }
    n *= d;
  }
  if (n > kMaxTensorBytes * 8 / bits) {
    throw Error(ErrorCode::kInvalidArgument, "shape " + shape_to_string(shape) + " is too large");
  }
  return n;
}

std::string shape_to_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
  if (dtype == DType::kUndefined || dtype == DType::kString) {
    throw Error(ErrorCode::kUnsupported, std::string("tensors of type ") + dtype_name(dtype) + " are not supported");
  }
  numel_ = checked_numel(shape_, dtype_);
  nbytes_ = static_cast<size_t>((numel_ * dtype_bits(dtype_) + 7) / 8);
  storage_ = allocate_zeroed(nbytes_, shape_, dtype_);
}

Tensor Tensor::view(DType dtype, Shape shape, const std::shared_ptr<std::byte>& owner, std::byte* data) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.numel_ = checked_numel(t.shape_, dtype);
  t.nbytes_ = static_cast<size_t>((t.numel_ * dtype_bits(dtype) + 7) / 8);
  t.storage_ = std::shared_ptr<std::byte>(owner, data);
  return t;
}

Tensor Tensor::reshaped(Shape shape) const {
  if (checked_numel(shape) != numel_) {
    throw Error(ErrorCode::kInvalidArgument, "cannot reshape " + describe() + " to " + shape_to_string(shape));
  }
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::clone() const {
  if (!defined()) return {};
  Tensor t(dtype_, shape_);
  if (nbytes_) std::memcpy(t.raw(), raw(), nbytes_);
  return t;
}

Tensor Tensor::bitcast(DType dtype) const {
  if (dtype_bits(dtype) != dtype_bits(dtype_) || dtype_bits(dtype) == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                std::string("cannot view ") + describe() + " as " + dtype_name(dtype) + " (different element width)");
  }
  Tensor t = *this;
  t.dtype_ = dtype;
  return t;
}

void Tensor::check_type(DType requested) const {
  if (requested != dtype_) {
    throw Error(ErrorCode::kInternal,
                std::string("tensor holds ") + dtype_name(dtype_) + ", accessed as " + dtype_name(requested));
  }
}

double Tensor::get_as_double(int64_t i) const {
  const auto* p = static_cast<const std::byte*>(raw());
  switch (dtype_) {
    case DType::kFloat32: return static_cast<const float*>(raw())[i];
    case DType::kFloat64: return static_cast<const double*>(raw())[i];
    case DType::kFloat16: return to_float(static_cast<const Float16*>(raw())[i]);
    case DType::kBFloat16: return to_float(static_cast<const BFloat16*>(raw())[i]);
    case DType::kUInt4:
    case DType::kInt4: {
      const auto byte = static_cast<uint8_t>(p[i / 2]);
      int v = (i % 2 == 0) ? (byte & 0x0F) : (byte >> 4);
      if (dtype_ == DType::kInt4 && v >= 8) v -= 16;
      return v;
    }
    default: return static_cast<double>(get_as_int64(i));
  }
}

int64_t Tensor::get_as_int64(int64_t i) const {
  switch (dtype_) {
    case DType::kUInt8: return static_cast<const uint8_t*>(raw())[i];
    case DType::kInt8: return static_cast<const int8_t*>(raw())[i];
    case DType::kUInt16: return static_cast<const uint16_t*>(raw())[i];
    case DType::kInt16: return static_cast<const int16_t*>(raw())[i];
    case DType::kInt32: return static_cast<const int32_t*>(raw())[i];
    case DType::kInt64: return static_cast<const int64_t*>(raw())[i];
    case DType::kUInt32: return static_cast<const uint32_t*>(raw())[i];
    case DType::kUInt64: return static_cast<int64_t>(static_cast<const uint64_t*>(raw())[i]);
    case DType::kBool: return static_cast<const bool*>(raw())[i] ? 1 : 0;
    default: return static_cast<int64_t>(get_as_double(i));
  }
}

std::vector<int64_t> Tensor::to_int64_vector() const {
  std::vector<int64_t> v(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) v[static_cast<size_t>(i)] = get_as_int64(i);
  return v;
}

std::vector<float> Tensor::to_float_vector() const {
  std::vector<float> v(static_cast<size_t>(numel_));
  for (int64_t i = 0; i < numel_; ++i) v[static_cast<size_t>(i)] = static_cast<float>(get_as_double(i));
  return v;
}

std::string Tensor::describe() const { return std::string(dtype_name(dtype_)) + shape_to_string(shape_); }

}  // namespace kvant
