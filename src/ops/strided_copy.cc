#include "ops/strided_copy.h"

#include <algorithm>
#include <cstring>

#include "ops/op_util.h"

namespace kvant {

namespace {

template <typename U>
void copy_run(std::byte* dst, const std::byte* src, int64_t count, int64_t stride) {
  U* out = reinterpret_cast<U*>(dst);
  for (int64_t i = 0; i < count; ++i)
    std::memcpy(out + i, src + i * stride * static_cast<int64_t>(sizeof(U)), sizeof(U));
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

// Transposing copy: dims[p] is read contiguously (source stride 1) while the
// output's last dim is read with stride `inner_stride`. Copies 2-D tiles so
// both sides stay in cache. Iterates every other dim in the outer loop.
template <typename U>
void blocked_transpose(std::byte* dst_bytes, const std::byte* src_bytes, const Shape& dims,
                       const std::vector<int64_t>& strides, size_t p) {
  constexpr int64_t kTile = 16;
  U* dst = reinterpret_cast<U*>(dst_bytes);
  const U* src = reinterpret_cast<const U*>(src_bytes);
  const size_t rank = dims.size();
  const std::vector<int64_t> dst_strides = contiguous_strides(dims);
  const int64_t rows = dims[p], cols = dims[rank - 1];
  const int64_t dst_row = dst_strides[p], src_col = strides[rank - 1];
  int64_t outer = 1;
  for (size_t d = 0; d + 1 < rank; ++d) {
    if (d != p) outer *= dims[d];
  }
  std::vector<int64_t> index(rank, 0);
  int64_t src_off = 0, dst_off = 0;
  for (int64_t n = 0; n < outer; ++n) {
    for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
      const int64_t r1 = std::min(rows, r0 + kTile);
      for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
        const int64_t c1 = std::min(cols, c0 + kTile);
        for (int64_t r = r0; r < r1; ++r) {
          U* out = dst + dst_off + r * dst_row;
          const U* in = src + src_off + r;
          for (int64_t c = c0; c < c1; ++c) out[c] = in[c * src_col];
        }
      }
    }
    for (size_t d = rank - 1; d-- > 0;) {  // next index over the dims other than p and the last
      if (d == p) continue;
      src_off += strides[d];
      dst_off += dst_strides[d];
      if (++index[d] < dims[d]) break;
      src_off -= strides[d] * dims[d];
      dst_off -= dst_strides[d] * dims[d];
      index[d] = 0;
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
  if (strides.back() != 1 && strides.back() != 0 && dims.back() >= 8) {
    for (size_t p = 0; p + 1 < rank; ++p) {
      if (strides[p] != 1 || dims[p] < 8) continue;
      switch (elem_size) {
        case 1: blocked_transpose<uint8_t>(dst, src, dims, strides, p); return;
        case 2: blocked_transpose<uint16_t>(dst, src, dims, strides, p); return;
        case 4: blocked_transpose<uint32_t>(dst, src, dims, strides, p); return;
        case 8: blocked_transpose<uint64_t>(dst, src, dims, strides, p); return;
        default: break;
      }
    }
  }
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
