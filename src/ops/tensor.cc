// Data-movement operators that rearrange or copy a tensor's bytes without
// arithmetic (Reshape, Flatten, Transpose, Concat, Split, Squeeze, Unsqueeze,
// Expand, Tile, Identity, Dropout in inference, Trilu, Constant, EyeLike) plus
// CumSum. Byte movers work for every dtype by element size (strided_copy.h).
//
// Opset changes handled here:
//   Reshape   shape: attribute before 5, input from 5; allowzero from 14.
//   Split     split: attribute before 13, input from 13; num_outputs from 18
//             (chunks of ceil(dim / n), the last one smaller).
//   Squeeze/Unsqueeze  axes: attribute before 13, input from 13.
//   Dropout   ratio attribute before 12; ratio and training_mode inputs from
//             12; mask has the input's type before 10, bool from 10.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/strided_copy.h"

namespace kvant {

namespace {

std::string ints_to_string(const std::vector<int64_t>& v) { return shape_to_string(v); }

// normalize_axis for an axis that must index an existing dim (rank >= 1).
size_t dim_axis(const KernelContext& ctx, int64_t axis, const Tensor& x) {
  if (x.rank() == 0) ctx.fail("input must have rank >= 1, got " + x.describe());
  return static_cast<size_t>(normalize_axis(ctx, axis, x.rank()));
}

}  // namespace

Shape concat_shape(const KernelContext& ctx) {
  if (!ctx.has_input(0)) ctx.fail("needs at least one input");
  const Tensor& first = ctx.input(0);
  const int64_t rank = first.rank();
  if (!ctx.node.has_attr("axis")) ctx.fail("attribute 'axis' is required");
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", 0), first);
  Shape out_shape = first.shape();
  out_shape[axis] = 0;
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor& t = ctx.input(i);
    if (t.dtype() != first.dtype() || t.rank() != rank) {
      ctx.fail("input " + std::to_string(i) + " " + t.describe() + " does not match input 0 " + first.describe());
    }
    for (size_t d = 0; d < static_cast<size_t>(rank); ++d) {
      if (d != axis && t.shape()[d] != first.shape()[d]) {
        ctx.fail("input " + std::to_string(i) + " " + t.describe() + " differs from input 0 " + first.describe() +
                 " outside axis " + std::to_string(axis));
      }
    }
    out_shape[axis] += t.shape()[axis];
  }
  element_size(ctx, first.dtype());  // sub-byte types are unsupported
  return out_shape;
}

void concat_into(const KernelContext& ctx, Tensor& y) {
  const Shape& out_shape = y.shape();
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", 0), ctx.input(0));
  const size_t es = element_size(ctx, y.dtype());
  const int64_t outer = shape_product(out_shape, 0, axis);
  const auto inner = static_cast<size_t>(shape_product(out_shape, axis + 1, out_shape.size())) * es;
  const size_t out_row = static_cast<size_t>(out_shape[axis]) * inner;
  size_t offset = 0;  // bytes into each output row
  for (size_t i = 0; i < ctx.num_inputs(); ++i) {
    const Tensor& t = ctx.input(i);
    const size_t row = static_cast<size_t>(t.shape()[axis]) * inner;
    const auto* src = static_cast<const std::byte*>(t.raw());
    auto* dst = static_cast<std::byte*>(y.raw()) + offset;
    if (row > 0) {
      for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * out_row, src + o * row, row);
    }
    offset += row;
  }
}

