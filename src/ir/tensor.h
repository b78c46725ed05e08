// Tensor: a dense, row-major array with an element type and a shape.
//
// Storage is 64-byte aligned and shared between copies (copying a Tensor is
// cheap and aliases; clone() copies the bytes). int4/uint4 hold two elements
// per byte, low nibble first, as ONNX stores them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ir/dtype.h"
#include "kvant/status.h"

namespace kvant {

using Shape = std::vector<int64_t>;

// Elements in `shape`; throws Error(kInvalidArgument) on a negative dim or
// when the count or its byte size for `dtype` overflows or exceeds 2^40 bytes.
int64_t checked_numel(const Shape& shape, DType dtype = DType::kUInt8);
std::string shape_to_string(const Shape& shape);  // "[1,3,224,224]"

class Tensor {
 public:
  Tensor() = default;
  // Allocates zero-filled storage.
  Tensor(DType dtype, Shape shape);

  template <typename T>
  static Tensor scalar(T value) {
    Tensor t(dtype_of<T>, {});
    *t.data<T>() = value;
    return t;
  }
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, Shape shape);

  bool defined() const { return dtype_ != DType::kUndefined; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[static_cast<size_t>(i)]; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return nbytes_; }

  void* raw() { return storage_.get(); }
  const void* raw() const { return storage_.get(); }
  template <typename T>
  T* data() {
    check_type(dtype_of<T>);
    return reinterpret_cast<T*>(storage_.get());
  }
  template <typename T>
  const T* data() const {
    check_type(dtype_of<T>);
    return reinterpret_cast<const T*>(storage_.get());
  }

  // A tensor over bytes someone else owns: `data` lies inside the block that
  // `owner` keeps alive (shared_ptr aliasing, so nothing is allocated for the
  // storage). Used by the compiled runtime to place tensors in its arena.
  static Tensor view(DType dtype, Shape shape, const std::shared_ptr<std::byte>& owner, std::byte* data);
  // Same storage, new shape with the same element count.
  Tensor reshaped(Shape shape) const;
  Tensor clone() const;
  // Same storage and shape viewed as another type of the same width.
  Tensor bitcast(DType dtype) const;
  // Element i converted to double / int64 (any numeric dtype, incl. 4-bit).
  double get_as_double(int64_t i) const;
  int64_t get_as_int64(int64_t i) const;
  // Whole tensor as int64 values (for shape-like inputs such as Reshape's).
  std::vector<int64_t> to_int64_vector() const;
  std::vector<float> to_float_vector() const;

  std::string describe() const;  // "float32[1,3,224,224]"

 private:
  void check_type(DType requested) const;

  DType dtype_ = DType::kUndefined;
  Shape shape_;
  int64_t numel_ = 0;
  size_t nbytes_ = 0;
  std::shared_ptr<std::byte> storage_;
};

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, Shape shape) {
  Tensor t(dtype_of<T>, std::move(shape));
  if (static_cast<int64_t>(values.size()) != t.numel()) {
    throw Error(ErrorCode::kInvalidArgument, "Tensor::from_vector: " + std::to_string(values.size()) +
                                                 " values for shape " + shape_to_string(t.shape()));
  }
  T* out = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) out[i] = values[i];
  return t;
}

}  // namespace kvant
