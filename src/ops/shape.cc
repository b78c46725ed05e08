// Operators that describe or generate tensors from shapes and counts:
// Shape, Size, Range, ConstantOfShape, OneHot, NonZero.
//
//   Shape     int64 1-D of the input's dims; from opset 15 the slice
//             [start, end) of them (negative = from the back, clamped).
//   Range     y[i] = start + i * delta, for i < max(ceil((limit - start) / delta), 0).
//   OneHot    y[..., j, ...] = values[1] if j == index (index < 0: + depth)
//             else values[0]; an index outside [-depth, depth) gives a row
//             of values[0], as the spec says.
//   NonZero   int64 [rank, count]: the coordinates of nonzero elements in
//             row-major order.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/strided_copy.h"

namespace kvant {

namespace {

void shape_op(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  int64_t start = 0, end = rank;
  if (ctx.opset >= 15) {
    start = ctx.node.attr_int("start", 0);
    end = ctx.node.attr_int("end", rank);
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, 0, rank);
  }
  const int64_t n = std::max<int64_t>(end - start, 0);
  std::vector<int64_t> dims(x.shape().begin() + start, x.shape().begin() + start + n);
  ctx.set_output(0, Tensor::from_vector(dims, {n}));
}

void size_op(KernelContext& ctx) { ctx.set_output(0, Tensor::scalar<int64_t>(ctx.input(0).numel())); }

void range(KernelContext& ctx) {
  const Tensor& start_t = ctx.input(0);
  const Tensor& limit_t = ctx.input(1);
  const Tensor& delta_t = ctx.input(2);
  for (const Tensor* t : {&start_t, &limit_t, &delta_t}) {
    if (t->numel() != 1) ctx.fail("start, limit and delta must be scalars, got " + t->describe());
    if (t->dtype() != start_t.dtype()) ctx.fail("start, limit and delta must have the same type");
  }
  dispatch<NumericTypes>(start_t.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const C start = to_compute(start_t.data<T>()[0]);
    const C limit = to_compute(limit_t.data<T>()[0]);
    const C delta = to_compute(delta_t.data<T>()[0]);
    if (delta == C(0)) ctx.fail("delta must not be 0");
    const double count =
        std::ceil((static_cast<double>(limit) - static_cast<double>(start)) / static_cast<double>(delta));
    if (!(count < 1e12)) {
      if (count > 0) ctx.fail("range of " + std::to_string(count) + " elements is too large");
    }
    const int64_t n = count > 0 ? static_cast<int64_t>(count) : 0;
    Tensor y(start_t.dtype(), {n});
    T* out = y.data<T>();
    for (int64_t i = 0; i < n; ++i) out[i] = from_compute<T>(static_cast<C>(start + static_cast<C>(i) * delta));
    ctx.set_output(0, std::move(y));
  });
}

void constant_of_shape(KernelContext& ctx) {
  const Tensor& s = ctx.input(0);
  if (s.rank() != 1) ctx.fail("shape input must be 1-D, got " + s.describe());
  const Shape shape = s.to_int64_vector();
  for (int64_t d : shape) {
    if (d < 0) ctx.fail("shape " + shape_to_string(shape) + " has a negative dim");
  }
  const Tensor* value = ctx.node.attr_tensor("value");
  Tensor fill = value ? *value : Tensor::scalar<float>(0.0f);
  if (fill.numel() != 1) ctx.fail("attribute 'value' must hold one element, got " + fill.describe());
  const size_t es = element_size(ctx, fill.dtype());
  Tensor y(fill.dtype(), shape);
  auto* dst = static_cast<std::byte*>(y.raw());
  const auto* src = static_cast<const std::byte*>(fill.raw());
  bool all_zero = true;
  for (size_t b = 0; b < es; ++b) all_zero = all_zero && src[b] == std::byte{0};
  if (!all_zero) {
    for (int64_t i = 0; i < y.numel(); ++i) std::memcpy(dst + static_cast<size_t>(i) * es, src, es);
  }
  ctx.set_output(0, std::move(y));
}

void one_hot(KernelContext& ctx) {
  const Tensor& indices = ctx.input(0);
  const Tensor& depth_t = ctx.input(1);
  const Tensor& values = ctx.input(2);
  if (depth_t.numel() != 1) ctx.fail("depth must hold one element, got " + depth_t.describe());
  if (values.numel() != 2) ctx.fail("values must hold [off_value, on_value], got " + values.describe());
  const double depth_d = depth_t.get_as_double(0);
  if (!(depth_d >= 1) || depth_d > 1e9) ctx.fail("depth " + std::to_string(depth_d) + " is not a positive count");
  const auto depth = static_cast<int64_t>(depth_d);
  const int64_t out_rank = indices.rank() + 1;
  const auto axis = static_cast<size_t>(normalize_axis(ctx, ctx.node.attr_int("axis", -1), out_rank));
  Shape out_shape = indices.shape();
  out_shape.insert(out_shape.begin() + static_cast<std::ptrdiff_t>(axis), depth);
  const size_t es = element_size(ctx, values.dtype());
  Tensor y(values.dtype(), out_shape);
  const auto* off = static_cast<const std::byte*>(values.raw());
  const auto* on = off + es;
  auto* out = static_cast<std::byte*>(y.raw());
  for (int64_t i = 0; i < y.numel(); ++i) std::memcpy(out + static_cast<size_t>(i) * es, off, es);
  // Output index = (outer, j, inner) with the indices' own index = (outer, inner).
  const int64_t inner = shape_product(indices.shape(), axis, indices.shape().size());
  for (int64_t i = 0; i < indices.numel(); ++i) {
    const double v = indices.get_as_double(i);
    if (!(std::fabs(v) < static_cast<double>(depth) + 1)) continue;  // NaN or far out of range
    int64_t j = static_cast<int64_t>(v);
    if (j < 0) j += depth;
    if (j < 0 || j >= depth) continue;
    const int64_t outer_i = i / inner, inner_i = i % inner;
    const int64_t at = (outer_i * depth + j) * inner + inner_i;
    std::memcpy(out + static_cast<size_t>(at) * es, on, es);
  }
  ctx.set_output(0, std::move(y));
}

void non_zero(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  std::vector<int64_t> hits;
  dispatch<AllTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      if (to_compute(in[i]) != compute_t<T>(0)) hits.push_back(i);
    }
  });
  const auto rank = static_cast<size_t>(x.rank());
  const auto count = static_cast<int64_t>(hits.size());
  Tensor y(DType::kInt64, {static_cast<int64_t>(rank), count});
  int64_t* out = y.data<int64_t>();
  const std::vector<int64_t> strides = contiguous_strides(x.shape());
  for (int64_t h = 0; h < count; ++h) {
    int64_t rest = hits[static_cast<size_t>(h)];
    for (size_t d = 0; d < rank; ++d) {
      out[static_cast<int64_t>(d) * count + h] = rest / strides[d];
      rest %= strides[d];
    }
  }
  ctx.set_output(0, std::move(y));
}

constexpr OpDef kShapeOps[] = {
    {"Shape", "", shape_op}, {"Size", "", size_op},
    {"Range", "", range},    {"ConstantOfShape", "", constant_of_shape},
    {"OneHot", "", one_hot}, {"NonZero", "", non_zero},
};

}  // namespace

std::span<const OpDef> shape_ops() { return kShapeOps; }

}  // namespace kvant
