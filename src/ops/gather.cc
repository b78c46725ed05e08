// Indexed reads and writes: Gather, GatherElements, GatherND, ScatterND,
// ScatterElements (and the deprecated Scatter), Slice, TopK.
//
// Every index is checked before it is used: a negative index counts from the
// end (i + dim), anything outside [-dim, dim) fails naming the node, the
// index and the dim. Byte movers (Gather, GatherND, Slice) copy whole inner
// runs with memcpy and work for every dtype by element size.
//
//   Gather          y[o, n..., i] = x[o, idx[n...], i]              (axis splits o | i)
//   GatherElements  y[p] = x[p with p[axis] := idx[p]]
//   GatherND        y[b, n, s] = x[b, idx[b, n, 0..m), s]           (b: batch_dims)
//   ScatterND       y = x; y[idx[n, 0..m), s] (op)= u[n, s]
//   ScatterElements y = x; y[p with p[axis] := idx[p]] (op)= u[p]
//   op (opset >= 16, 'reduction'): none | add | mul, and max | min from opset 18.
//   Slice           starts/ends/axes attributes before opset 10, inputs (with
//                   steps) from 10; clamped as the spec says, step < 0 walks back.
//   TopK            k attribute before opset 10, input from 10; 'largest' from
//                   11; ties go to the lower index; NaN counts as the largest.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/strided_copy.h"

