// Byte-moving helpers shared by the data-movement kernels (Transpose, Expand,
// Tile, Slice, Gather, ...). They work on element sizes, not types, so one
// instantiation serves every dtype of that width (bool, int8, float16, ...).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ir/tensor.h"
#include "ops/op_registry.h"

namespace kvant {

// Bytes per element of `dtype`; ctx.unsupported() for sub-byte types (int4),
// which the byte-moving kernels cannot address element by element.
size_t element_size(const KernelContext& ctx, DType dtype);

// Fills the contiguous `dst` (laid out as `out_shape`) from `src`, where
// element (i0, i1, ...) of the output is read at
//   src + elem_size * sum_d(i_d * src_strides[d])     (strides in elements).
// Strides may be 0 (broadcast) or negative (reversed slices). Adjacent dims
// that are contiguous in the source are merged first, so a plain copy is one
// memcpy and a transpose that keeps the last axis copies whole rows.
void strided_copy(std::byte* dst, const std::byte* src, const Shape& out_shape, const std::vector<int64_t>& src_strides,
                  size_t elem_size);

// Copies one element of `elem_size` bytes (fast paths for 1, 2, 4, 8).
void copy_element(std::byte* dst, const std::byte* src, size_t elem_size);

// Product of shape[begin, end).
int64_t shape_product(const Shape& shape, size_t begin, size_t end);

}  // namespace kvant