std::vector<int64_t> split_sizes(const KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", 0), x);
  const int64_t dim = x.shape()[axis];
  const size_t num_outputs = ctx.node.outputs.size();
  std::vector<int64_t> sizes;
  if (ctx.opset < 13) {
    sizes = ctx.node.attr_ints("split");
  } else if (ctx.has_input(1)) {
    sizes = ctx.input(1).to_int64_vector();
  }
  if (!sizes.empty()) {
    if (sizes.size() != num_outputs) {
      ctx.fail("split " + ints_to_string(sizes) + " has " + std::to_string(sizes.size()) + " entries for " +
               std::to_string(num_outputs) + " outputs");
    }
    int64_t total = 0;
    for (int64_t s : sizes) {
      if (s < 0 || s > dim)
        ctx.fail("split " + ints_to_string(sizes) + " has a size outside [0, " + std::to_string(dim) + "]");
      total += s;
    }
    if (total != dim) ctx.fail("split " + ints_to_string(sizes) + " does not sum to dim " + std::to_string(dim));
  } else if (ctx.opset >= 18 && ctx.node.has_attr("num_outputs")) {
    const int64_t n = ctx.node.attr_int("num_outputs", 0);
    if (n <= 0 || static_cast<size_t>(n) != num_outputs) {
      ctx.fail("num_outputs " + std::to_string(n) + " does not match the node's " + std::to_string(num_outputs) +
               " outputs");
    }
    const int64_t chunk = (dim + n - 1) / n;
    for (int64_t i = 0; i < n; ++i) sizes.push_back(std::max<int64_t>(0, std::min(chunk, dim - i * chunk)));
    if (chunk * (n - 1) > dim)
      ctx.fail("cannot split dim " + std::to_string(dim) + " into " + std::to_string(n) + " chunks");
  } else {
    if (num_outputs == 0 || dim % static_cast<int64_t>(num_outputs) != 0) {
      ctx.fail("dim " + std::to_string(dim) + " does not split evenly into " + std::to_string(num_outputs) +
               " outputs");
    }
    sizes.assign(num_outputs, dim / static_cast<int64_t>(num_outputs));
  }
  element_size(ctx, x.dtype());  // sub-byte types are unsupported
  return sizes;
}

void split_into(const KernelContext& ctx, const std::vector<int64_t>& sizes, std::span<Tensor* const> outs) {
  const Tensor& x = ctx.input(0);
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", 0), x);
  const int64_t dim = x.shape()[axis];
  const size_t es = element_size(ctx, x.dtype());
  const int64_t outer = shape_product(x.shape(), 0, axis);
  const auto inner = static_cast<size_t>(shape_product(x.shape(), axis + 1, x.shape().size())) * es;
  const size_t in_row = static_cast<size_t>(dim) * inner;
  size_t offset = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const size_t row = static_cast<size_t>(sizes[i]) * inner;
    if (i < outs.size() && outs[i] != nullptr && row > 0) {
      auto* dst = static_cast<std::byte*>(outs[i]->raw());
      const auto* src = static_cast<const std::byte*>(x.raw()) + offset;
      for (int64_t o = 0; o < outer; ++o) std::memcpy(dst + o * row, src + o * in_row, row);
    }
    offset += row;
  }
}

// Expand: numpy broadcast of x against the shape input (either side may be 1).
Shape expand_shape(const KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& s = ctx.input(1);
  if (s.rank() != 1) ctx.fail("shape input must be 1-D, got " + s.describe());
  const Shape target = s.to_int64_vector();
  for (int64_t d : target) {
    if (d < 0) ctx.fail("shape " + ints_to_string(target) + " has a negative dim");
  }
  return broadcast_shapes(ctx, x.shape(), target);
}

void expand_into(const KernelContext& ctx, Tensor& y) {
  const Tensor& x = ctx.input(0);
  strided_copy(static_cast<std::byte*>(y.raw()), static_cast<const std::byte*>(x.raw()), y.shape(),
               broadcast_strides(x.shape(), y.shape()), element_size(ctx, x.dtype()));
}

