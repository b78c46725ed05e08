// Selection reference kernels: Unique, Compress, ReverseSequence. They move
// whole elements, so every dtype of 8 bits or more works (not int4/uint4,
// not strings).
//
// Unique(X) -> Y, indices, inverse_indices, counts
//   Without `axis` over the flattened X, with it over the slices X[.., i, ..]
//   along axis (compared element by element in row-major order). Y holds each
//   distinct value (slice) once: in ascending order with sorted = 1 (the
//   default; slices lexicographically), else in order of first occurrence.
//   indices[u] = where Y's u-th value first occurs in X; inverse_indices[i] =
//   the position in Y of X's i-th value; counts[u] = how often it occurs.
//   NaNs compare equal to each other and greater than every number.
// Compress(input, condition bool [n]) -> the elements (no axis: of the
//   flattened input) or slices along axis whose condition is true; a shorter
//   condition selects nothing beyond its end.
// ReverseSequence(input, sequence_lens int64 [batch]) -> for each batch entry
//   b (along batch_axis), its first sequence_lens[b] steps along time_axis in
//   reverse order, the rest as they were.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/strided_copy.h"

namespace kvant {

namespace {

size_t element_bytes(const KernelContext& ctx, const Tensor& x) {
  const int bits = dtype_bits(x.dtype());
  if (bits < 8 || bits % 8 != 0)
    ctx.unsupported(std::string("input type ") + dtype_name(x.dtype()) + " is not supported");
  return static_cast<size_t>(bits / 8);
}

// Y [outer, picks, inner] from X [outer, count, inner]: slice picks[u] of X
// along the middle axis becomes slice u of Y; `y_shape` is Y's real shape.
Tensor take_slices(const KernelContext& ctx, const Tensor& x, Shape y_shape, int64_t outer, int64_t count,
                   int64_t inner, const std::vector<int64_t>& picks) {
  Tensor y(x.dtype(), std::move(y_shape));
  const auto* src = static_cast<const std::byte*>(x.raw());
  auto* dst = static_cast<std::byte*>(y.raw());
  const size_t run = static_cast<size_t>(inner) * element_bytes(ctx, x);
  const auto kept = static_cast<int64_t>(picks.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t u = 0; u < kept; ++u) {
      std::memcpy(dst + static_cast<size_t>(o * kept + u) * run,
                  src + static_cast<size_t>(o * count + picks[static_cast<size_t>(u)]) * run, run);
    }
  }
  return y;
}

// -1, 0, 1 for a < b, a == b, a > b; NaN above every number, NaNs equal.
template <typename C>
int compare_values(C a, C b) {
  if constexpr (std::is_floating_point_v<C>) {
    const bool na = std::isnan(a), nb = std::isnan(b);
    if (na || nb) return na == nb ? 0 : (na ? 1 : -1);
  }
  return a < b ? -1 : (b < a ? 1 : 0);
}

void unique(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const bool has_axis = ctx.node.has_attr("axis");
  const bool sorted = ctx.node.attr_int("sorted", 1) != 0;
  int64_t outer = 1, count = x.numel(), inner = 1;
  size_t axis = 0;
  if (has_axis) {
    axis = static_cast<size_t>(normalize_axis(ctx, ctx.node.attr_int("axis", 0), x.rank()));
    outer = shape_product(x.shape(), 0, axis);
    count = x.shape()[axis];
    inner = shape_product(x.shape(), axis + 1, x.shape().size());
  }
  // compare(a, b) of slices a and b.
  std::vector<int64_t> order(static_cast<size_t>(count));
  std::iota(order.begin(), order.end(), 0);
  std::vector<int64_t> group_of(order.size());
  std::vector<int64_t> firsts, counts;
  dispatch<AllTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* v = x.data<T>();
    auto compare = [&](int64_t a, int64_t b) {
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t j = 0; j < inner; ++j) {
          const int c =
              compare_values(to_compute(v[(o * count + a) * inner + j]), to_compute(v[(o * count + b) * inner + j]));
          if (c != 0) return c;
        }
      }
      return 0;
    };
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return compare(a, b) < 0; });
    for (size_t i = 0; i < order.size(); ++i) {
      if (i == 0 || compare(order[i - 1], order[i]) != 0) {
        firsts.push_back(order[i]);  // stable: the group's first occurrence
        counts.push_back(0);
      }
      group_of[static_cast<size_t>(order[i])] = static_cast<int64_t>(firsts.size()) - 1;
      ++counts.back();
    }
  });
  const int64_t groups = static_cast<int64_t>(firsts.size());
  std::vector<int64_t> rank(static_cast<size_t>(groups));  // group -> position in Y
  std::iota(rank.begin(), rank.end(), 0);
  if (!sorted) {
    std::vector<int64_t> by_first(static_cast<size_t>(groups));
    std::iota(by_first.begin(), by_first.end(), 0);
    std::sort(by_first.begin(), by_first.end(),
              [&](int64_t a, int64_t b) { return firsts[static_cast<size_t>(a)] < firsts[static_cast<size_t>(b)]; });
    for (int64_t p = 0; p < groups; ++p) rank[static_cast<size_t>(by_first[static_cast<size_t>(p)])] = p;
  }
  std::vector<int64_t> out_first(static_cast<size_t>(groups)), out_count(out_first.size());
  for (int64_t g = 0; g < groups; ++g) {
    out_first[static_cast<size_t>(rank[static_cast<size_t>(g)])] = firsts[static_cast<size_t>(g)];
    out_count[static_cast<size_t>(rank[static_cast<size_t>(g)])] = counts[static_cast<size_t>(g)];
  }
  std::vector<int64_t> inverse(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    inverse[static_cast<size_t>(i)] = rank[static_cast<size_t>(group_of[static_cast<size_t>(i)])];

  Shape y_shape = {groups};
  if (has_axis) {
    y_shape = x.shape();
    y_shape[axis] = groups;
  }
  Tensor y = take_slices(ctx, x, y_shape, outer, count, inner, out_first);
  ctx.set_output(0, std::move(y));
  ctx.set_output(1, Tensor::from_vector(out_first, {groups}));
  ctx.set_output(2, Tensor::from_vector(inverse, {count}));
  ctx.set_output(3, Tensor::from_vector(out_count, {groups}));
}

