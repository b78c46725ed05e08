// Helpers shared by the reference kernels: type dispatch, axes, broadcasting.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
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

// A broadcast loop over `out_shape` reading N operands, with dimensions merged
// where every operand is contiguous across them (so [B,S,H] + [H] becomes one
// outer dim of B*S and an inner run of H). The kernel walks `outer` with
// for_each_index and runs a plain inner loop of `inner` elements, in which
// operand k advances by inner_stride[k] (0 for a broadcast, 1 otherwise).
// Operand 0 is the (contiguous) output; operands 1..N are the inputs.
struct BroadcastPlan {
  Shape outer;
  std::vector<std::vector<int64_t>> outer_strides;  // per operand, one per outer dim
  int64_t inner = 1;
  std::vector<int64_t> inner_stride;  // per operand
};
// `in_shapes` must each broadcast to `out_shape` (checked by the caller, e.g.
// with broadcast_shapes).
BroadcastPlan make_broadcast_plan(const Shape& out_shape, const std::vector<Shape>& in_shapes);

// Calls fn(offsets, inner, inner_strides) for each inner run: offsets[k] is
// operand k's element offset at the start of the run.
template <size_t N, typename Fn>
void for_each_run(const BroadcastPlan& plan, Fn&& fn) {
  std::vector<int64_t> strides[N];
  for (size_t k = 0; k < N; ++k) strides[k] = plan.outer_strides[k];
  for_each_index<N>(plan.outer, strides,
                    [&](const int64_t* offsets) { fn(offsets, plan.inner, plan.inner_stride.data()); });
}

// out = fn(a, b) elementwise over the numpy broadcast of a's and b's shapes,
// out of type O (A, B, O: the C++ element types of a, b and the output).
// Equal shapes and a one-element side take flat loops; other shapes use a
// BroadcastPlan. Fails naming the node when the shapes do not broadcast.
template <typename A, typename B, typename O, typename Fn>
Tensor broadcast_binary(const KernelContext& ctx, const Tensor& a, const Tensor& b, Fn&& fn) {
  const bool same = a.shape() == b.shape();
  Tensor out(dtype_of<O>, same ? a.shape() : broadcast_shapes(ctx, a.shape(), b.shape()));
  const A* pa = a.data<A>();
  const B* pb = b.data<B>();
  O* po = out.data<O>();
  const int64_t n = out.numel();
  if (same) {
    for (int64_t i = 0; i < n; ++i) po[i] = fn(pa[i], pb[i]);
  } else if (b.numel() == 1 && a.numel() == n) {
    const B vb = pb[0];
    for (int64_t i = 0; i < n; ++i) po[i] = fn(pa[i], vb);
  } else if (a.numel() == 1 && b.numel() == n) {
    const A va = pa[0];
    for (int64_t i = 0; i < n; ++i) po[i] = fn(va, pb[i]);
  } else {
    const BroadcastPlan plan = make_broadcast_plan(out.shape(), {a.shape(), b.shape()});
    for_each_run<3>(plan, [&](const int64_t* off, int64_t inner, const int64_t* step) {
      O* o = po + off[0];
      const A* x = pa + off[1];
      const B* y = pb + off[2];
      if (step[1] == 1 && step[2] == 1) {
        for (int64_t i = 0; i < inner; ++i) o[i] = fn(x[i], y[i]);
      } else if (step[2] == 0) {
        for (int64_t i = 0; i < inner; ++i) o[i] = fn(x[i * step[1]], *y);
      } else {
        for (int64_t i = 0; i < inner; ++i) o[i] = fn(x[i * step[1]], y[i * step[2]]);
      }
    });
  }
  return out;
}

// out[i] = fn(x[i]) for a kernel whose output has the input's type and shape;
// fn receives and returns compute_t<T> (float for the 16-bit floats), so one
// generic lambda serves every type in Set.
template <typename Set, typename Fn>
void map_unary(KernelContext& ctx, Fn&& fn) {
  const Tensor& x = ctx.input(0);
  dispatch<Set>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor out(x.dtype(), x.shape());
    const T* in = x.data<T>();
    T* o = out.data<T>();
    const int64_t n = x.numel();
    for (int64_t i = 0; i < n; ++i) o[i] = from_compute<T>(static_cast<compute_t<T>>(fn(to_compute(in[i]))));
    ctx.set_output(0, std::move(out));
  });
}

// The data-movement reference ops split into geometry (checks, output
// shape; errors name ctx's node) and a copy into caller-provided outputs,
// so compiled steps (runtime/steps_copy.cc) share their exact semantics.
// Concat (inputs = ctx's inputs, `axis` attribute):
Shape concat_shape(const KernelContext& ctx);
void concat_into(const KernelContext& ctx, Tensor& y);
// Split (input 0; sizes from the attribute / input / num_outputs by opset):
// one size per node output; outs[i] may be null for an unused output.
std::vector<int64_t> split_sizes(const KernelContext& ctx);
void split_into(const KernelContext& ctx, const std::vector<int64_t>& sizes, std::span<Tensor* const> outs);
// Slice (attributes before opset 10, inputs after): y = x[base + sum(i_d * strides[d])].
struct SliceLayout {
  Shape out_shape;
  std::vector<int64_t> strides;  // elements; 0 where the output dim is 1
  int64_t base = 0;
};
SliceLayout slice_layout(const KernelContext& ctx);
void slice_into(const KernelContext& ctx, const SliceLayout& layout, Tensor& y);

// Expand (input 0 broadcast against the shape input 1).
Shape expand_shape(const KernelContext& ctx);
void expand_into(const KernelContext& ctx, Tensor& y);
// Tile (repeats input 1): the output read through a view of 2 dims per axis.
struct TileLayout {
  Shape out_shape;
  Shape view_shape;                   // (repeats[d], dim[d]) per axis
  std::vector<int64_t> view_strides;  // (0, stride[d]) per axis
};
TileLayout tile_layout(const KernelContext& ctx);
void tile_into(const KernelContext& ctx, const TileLayout& layout, Tensor& y);

// Pad (pads/value attributes before opset 11, inputs after; axes at 18+).
struct PadLayout {
  std::string mode;            // constant, reflect, edge, wrap
  std::vector<int64_t> begin;  // pad before each dim (negative: crop)
  Shape out_shape;
  std::vector<std::byte> value;  // the constant, one element's bytes
};
PadLayout pad_layout(const KernelContext& ctx);
void pad_into(const KernelContext& ctx, const PadLayout& layout, Tensor& y);

// Cast's element conversion (cast.cc: truncation, NaN and wrap rules) of n
// elements from `from` to `to`; unsupported types name ctx's node.
void cast_elements(const KernelContext& ctx, DType from, DType to, const void* src, void* dst, int64_t n);

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