// Tile: output axis d has repeats[d] * dim[d] entries, read as the 2-D index
// (r, j) with source stride (0, stride[d]); strided_copy does the rest.
TileLayout tile_layout(const KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const std::vector<int64_t> repeats = ctx.input(1).to_int64_vector();
  if (repeats.size() != x.shape().size()) {
    ctx.fail("repeats " + ints_to_string(repeats) + " must have one entry per dim of " + x.describe());
  }
  const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
  TileLayout t;
  for (size_t d = 0; d < repeats.size(); ++d) {
    int64_t size = 0;
    if (repeats[d] < 0 || __builtin_mul_overflow(repeats[d], x.shape()[d], &size)) {
      ctx.fail("repeats " + ints_to_string(repeats) + " has a negative or too large entry");
    }
    t.out_shape.push_back(size);
    t.view_shape.insert(t.view_shape.end(), {repeats[d], x.shape()[d]});
    t.view_strides.insert(t.view_strides.end(), {0, in_strides[d]});
  }
  return t;
}

void tile_into(const KernelContext& ctx, const TileLayout& layout, Tensor& y) {
  const Tensor& x = ctx.input(0);
  strided_copy(static_cast<std::byte*>(y.raw()), static_cast<const std::byte*>(x.raw()), layout.view_shape,
               layout.view_strides, element_size(ctx, x.dtype()));
}

namespace {

// Reshape: 0 copies the input dim (unless allowzero), -1 is inferred.
void reshape(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  std::vector<int64_t> spec;
  if (ctx.opset < 5) {
    if (!ctx.node.has_attr("shape")) ctx.fail("attribute 'shape' is required before opset 5");
    spec = ctx.node.attr_ints("shape");
  } else {
    const Tensor& s = ctx.input(1);
    if (s.rank() != 1) ctx.fail("shape input must be 1-D, got " + s.describe());
    spec = s.to_int64_vector();
  }
  const bool allow_zero = ctx.node.attr_int("allowzero", 0) != 0;
  Shape out(spec.size());
  int inferred = -1;
  int64_t known = 1;
  for (size_t i = 0; i < spec.size(); ++i) {
    int64_t d = spec[i];
    if (d == -1) {
      if (inferred >= 0) ctx.fail("shape " + ints_to_string(spec) + " has more than one -1");
      inferred = static_cast<int>(i);
      continue;
    }
    if (d < -1) ctx.fail("shape " + ints_to_string(spec) + " has a negative dimension");
    if (d == 0 && !allow_zero) {
      if (i >= x.shape().size()) {
        ctx.fail("shape " + ints_to_string(spec) + " copies dim " + std::to_string(i) + " (0) but the input " +
                 x.describe() + " has no such dim");
      }
      d = x.shape()[i];
    }
    out[i] = d;
    if (__builtin_mul_overflow(known, d, &known)) ctx.fail("shape " + ints_to_string(spec) + " overflows");
  }
  if (inferred >= 0) {
    if (known == 0 || x.numel() % known != 0) {
      ctx.fail("cannot infer the -1 dim of shape " + ints_to_string(spec) + " for input " + x.describe());
    }
    out[static_cast<size_t>(inferred)] = x.numel() / known;
  } else if (known != x.numel()) {
    ctx.fail("cannot reshape " + x.describe() + " to " + shape_to_string(out));
  }
  ctx.set_output(0, x.reshaped(out));
}

void flatten(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  int64_t axis = ctx.node.attr_int("axis", 1);
  if (axis < -rank || axis > rank) ctx.fail("axis " + std::to_string(axis) + " is out of range for " + x.describe());
  if (axis < 0) axis += rank;
  const auto a = static_cast<size_t>(axis);
  ctx.set_output(0, x.reshaped({shape_product(x.shape(), 0, a), shape_product(x.shape(), a, x.shape().size())}));
}

void transpose(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const size_t rank = x.shape().size();
  std::vector<int64_t> perm = ctx.node.attr_ints("perm");
  if (!ctx.node.has_attr("perm")) {
    perm.resize(rank);
    for (size_t i = 0; i < rank; ++i) perm[i] = static_cast<int64_t>(rank - 1 - i);
  }
  if (perm.size() != rank) ctx.fail("perm " + ints_to_string(perm) + " does not match input " + x.describe());
  std::vector<bool> seen(rank, false);
  for (int64_t& p : perm) {
    p = normalize_axis(ctx, p, static_cast<int64_t>(rank));
    if (seen[static_cast<size_t>(p)]) ctx.fail("perm " + ints_to_string(perm) + " repeats an axis");
    seen[static_cast<size_t>(p)] = true;
  }
  const size_t es = element_size(ctx, x.dtype());
  const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
  Shape out_shape(rank);
  std::vector<int64_t> strides(rank);
  for (size_t i = 0; i < rank; ++i) {
    out_shape[i] = x.shape()[static_cast<size_t>(perm[i])];
    strides[i] = in_strides[static_cast<size_t>(perm[i])];
  }
  Tensor y(x.dtype(), out_shape);
  strided_copy(static_cast<std::byte*>(y.raw()), static_cast<const std::byte*>(x.raw()), out_shape, strides, es);
  ctx.set_output(0, std::move(y));
}

void concat(KernelContext& ctx) {
  const Shape out_shape = concat_shape(ctx);
  Tensor y(ctx.input(0).dtype(), out_shape);
  concat_into(ctx, y);
  ctx.set_output(0, std::move(y));
}

void split(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const size_t axis = dim_axis(ctx, ctx.node.attr_int("axis", 0), x);
  const std::vector<int64_t> sizes = split_sizes(ctx);
  std::vector<Tensor> ys(sizes.size());
  std::vector<Tensor*> outs(sizes.size(), nullptr);
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (!ctx.wants_output(i)) continue;
    Shape shape = x.shape();
    shape[axis] = sizes[i];
    ys[i] = Tensor(x.dtype(), shape);
    outs[i] = &ys[i];
  }
  split_into(ctx, sizes, outs);
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (outs[i] != nullptr) ctx.set_output(i, std::move(ys[i]));
  }
}

