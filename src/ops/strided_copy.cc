#include "ops/strided_copy.h"

#include <cstring>

namespace kvant {

namespace {

template <typename U>
void copy_run(std::byte* dst, const std::byte* src, int64_t count, int64_t stride) {
  U* out = reinterpret_cast<U*>(dst);
  for (int64_t i = 0; i < count; ++i) std::memcpy(out + i, src + i * stride * static_cast<int64_t>(sizeof(U)), sizeof(U));
}

// Copies `count` elements read `stride` elements apart into contiguous dst.
void copy_strided_run(std::byte* dst, const std::byte* src, int64_t count, int64_t stride, size_t elem_size) {
  if (stride == 1) {
    std::memcpy(dst, src, static_cast<size_t>(count) * elem_size);
    return;
  }
  switch (elem_size) {
    case 1: copy_run<uint8_t>(dst, src, count, stride); return;
    case 2: copy_run<uint16_t>(dst, src, count, stride); return;
    case 4: copy_run<uint32_t>(dst, src, count, stride); return;
    case 8: copy_run<uint64_t>(dst, src, count, stride); return;
    default:
      for (int64_t i = 0; i < count; ++i) {
        std::memcpy(dst + i * static_cast<int64_t>(elem_size), src + i * stride * static_cast<int64_t>(elem_size),
                    elem_size);
      }
  }
}

}  // namespace

size_t element_size(const KernelContext& ctx, DType dtype) {
  const int bits = dtype_bits(dtype);
  if (bits <= 0 || bits % 8 != 0) {
    ctx.unsupported(std::string("tensors of type ") + dtype_name(dtype) + " are not supported by this operator");
  }
  return static_cast<size_t>(bits / 8);
}

void copy_element(std::byte* dst, const std::byte* src, size_t elem_size) { std::memcpy(dst, src, elem_size); }

int64_t shape_product(const Shape& shape, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end && i < shape.size(); ++i) p *= shape[i];
  return p;
}

void strided_copy(std::byte* dst, const std::byte* src, const Shape& out_shape, const std::vector<int64_t>& src_strides,
                  size_t elem_size) {
  // Drop size-1 dims and merge dims that are contiguous in the source.
  Shape dims;
  std::vector<int64_t> strides;
  for (size_t d = 0; d < out_shape.size(); ++d) {
    if (out_shape[d] == 0) return;
    if (out_shape[d] == 1) continue;
    if (!dims.empty() && strides.back() == src_strides[d] * out_shape[d]) {
      dims.back() *= out_shape[d];
      strides.back() = src_strides[d];
      continue;
    }
    dims.push_back(out_shape[d]);
    strides.push_back(src_strides[d]);
  }
  if (dims.empty()) {
    std::memcpy(dst, src, elem_size);
    return;
  }
  const size_t rank = dims.size();
  const int64_t inner = dims.back();
  const int64_t inner_stride = strides.back();
  const auto es = static_cast<int64_t>(elem_size);
  int64_t outer = 1;
  for (size_t d = 0; d + 1 < rank; ++d) outer *= dims[d];
  std::vector<int64_t> index(rank, 0);
  int64_t src_offset = 0;  // in elements
  for (int64_t row = 0; row < outer; ++row) {
    copy_strided_run(dst + row * inner * es, src + src_offset * es, inner, inner_stride, elem_size);
    for (size_t d = rank - 1; d-- > 0;) {
      src_offset += strides[d];
      if (++index[d] < dims[d]) break;
      src_offset -= strides[d] * dims[d];
      index[d] = 0;
    }
  }
}

}  // namespace kvant