void compress(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& cond = ctx.input(1);
  if (cond.rank() != 1) ctx.fail("condition " + cond.describe() + " must be 1-D");
  const bool has_axis = ctx.node.has_attr("axis");
  int64_t outer = 1, count = x.numel(), inner = 1;
  size_t axis = 0;
  if (has_axis) {
    axis = static_cast<size_t>(normalize_axis(ctx, ctx.node.attr_int("axis", 0), x.rank()));
    outer = shape_product(x.shape(), 0, axis);
    count = x.shape()[axis];
    inner = shape_product(x.shape(), axis + 1, x.shape().size());
  }
  if (cond.dim(0) > count) {
    ctx.fail("condition " + cond.describe() + " is longer than the " + std::to_string(count) +
             " entries it selects from");
  }
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < cond.dim(0); ++i) {
    if (cond.get_as_double(i) != 0) keep.push_back(i);
  }
  const int64_t kept = static_cast<int64_t>(keep.size());
  Shape y_shape = {kept};
  if (has_axis) {
    y_shape = x.shape();
    y_shape[axis] = kept;
  }
  ctx.set_output(0, take_slices(ctx, x, y_shape, outer, count, inner, keep));
}

void reverse_sequence(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& lens = ctx.input(1);
  const int64_t batch_axis = ctx.node.attr_int("batch_axis", 1), time_axis = ctx.node.attr_int("time_axis", 0);
  if (x.rank() < 2) ctx.fail("input " + x.describe() + " needs rank >= 2");
  if (!((batch_axis == 0 && time_axis == 1) || (batch_axis == 1 && time_axis == 0))) {
    ctx.fail("batch_axis and time_axis must be 0 and 1 in some order, got " + std::to_string(batch_axis) + " and " +
             std::to_string(time_axis));
  }
  const int64_t batch = x.dim(static_cast<int>(batch_axis)), steps = x.dim(static_cast<int>(time_axis));
  if (lens.rank() != 1 || lens.dim(0) != batch) {
    ctx.fail("sequence_lens " + lens.describe() + " must be [" + std::to_string(batch) + "]");
  }
  const size_t run = static_cast<size_t>(shape_product(x.shape(), 2, x.shape().size())) * element_bytes(ctx, x);
  Tensor y(x.dtype(), x.shape());
  const auto* src = static_cast<const std::byte*>(x.raw());
  auto* dst = static_cast<std::byte*>(y.raw());
  auto offset = [&](int64_t b, int64_t t) {
    const int64_t row = batch_axis == 0 ? b * steps + t : t * batch + b;
    return static_cast<size_t>(row) * run;
  };
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = lens.get_as_int64(b);
    if (len < 0 || len > steps) {
      ctx.fail("sequence_lens[" + std::to_string(b) + "] = " + std::to_string(len) + " is not in [0, " +
               std::to_string(steps) + "]");
    }
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t from = t < len ? len - 1 - t : t;
      std::memcpy(dst + offset(b, t), src + offset(b, from), run);
    }
  }
  ctx.set_output(0, std::move(y));
}

constexpr OpDef kSelectOps[] = {
    {"Unique", "", unique},
    {"Compress", "", compress},
    {"ReverseSequence", "", reverse_sequence},
};

}  // namespace

std::span<const OpDef> select_ops() { return kSelectOps; }

}  // namespace kvant