// Axes of Squeeze/Unsqueeze: attribute before opset 13, optional input after.
std::vector<int64_t> squeeze_axes(const KernelContext& ctx) {
  if (ctx.opset < 13) return ctx.node.attr_ints("axes");
  return ctx.has_input(1) ? ctx.input(1).to_int64_vector() : std::vector<int64_t>{};
}

void squeeze(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const std::vector<int64_t> axes = squeeze_axes(ctx);
  std::vector<bool> drop(x.shape().size(), false);
  for (int64_t a : axes) {
    const size_t d = dim_axis(ctx, a, x);
    if (x.shape()[d] != 1) ctx.fail("cannot squeeze axis " + std::to_string(a) + " of " + x.describe() + ": not 1");
    drop[d] = true;
  }
  Shape out;
  for (size_t d = 0; d < x.shape().size(); ++d) {
    if (axes.empty() ? x.shape()[d] != 1 : !drop[d]) out.push_back(x.shape()[d]);
  }
  ctx.set_output(0, x.reshaped(out));
}

void unsqueeze(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const std::vector<int64_t> axes = squeeze_axes(ctx);
  const auto out_rank = static_cast<int64_t>(x.shape().size() + axes.size());
  std::vector<bool> inserted(static_cast<size_t>(out_rank), false);
  for (int64_t a : axes) {
    const auto d = static_cast<size_t>(normalize_axis(ctx, a, out_rank));
    if (inserted[d]) ctx.fail("axes " + ints_to_string(axes) + " repeat an axis");
    inserted[d] = true;
  }
  Shape out;
  size_t next = 0;
  for (size_t d = 0; d < inserted.size(); ++d) out.push_back(inserted[d] ? 1 : x.shape()[next++]);
  ctx.set_output(0, x.reshaped(out));
}