namespace kvant {

namespace {

// idx in [-dim, dim) -> [0, dim); otherwise a named failure.
int64_t checked_index(const KernelContext& ctx, int64_t idx, int64_t dim, const char* what) {
  const int64_t fixed = idx < 0 ? idx + dim : idx;
  if (fixed < 0 || fixed >= dim) {
    ctx.fail(std::string(what) + " " + std::to_string(idx) + " is out of range for a dim of size " +
             std::to_string(dim));
  }
  return fixed;
}

std::vector<int64_t> index_values(const KernelContext& ctx, const Tensor& t) {
  if (!is_integer(t.dtype())) ctx.fail(std::string("indices must be integers, got ") + t.describe());
  return t.to_int64_vector();
}

size_t dim_axis(const KernelContext& ctx, int64_t axis, const Tensor& x) {
  if (x.rank() == 0) ctx.fail("input must have rank >= 1, got " + x.describe());
  return static_cast<size_t>(normalize_axis(ctx, axis, x.rank()));
}

void gather(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", 0), x);
  std::vector<int64_t> idx = index_values(ctx, indices);
  const int64_t dim = x.shape()[axis];
  for (int64_t& i : idx) i = checked_index(ctx, i, dim, "index");
  Shape out_shape(x.shape().begin(), x.shape().begin() + static_cast<std::ptrdiff_t>(axis));
  out_shape.insert(out_shape.end(), indices.shape().begin(), indices.shape().end());
  out_shape.insert(out_shape.end(), x.shape().begin() + static_cast<std::ptrdiff_t>(axis) + 1, x.shape().end());
  const size_t es = element_size(ctx, x.dtype());
  Tensor y(x.dtype(), out_shape);
  const int64_t outer = shape_product(x.shape(), 0, axis);
  const size_t inner = static_cast<size_t>(shape_product(x.shape(), axis + 1, x.shape().size())) * es;
  const auto* src = static_cast<const std::byte*>(x.raw());
  auto* dst = static_cast<std::byte*>(y.raw());
  const size_t n = idx.size();
  if (inner > 0) {
    for (int64_t o = 0; o < outer; ++o) {
      const std::byte* row = src + static_cast<size_t>(o * dim) * inner;
      for (size_t i = 0; i < n; ++i) {
        std::memcpy(dst + (static_cast<size_t>(o) * n + i) * inner, row + static_cast<size_t>(idx[i]) * inner, inner);
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

// Shared by GatherElements and ScatterElements: indices must have the data's
// rank and fit inside it on every axis but `axis`.
void check_element_indices(const KernelContext& ctx, const Tensor& x, const Tensor& indices, size_t axis) {
  if (indices.rank() != x.rank()) ctx.fail("indices " + indices.describe() + " must have the rank of " + x.describe());
  for (size_t d = 0; d < x.shape().size(); ++d) {
    if (d != axis && indices.shape()[d] > x.shape()[d]) {
      ctx.fail("indices " + indices.describe() + " exceed data " + x.describe() + " on axis " + std::to_string(d));
    }
  }
}

// Strides of x with the axis' stride zeroed: iterating the indices' shape
// with them gives the data offset of every position minus its axis part.
std::vector<int64_t> strides_without_axis(const Tensor& x, size_t axis) {
  std::vector<int64_t> s = contiguous_strides(x.shape());
  s[axis] = 0;
  return s;
}

void gather_elements(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", 0), x);
  check_element_indices(ctx, x, indices, axis);
  std::vector<int64_t> idx = index_values(ctx, indices);
  const int64_t dim = x.shape()[axis];
  for (int64_t& i : idx) i = checked_index(ctx, i, dim, "index");
  const int64_t axis_stride = contiguous_strides(x.shape())[axis];
  const size_t es = element_size(ctx, x.dtype());
  Tensor y(x.dtype(), indices.shape());
  const auto* src = static_cast<const std::byte*>(x.raw());
  auto* dst = static_cast<std::byte*>(y.raw());
  const std::vector<int64_t> strides[1] = {strides_without_axis(x, axis)};
  size_t n = 0;
  for_each_index(indices.shape(), strides, [&](const int64_t* off) {
    copy_element(dst + n * es, src + static_cast<size_t>(off[0] + idx[n] * axis_stride) * es, es);
    ++n;
  });
  ctx.set_output(0, std::move(y));
}

// Layout shared by GatherND and ScatterND: indices [batch..., n..., m] address
// slices of data [batch..., m dims, slice...].
struct NdLayout {
  int64_t batches = 1;           // prod(indices.shape[:b])
  int64_t tuples = 1;            // index tuples per batch: prod(indices.shape[b:q-1])
  int64_t m = 0;                 // indices.shape[q-1]
  int64_t slice = 1;             // elements per addressed slice: prod(data.shape[b+m:])
  int64_t batch_size = 1;        // elements per data batch: prod(data.shape[b:])
  std::vector<int64_t> offsets;  // element offset of each (batch, tuple) slice
};

NdLayout nd_layout(const KernelContext& ctx, const Tensor& x, const Tensor& indices, int64_t batch_dims) {
  const int64_t r = x.rank(), q = indices.rank();
  if (q < 1) ctx.fail("indices must have rank >= 1, got " + indices.describe());
  if (batch_dims < 0 || batch_dims >= std::min(r, q)) {
    ctx.fail("batch_dims " + std::to_string(batch_dims) + " must be below the ranks of data and indices");
  }
  const auto b = static_cast<size_t>(batch_dims);
  for (size_t d = 0; d < b; ++d) {
    if (x.shape()[d] != indices.shape()[d]) {
      ctx.fail("batch dims of data " + x.describe() + " and indices " + indices.describe() + " differ");
    }
  }
  NdLayout l;
  l.m = indices.shape().back();
  if (l.m < 1 || l.m > r - batch_dims) {
    ctx.fail("indices " + indices.describe() + " address " + std::to_string(l.m) + " dims of data " + x.describe());
  }
  const auto m = static_cast<size_t>(l.m);
  l.batches = shape_product(indices.shape(), 0, b);
  l.tuples = shape_product(indices.shape(), b, indices.shape().size() - 1);
  l.slice = shape_product(x.shape(), b + m, x.shape().size());
  l.batch_size = shape_product(x.shape(), b, x.shape().size());
  const std::vector<int64_t> idx = index_values(ctx, indices);
  const std::vector<int64_t> strides = contiguous_strides(x.shape());
  l.offsets.resize(static_cast<size_t>(l.batches * l.tuples));
  for (size_t t = 0; t < l.offsets.size(); ++t) {
    int64_t off = static_cast<int64_t>(t) / l.tuples * l.batch_size;
    for (size_t k = 0; k < m; ++k) {
      off += checked_index(ctx, idx[t * m + k], x.shape()[b + k], "index") * strides[b + k];
    }
    l.offsets[t] = off;
  }
  return l;
}

void gather_nd(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const int64_t batch_dims = ctx.node.attr_int("batch_dims", 0);
  const NdLayout l = nd_layout(ctx, x, indices, batch_dims);
  Shape out_shape(indices.shape().begin(), indices.shape().end() - 1);
  out_shape.insert(out_shape.end(), x.shape().begin() + batch_dims + l.m, x.shape().end());
  const size_t es = element_size(ctx, x.dtype());
  Tensor y(x.dtype(), out_shape);
  const auto* src = static_cast<const std::byte*>(x.raw());
  auto* dst = static_cast<std::byte*>(y.raw());
  const size_t slice = static_cast<size_t>(l.slice) * es;
  for (size_t t = 0; t < l.offsets.size(); ++t) {
    std::memcpy(dst + t * slice, src + static_cast<size_t>(l.offsets[t]) * es, slice);
  }
  ctx.set_output(0, std::move(y));
}

enum class Reduction { kNone, kAdd, kMul, kMax, kMin };

Reduction scatter_reduction(const KernelContext& ctx) {
  if (ctx.opset < 16) return Reduction::kNone;
  const std::string r = ctx.node.attr_string("reduction", "none");
  if (r == "none") return Reduction::kNone;
  if (r == "add") return Reduction::kAdd;
  if (r == "mul") return Reduction::kMul;
  if (r == "max" && ctx.opset >= 18) return Reduction::kMax;
  if (r == "min" && ctx.opset >= 18) return Reduction::kMin;
  ctx.fail("unknown reduction '" + r + "'");
}

template <typename T>
T combine(Reduction r, T old_value, T update) {
  using C = compute_t<T>;
  const C a = to_compute(old_value), b = to_compute(update);
  switch (r) {
    case Reduction::kAdd: return from_compute<T>(static_cast<C>(a + b));
    case Reduction::kMul: return from_compute<T>(static_cast<C>(a * b));
    case Reduction::kMax: return from_compute<T>(std::max(a, b));
    case Reduction::kMin: return from_compute<T>(std::min(a, b));
    case Reduction::kNone: break;
  }
  return update;
}

void scatter_nd(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const Tensor& updates = ctx.input(2);
  if (updates.dtype() != x.dtype())
    ctx.fail("updates " + updates.describe() + " must have the type of " + x.describe());
  const NdLayout l = nd_layout(ctx, x, indices, 0);
  Shape want(indices.shape().begin(), indices.shape().end() - 1);
  want.insert(want.end(), x.shape().begin() + l.m, x.shape().end());
  if (updates.shape() != want) {
    ctx.fail("updates " + updates.describe() + " must have shape " + shape_to_string(want));
  }
  const Reduction reduction = scatter_reduction(ctx);
  Tensor y = x.clone();
  dispatch<AllTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = y.data<T>();
    const T* upd = updates.data<T>();
    for (size_t t = 0; t < l.offsets.size(); ++t) {
      T* dst = out + l.offsets[t];
      const T* src = upd + static_cast<int64_t>(t) * l.slice;
      for (int64_t s = 0; s < l.slice; ++s) dst[s] = combine(reduction, dst[s], src[s]);
    }
  });
  ctx.set_output(0, std::move(y));
}

// ScatterElements, and Scatter (its deprecated name, opset 9-10).
void scatter_elements(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  const Tensor& updates = ctx.input(2);
  if (updates.dtype() != x.dtype())
    ctx.fail("updates " + updates.describe() + " must have the type of " + x.describe());
  if (updates.shape() != indices.shape()) {
    ctx.fail("updates " + updates.describe() + " must have the shape of indices " + indices.describe());
  }
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", 0), x);
  check_element_indices(ctx, x, indices, axis);
  std::vector<int64_t> idx = index_values(ctx, indices);
  const int64_t dim = x.shape()[axis];
  for (int64_t& i : idx) i = checked_index(ctx, i, dim, "index");
  const int64_t axis_stride = contiguous_strides(x.shape())[axis];
  const Reduction reduction = ctx.node.op_type == "Scatter" ? Reduction::kNone : scatter_reduction(ctx);
  Tensor y = x.clone();
  const std::vector<int64_t> strides[1] = {strides_without_axis(x, axis)};
  dispatch<AllTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = y.data<T>();
    const T* upd = updates.data<T>();
    size_t n = 0;
    for_each_index(indices.shape(), strides, [&](const int64_t* off) {
      T& dst = out[off[0] + idx[n] * axis_stride];
      dst = combine(reduction, dst, upd[n]);
      ++n;
    });
  });
  ctx.set_output(0, std::move(y));
}

}  // namespace

SliceLayout slice_layout(const KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  std::vector<int64_t> starts, ends, axes, steps;
  if (ctx.opset < 10) {
    starts = ctx.node.attr_ints("starts");
    ends = ctx.node.attr_ints("ends");
    axes = ctx.node.attr_ints("axes");
  } else {
    starts = index_values(ctx, ctx.input(1));
    ends = index_values(ctx, ctx.input(2));
    if (ctx.has_input(3)) axes = index_values(ctx, ctx.input(3));
    if (ctx.has_input(4)) steps = index_values(ctx, ctx.input(4));
  }
  if (axes.empty()) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size()) {
    ctx.fail("starts, ends, axes and steps must have the same length");
  }
  Shape out_shape = x.shape();
  const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
  std::vector<int64_t> strides = in_strides;
  std::vector<bool> seen(static_cast<size_t>(rank), false);
  int64_t base = 0;  // element offset of the first element read
  for (size_t i = 0; i < starts.size(); ++i) {
    if (rank == 0) ctx.fail("cannot slice a scalar");
    const auto a = static_cast<size_t>(normalize_axis(ctx, axes[i], rank));
    if (seen[a]) ctx.fail("axis " + std::to_string(axes[i]) + " is sliced twice");
    seen[a] = true;
    const int64_t dim = x.shape()[a];
    if (steps[i] == 0) ctx.fail("step on axis " + std::to_string(axes[i]) + " is 0");
    // INT64_MIN would overflow when negated; any step this large takes one element.
    const int64_t step = std::max(steps[i], -std::numeric_limits<int64_t>::max());
    int64_t start = starts[i], end = ends[i];
    if (start < 0) start += dim;  // INT64_MIN + dim does not overflow: dim >= 0
    if (end < 0) end += dim;
    int64_t len;
    if (step > 0) {
      start = std::clamp<int64_t>(start, 0, dim);
      end = std::clamp<int64_t>(end, 0, dim);
      len = end > start ? 1 + (end - start - 1) / step : 0;
    } else {
      start = std::clamp<int64_t>(start, -1, dim - 1);
      end = std::clamp<int64_t>(end, -1, dim - 1);
      len = start > end ? 1 + (start - end - 1) / (-step) : 0;
    }
    out_shape[a] = len;
    strides[a] = len > 1 ? in_strides[a] * step : 0;  // len > 1 implies |step| < dim: no overflow
    if (len > 0) base += start * in_strides[a];
  }
  element_size(ctx, x.dtype());  // sub-byte types are unsupported
  return {out_shape, strides, base};
}

