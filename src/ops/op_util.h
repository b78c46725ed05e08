// Helpers shared by the reference kernels: type dispatch, axes, broadcasting.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/tensor.h"
#include "ops/op_registry.h"

namespace kvant {

// Type sets for dispatch.
struct FloatTypes {};    // float, double, Float16, BFloat16
struct NumericTypes {};  // FloatTypes + all 8..64-bit integers
struct AllTypes {};      // NumericTypes + bool

// Calls fn(TypeTag<T>{}) for the C++ type of `dtype` if it is in the set;
// otherwise ctx.unsupported("type X"). Float16/BFloat16 are included in the
// float sets: kernels that compute in float use to_compute()/from_compute().
template <typename Set, typename Fn>
void dispatch(DType dtype, const KernelContext& ctx, Fn&& fn) {
  constexpr bool kNumeric = !std::is_same_v<Set, FloatTypes>;
  constexpr bool kAll = std::is_same_v<Set, AllTypes>;
  switch (dtype) {
    case DType::kFloat32: fn(TypeTag<float>{}); return;
    case DType::kFloat64: fn(TypeTag<double>{}); return;
    case DType::kFloat16: fn(TypeTag<Float16>{}); return;
    case DType::kBFloat16: fn(TypeTag<BFloat16>{}); return;
    default: break;
  }
  if constexpr (kNumeric) {
    switch (dtype) {
      case DType::kInt8: fn(TypeTag<int8_t>{}); return;
      case DType::kUInt8: fn(TypeTag<uint8_t>{}); return;
      case DType::kInt16: fn(TypeTag<int16_t>{}); return;
      case DType::kUInt16: fn(TypeTag<uint16_t>{}); return;
      case DType::kInt32: fn(TypeTag<int32_t>{}); return;
      case DType::kUInt32: fn(TypeTag<uint32_t>{}); return;
      case DType::kInt64: fn(TypeTag<int64_t>{}); return;
      case DType::kUInt64: fn(TypeTag<uint64_t>{}); return;
      default: break;
    }
  }
  if constexpr (kAll) {
    if (dtype == DType::kBool) {
      fn(TypeTag<bool>{});
      return;
    }
  }
  ctx.unsupported(std::string("inputs of type ") + dtype_name(dtype) + " are not supported");
}

// Arithmetic type for T: float for the 16-bit floats, T otherwise.
template <typename T>
struct ComputeType {
  using type = T;
};
template <>
struct ComputeType<Float16> {
  using type = float;
};
template <>
struct ComputeType<BFloat16> {
  using type = float;
};
template <typename T>
using compute_t = typename ComputeType<T>::type;

template <typename T>
inline compute_t<T> to_compute(T v) {
  if constexpr (std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>) {
    return to_float(v);
  } else {
    return v;
  }
}
template <typename T>
inline T from_compute(compute_t<T> v) {
  if constexpr (std::is_same_v<T, Float16>) {
    return to_float16(v);
  } else if constexpr (std::is_same_v<T, BFloat16>) {
    return to_bfloat16(v);
  } else {
    return static_cast<T>(v);
  }
}

// Maps a possibly negative axis into [0, rank); fails naming the node.
int64_t normalize_axis(const KernelContext& ctx, int64_t axis, int64_t rank);

// Numpy-style broadcast of two shapes; fails naming the node when they do not
// broadcast.
Shape broadcast_shapes(const KernelContext& ctx, const Shape& a, const Shape& b);

// Element strides of `in` when read as `out` (0 along broadcast dims).
std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out);

// Row-major strides of a shape.
std::vector<int64_t> contiguous_strides(const Shape& shape);

// Iterates a multi-index over `shape`, maintaining one linear offset per
// operand (strides given per operand). Calls fn(offsets) for each element in
// row-major order.
template <size_t N, typename Fn>
void for_each_index(const Shape& shape, const std::vector<int64_t> (&strides)[N], Fn&& fn) {
  const size_t rank = shape.size();
  int64_t total = 1;
  for (int64_t d : shape) total *= d;
  if (total == 0) return;
  std::vector<int64_t> index(rank, 0);
  int64_t offsets[N] = {};
  for (int64_t count = 0; count < total; ++count) {
    fn(static_cast<const int64_t*>(offsets));
    for (size_t d = rank; d-- > 0;) {
      ++index[d];
      for (size_t k = 0; k < N; ++k) offsets[k] += strides[k][d];
      if (index[d] < shape[d]) break;
      for (size_t k = 0; k < N; ++k) offsets[k] -= strides[k][d] * shape[d];
      index[d] = 0;
    }
  }
}

// Sliding-window geometry shared by Conv and the pools, one entry per spatial
// dim. With k_eff = (kernel - 1) * dilation + 1:
//   NOTSET: out = floor_or_ceil((in + pad_begin + pad_end - k_eff) / stride) + 1; with ceil_mode a last
//           window that would start inside the end padding is dropped.
//   VALID:  pads 0, out = floor((in - k_eff) / stride) + 1.
//   SAME_UPPER / SAME_LOWER: out = ceil(in / stride), total pad = max(0, (out - 1) * stride + k_eff - in),
//           the odd element going to the end (UPPER) or the beginning (LOWER).
struct WindowGeometry {
  std::vector<int64_t> in, kernel, strides, dilations, pads_begin, pads_end, out;
};

// Reads strides, dilations, pads and auto_pad from ctx.node and validates
// them against `in` (the input's spatial dims) and `kernel`.
WindowGeometry window_geometry(const KernelContext& ctx, const Shape& in, const std::vector<int64_t>& kernel,
                               bool ceil_mode);

// Prepends unit dims so that the geometry has exactly `rank` spatial dims
// (kernels are written once for 3-D windows). Requires size() <= rank.
void pad_geometry_to_rank(WindowGeometry& g, size_t rank);

}  // namespace kvant