void expand(KernelContext& ctx) {
  Tensor y(ctx.input(0).dtype(), expand_shape(ctx));
  expand_into(ctx, y);
  ctx.set_output(0, std::move(y));
}

void tile(KernelContext& ctx) {
  Tensor y(ctx.input(0).dtype(), tile_layout(ctx).out_shape);
  tile_into(ctx, tile_layout(ctx), y);
  ctx.set_output(0, std::move(y));
}

void identity(KernelContext& ctx) { ctx.set_output(0, ctx.input(0)); }

// A tensor of `shape` whose every element is 1 (true for bool).
Tensor ones(const KernelContext& ctx, DType dtype, const Shape& shape) {
  Tensor t(dtype, shape);
  dispatch<AllTypes>(dtype, ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    std::fill_n(t.data<T>(), t.numel(), from_compute<T>(1));
  });
  return t;
}

// Dropout at inference: y = x, mask all true. Training mode is only accepted
// with ratio 0, where it is the same.
void dropout(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (ctx.opset >= 12 && ctx.has_input(2) && ctx.input(2).numel() > 0 && ctx.input(2).get_as_int64(0) != 0) {
    const double ratio = ctx.has_input(1) ? ctx.input(1).get_as_double(0) : 0.5;
    if (ratio != 0) ctx.unsupported("training_mode = true (random dropout) is not supported");
  }
  if (ctx.opset < 7 && ctx.node.attr_int("is_test", 0) == 0) {
    ctx.unsupported("is_test = 0 (random dropout) is not supported");
  }
  ctx.set_output(0, x);
  if (ctx.wants_output(1)) ctx.set_output(1, ones(ctx, ctx.opset < 10 ? x.dtype() : DType::kBool, x.shape()));
}