void slice_into(const KernelContext& ctx, const SliceLayout& l, Tensor& y) {
  const Tensor& x = ctx.input(0);
  const size_t es = element_size(ctx, x.dtype());
  if (y.numel() > 0) {
    strided_copy(static_cast<std::byte*>(y.raw()),
                 static_cast<const std::byte*>(x.raw()) + l.base * static_cast<int64_t>(es), l.out_shape, l.strides,
                 es);
  }
}

namespace {

void slice(KernelContext& ctx) {
  const SliceLayout l = slice_layout(ctx);
  Tensor y(ctx.input(0).dtype(), l.out_shape);
  slice_into(ctx, l, y);
  ctx.set_output(0, std::move(y));
}

// Strict "comes first" order for TopK: by value (NaN beyond every number),
// then by the lower index.
template <typename C>
bool comes_first(C a, int64_t ia, C b, int64_t ib, bool largest) {
  if constexpr (std::is_floating_point_v<C>) {
    const bool na = std::isnan(a), nb = std::isnan(b);
    if (na || nb) {
      if (na && nb) return ia < ib;
      return largest ? na : nb;
    }
  }
  if (a != b) return largest ? a > b : a < b;
  return ia < ib;
}

void top_k(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", -1), x);
  int64_t k = 0;
  if (ctx.opset < 10) {
    if (!ctx.node.has_attr("k")) ctx.fail("attribute 'k' is required before opset 10");
    k = ctx.node.attr_int("k", 0);
  } else {
    const Tensor& kt = ctx.input(1);
    if (kt.numel() != 1) ctx.fail("K must hold one element, got " + kt.describe());
    k = kt.get_as_int64(0);
  }
  const int64_t dim = x.shape()[axis];
  if (k < 0 || k > dim)
    ctx.fail("k " + std::to_string(k) + " is out of range for a dim of size " + std::to_string(dim));
  const bool largest = ctx.opset < 11 || ctx.node.attr_int("largest", 1) != 0;
  // 'sorted' = 0 allows any order; the sorted order is one of them.
  Shape out_shape = x.shape();
  out_shape[axis] = k;
  Tensor values(x.dtype(), out_shape);
  Tensor indices(DType::kInt64, out_shape);
  const int64_t outer = shape_product(x.shape(), 0, axis);
  const int64_t inner = shape_product(x.shape(), axis + 1, x.shape().size());
  dispatch<NumericTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const T* in = x.data<T>();
    T* out_v = values.data<T>();
    int64_t* out_i = indices.data<int64_t>();
    std::vector<int64_t> order(static_cast<size_t>(dim));
    std::vector<C> row(static_cast<size_t>(dim));
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t j = 0; j < inner; ++j) {
        for (int64_t i = 0; i < dim; ++i) row[static_cast<size_t>(i)] = to_compute(in[(o * dim + i) * inner + j]);
        std::iota(order.begin(), order.end(), 0);
        std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
          return comes_first(row[static_cast<size_t>(a)], a, row[static_cast<size_t>(b)], b, largest);
        });
        for (int64_t i = 0; i < k; ++i) {
          const int64_t at = (o * k + i) * inner + j;
          out_i[at] = order[static_cast<size_t>(i)];
          out_v[at] = in[(o * dim + out_i[at]) * inner + j];
        }
      }
    }
  });
  ctx.set_output(0, std::move(values));
  ctx.set_output(1, std::move(indices));
}

constexpr OpDef kGatherOps[] = {
    {"Gather", "", gather},
    {"GatherElements", "", gather_elements},
    {"GatherND", "", gather_nd},
    {"ScatterND", "", scatter_nd},
    {"ScatterElements", "", scatter_elements},
    {"Scatter", "", scatter_elements},
    {"Slice", "", slice},
    {"TopK", "", top_k},
};

}  // namespace

std::span<const OpDef> gather_ops() { return kGatherOps; }

}  // namespace kvant