// Trilu: keeps element (i, j) of each trailing matrix when j - i >= k (upper)
// or j - i <= k (lower); the rest is 0.
void trilu(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) ctx.fail("input must have rank >= 2, got " + x.describe());
  if (ctx.has_input(1) && ctx.input(1).numel() != 1)
    ctx.fail("k must hold one element, got " + ctx.input(1).describe());
  const int64_t rows = x.shape()[x.shape().size() - 2], cols = x.shape().back();
  // Any |k| beyond rows + cols acts the same; clamping keeps i + k from overflowing.
  const int64_t k =
      std::clamp<int64_t>(ctx.has_input(1) ? ctx.input(1).get_as_int64(0) : 0, -(rows + cols), rows + cols);
  const bool upper = ctx.node.attr_int("upper", 1) != 0;
  const size_t es = element_size(ctx, x.dtype());
  const int64_t batch = rows * cols == 0 ? 0 : x.numel() / (rows * cols);
  Tensor y(x.dtype(), x.shape());
  const auto* src = static_cast<const std::byte*>(x.raw());
  auto* dst = static_cast<std::byte*>(y.raw());
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < rows; ++i) {
      // Columns kept in this row: [begin, end).
      const int64_t begin = upper ? std::clamp<int64_t>(i + k, 0, cols) : 0;
      const int64_t end = upper ? cols : std::clamp<int64_t>(i + k + 1, 0, cols);
      const int64_t row = (b * rows + i) * cols;
      if (end > begin) {
        std::memcpy(dst + (row + begin) * static_cast<int64_t>(es), src + (row + begin) * static_cast<int64_t>(es),
                    static_cast<size_t>(end - begin) * es);
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

// CumSum along `axis`: y[i] = sum_{j <= i} x[j]; exclusive drops x[i] itself,
// reverse sums from the end.
void cumsum(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& axis_t = ctx.input(1);
  if (axis_t.numel() != 1) ctx.fail("axis must be a scalar, got " + axis_t.describe());
  const auto axis = static_cast<size_t>(normalize_axis(ctx, axis_t.get_as_int64(0), x.rank()));
  const bool exclusive = ctx.node.attr_int("exclusive", 0) != 0;
  const bool reverse = ctx.node.attr_int("reverse", 0) != 0;
  const int64_t outer = shape_product(x.shape(), 0, axis);
  const int64_t len = x.rank() == 0 ? 1 : x.shape()[axis];
  const int64_t inner = shape_product(x.shape(), axis + 1, x.shape().size());
  Tensor y(x.dtype(), x.shape());
  dispatch<NumericTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* in = x.data<T>();
    T* out = y.data<T>();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t j = 0; j < inner; ++j) {
        compute_t<T> acc = 0;
        for (int64_t step = 0; step < len; ++step) {
          const int64_t i = reverse ? len - 1 - step : step;
          const int64_t at = (o * len + i) * inner + j;
          if (exclusive) {
            out[at] = from_compute<T>(acc);
            acc += to_compute(in[at]);
          } else {
            acc += to_compute(in[at]);
            out[at] = from_compute<T>(acc);
          }
        }
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

// A Constant node the importer left in the graph (e.g. inside a subgraph).
void constant(KernelContext& ctx) {
  const Node& n = ctx.node;
  if (const Tensor* t = n.attr_tensor("value")) {
    ctx.set_output(0, *t);
  } else if (n.has_attr("value_float")) {
    ctx.set_output(0, Tensor::scalar<float>(n.attr_float("value_float", 0)));
  } else if (n.has_attr("value_int")) {
    ctx.set_output(0, Tensor::scalar<int64_t>(n.attr_int("value_int", 0)));
  } else if (n.has_attr("value_floats")) {
    const auto v = n.attr_floats("value_floats");
    ctx.set_output(0, Tensor::from_vector(v, {static_cast<int64_t>(v.size())}));
  } else if (n.has_attr("value_ints")) {
    const auto v = n.attr_ints("value_ints");
    ctx.set_output(0, Tensor::from_vector(v, {static_cast<int64_t>(v.size())}));
  } else if (n.has_attr("sparse_value") || n.has_attr("value_string") || n.has_attr("value_strings")) {
    ctx.unsupported("sparse and string constants are not supported");
  } else {
    ctx.fail("has no value attribute");
  }
}

// EyeLike: ones where j - i == k, zeros elsewhere; dtype attribute or the
// input's type.
void eye_like(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.rank() != 2) ctx.fail("input must be 2-D, got " + x.describe());
  const int64_t code = ctx.node.attr_int("dtype", static_cast<int64_t>(x.dtype()));
  if (!is_known_dtype(static_cast<int32_t>(code))) ctx.fail("unknown dtype " + std::to_string(code));
  const auto dtype = static_cast<DType>(code);
  const int64_t rows = x.shape()[0], cols = x.shape()[1];
  const int64_t k = std::clamp<int64_t>(ctx.node.attr_int("k", 0), -(rows + cols), rows + cols);
  Tensor y(dtype, x.shape());
  dispatch<AllTypes>(dtype, ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = y.data<T>();
    for (int64_t i = 0; i < rows; ++i) {
      if (i + k >= 0 && i + k < cols) out[i * cols + i + k] = from_compute<T>(1);
    }
  });
  ctx.set_output(0, std::move(y));
}

constexpr OpDef kTensorOps[] = {
    {"Reshape", "", reshape}, {"Flatten", "", flatten},   {"Transpose", "", transpose}, {"Concat", "", concat},
    {"Split", "", split},     {"Squeeze", "", squeeze},   {"Unsqueeze", "", unsqueeze}, {"Expand", "", expand},
    {"Tile", "", tile},       {"Identity", "", identity}, {"Dropout", "", dropout},     {"Trilu", "", trilu},
    {"CumSum", "", cumsum},   {"Constant", "", constant}, {"EyeLike", "", eye_like},
};

}  // namespace

std::span<const OpDef> tensor_ops() { return kTensorOps; }

}  // namespace kvant
