// Pooling reference kernels: MaxPool, AveragePool, LpPool and their Global
// forms, over X [N, C, d1..dk] with k = 1..3.
//
// For each output position o the window is the input positions
//   i = o * stride - pad_begin + p * dilation, p in [0, kernel)
// (window geometry and output sizes: WindowGeometry in op_util.h).
//   MaxPool:     Y = max over in-range i. Indices (optional) = flat index of the
//                max into X, (n * C + c) * prod(d) + spatial offset; the spatial
//                offset is row-major, or column-major with storage_order = 1.
//   AveragePool: Y = sum over in-range i / divisor; divisor = in-range count, or
//                with count_include_pad the count inside the padded extent
//                [-pad_begin, in + pad_end) (ceil_mode overhang never counts).
//   LpPool:      Y = (sum over in-range i of |x|^p)^(1/p), padding counts as 0.
// Global*: one window covering every spatial position, output [N, C, 1, .., 1].
// MaxUnpool: the inverse scatter of MaxPool's indices (see max_unpool).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/strided_copy.h"
#include "ops/validate.h"

namespace kvant {

namespace {

enum class PoolKind { kMax, kAverage, kLp };

void check_pool_input(const KernelContext& ctx, const Tensor& x) {
  if (x.rank() < 3) ctx.fail("input X " + x.describe() + " needs rank >= 3 (N, C, spatial...)");
  if (x.rank() > 5) ctx.unsupported("pooling over more than 3 spatial dims is not supported");
}

WindowGeometry pool_geometry(const KernelContext& ctx, const Tensor& x) {
  check_pool_input(ctx, x);
  if (!ctx.node.has_attr("kernel_shape")) ctx.fail("attribute kernel_shape is required");
  const Shape in(x.shape().begin() + 2, x.shape().end());
  const bool ceil_mode = ctx.node.attr_int("ceil_mode", 0) != 0;
  return window_geometry(ctx, in, ctx.node.attr_ints("kernel_shape"), ceil_mode);
}

Shape pool_output_shape(const Tensor& x, const WindowGeometry& g) {
  Shape out = {x.dim(0), x.dim(1)};
  out.insert(out.end(), g.out.begin(), g.out.end());
  return out;
}

template <typename T>
void run_pool(KernelContext& ctx, PoolKind kind, TypeTag<T>) {
  using C = compute_t<T>;
  using Acc = std::conditional_t<std::is_floating_point_v<C>, C, double>;
  const Tensor& x = ctx.input(0);
  WindowGeometry g = pool_geometry(ctx, x);
  const Shape out_shape = pool_output_shape(x, g);
  pad_geometry_to_rank(g, 3);
  const bool count_include_pad = ctx.node.attr_int("count_include_pad", 0) != 0;
  const int64_t p = ctx.node.attr_int("p", 2);
  if (kind == PoolKind::kLp && p < 1) ctx.fail("p must be >= 1");
  const bool column_major = ctx.node.attr_int("storage_order", 0) != 0;
  const bool want_indices = kind == PoolKind::kMax && ctx.wants_output(1);

  const int64_t planes = x.dim(0) * x.dim(1);
  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
  Tensor y(x.dtype(), out_shape);
  Tensor indices;
  if (want_indices) indices = Tensor(DType::kInt64, out_shape);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  int64_t* id_out = want_indices ? indices.data<int64_t>() : nullptr;

  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* xp = xd + plane * in_plane;
    int64_t o = plane * out_plane;
    for (int64_t od = 0; od < g.out[0]; ++od) {
      for (int64_t oh = 0; oh < g.out[1]; ++oh) {
        for (int64_t ow = 0; ow < g.out[2]; ++ow, ++o) {
          const int64_t start[3] = {od * g.strides[0] - g.pads_begin[0], oh * g.strides[1] - g.pads_begin[1],
                                    ow * g.strides[2] - g.pads_begin[2]};
          C best = std::numeric_limits<C>::lowest();
          if constexpr (std::numeric_limits<C>::has_infinity) best = -std::numeric_limits<C>::infinity();
          int64_t best_index = -1;
          Acc sum = 0;
          int64_t valid = 0, padded = 0;
          for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
            const int64_t id = start[0] + kd * g.dilations[0];
            const bool in_pad_d = id >= -g.pads_begin[0] && id < g.in[0] + g.pads_end[0];
            for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
              const int64_t ih = start[1] + kh * g.dilations[1];
              const bool in_pad_h = ih >= -g.pads_begin[1] && ih < g.in[1] + g.pads_end[1];
              for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
                const int64_t iw = start[2] + kw * g.dilations[2];
                if (in_pad_d && in_pad_h && iw >= -g.pads_begin[2] && iw < g.in[2] + g.pads_end[2]) ++padded;
                if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1] || iw < 0 || iw >= g.in[2]) continue;
                ++valid;
                const int64_t offset = (id * g.in[1] + ih) * g.in[2] + iw;
                const C v = to_compute(xp[offset]);
                if (kind == PoolKind::kMax) {
                  if (v > best || best_index < 0) {
                    best = v;
                    best_index = column_major ? id + (ih + iw * g.in[1]) * g.in[0] : offset;
                  }
                } else if (kind == PoolKind::kAverage) {
                  sum += static_cast<Acc>(v);
                } else {
                  sum += std::pow(std::fabs(static_cast<Acc>(v)), static_cast<Acc>(p));
                }
              }
            }
          }
          C result;
          if (kind == PoolKind::kMax) {
            result = best;
            if (id_out) id_out[o] = plane * in_plane + std::max<int64_t>(best_index, 0);
          } else if (kind == PoolKind::kAverage) {
            const int64_t divisor = count_include_pad ? padded : valid;
            result = static_cast<C>(divisor > 0 ? sum / static_cast<Acc>(divisor) : Acc(0));
          } else {
            result = static_cast<C>(std::pow(sum, Acc(1) / static_cast<Acc>(p)));
          }
          yd[o] = from_compute<T>(result);
        }
      }
    }
  }
  ctx.set_output(0, std::move(y));
  if (want_indices) ctx.set_output(1, std::move(indices));
}

void max_pool(KernelContext& ctx) {
  dispatch<NumericTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_pool(ctx, PoolKind::kMax, tag); });
}
void average_pool(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_pool(ctx, PoolKind::kAverage, tag); });
}
void lp_pool(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_pool(ctx, PoolKind::kLp, tag); });
}

template <typename T>
void run_global_pool(KernelContext& ctx, PoolKind kind, TypeTag<T>) {
  using C = compute_t<T>;
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) ctx.fail("input X " + x.describe() + " needs rank >= 2 (N, C, spatial...)");
  Shape out_shape = x.shape();
  std::fill(out_shape.begin() + 2, out_shape.end(), 1);
  const int64_t planes = x.dim(0) * x.dim(1);
  const int64_t plane_size = planes == 0 ? 0 : x.numel() / planes;
  const double p = static_cast<double>(ctx.node.attr_int("p", 2));
  Tensor y(x.dtype(), out_shape);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  for (int64_t plane = 0; plane < planes; ++plane) {
    const T* xp = xd + plane * plane_size;
    double acc = kind == PoolKind::kMax ? -std::numeric_limits<double>::infinity() : 0.0;
    for (int64_t i = 0; i < plane_size; ++i) {
      const double v = static_cast<double>(to_compute(xp[i]));
      if (kind == PoolKind::kMax) {
        acc = std::max(acc, v);
      } else if (kind == PoolKind::kAverage) {
        acc += v;
      } else {
        acc += std::pow(std::fabs(v), p);
      }
    }
    if (kind == PoolKind::kAverage) acc /= static_cast<double>(plane_size);
    if (kind == PoolKind::kLp) acc = std::pow(acc, 1.0 / p);
    yd[plane] = from_compute<T>(static_cast<C>(acc));
  }
  ctx.set_output(0, std::move(y));
}

void global_average_pool(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_global_pool(ctx, PoolKind::kAverage, tag); });
}
void global_max_pool(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_global_pool(ctx, PoolKind::kMax, tag); });
}
void global_lp_pool(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_global_pool(ctx, PoolKind::kLp, tag); });
}

// MaxUnpool(X, I, output_shape?): zeros, with X[i] at the position I[i] (a
// flat index, as MaxPool's Indices output) of the unpooled shape, whose
// spatial dims are (in - 1) * stride + kernel - pad_begin - pad_end; an
// output_shape at least that large keeps each value's coordinates.
void max_unpool(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& indices = ctx.input(1);
  check_pool_input(ctx, x);
  if (indices.shape() != x.shape()) ctx.fail("indices " + indices.describe() + " must have X's shape " + x.describe());
  const size_t spatial = x.shape().size() - 2;
  const std::vector<int64_t> kernel = ctx.node.attr_ints("kernel_shape");
  const std::vector<int64_t> strides = ctx.node.attr_ints("strides", std::vector<int64_t>(spatial, 1));
  const std::vector<int64_t> pads = ctx.node.attr_ints("pads", std::vector<int64_t>(2 * spatial, 0));
  if (kernel.size() != spatial || strides.size() != spatial || pads.size() != 2 * spatial) {
    ctx.fail("kernel_shape, strides and pads must have " + std::to_string(spatial) + ", " + std::to_string(spatial) +
             " and " + std::to_string(2 * spatial) + " values for X " + x.describe());
  }
  Shape unpooled = {x.dim(0), x.dim(1)};
  for (size_t d = 0; d < spatial; ++d) {
    unpooled.push_back((x.shape()[d + 2] - 1) * strides[d] + kernel[d] - pads[d] - pads[d + spatial]);
  }
  Shape out = unpooled;
  if (ctx.has_input(2) && ctx.input(2).numel() > 0) {
    out = ctx.input(2).to_int64_vector();
    if (out.size() != x.shape().size() || out[0] != x.dim(0) || out[1] != x.dim(1)) {
      ctx.fail("output_shape " + ctx.input(2).describe() + " must be [N, C, spatial..] for X " + x.describe());
    }
  }
  for (size_t d = 0; d < out.size(); ++d) {
    if (unpooled[d] < 0 || unpooled[d] > kMaxWindowValue || out[d] < 0 || out[d] > kMaxWindowValue) {
      ctx.fail("output dim " + std::to_string(d) + " is out of range");
    }
  }
  Tensor y(x.dtype(), out);
  std::memset(y.raw(), 0, y.nbytes());
  const size_t bytes = static_cast<size_t>(dtype_bits(x.dtype()) / 8);
  if (bytes == 0) ctx.unsupported(std::string("input type ") + dtype_name(x.dtype()) + " is not supported");
  const auto* src = static_cast<const std::byte*>(x.raw());
  auto* dst = static_cast<std::byte*>(y.raw());
  // An index counts positions of the unpooled shape; with output_shape the
  // value keeps its coordinates there (the extra rows/columns stay zero).
  const int64_t unpooled_numel = shape_product(unpooled, 0, unpooled.size());
  for (int64_t i = 0; i < x.numel(); ++i) {
    int64_t rest = indices.get_as_int64(i);
    if (rest < 0 || rest >= unpooled_numel) {
      ctx.fail("index " + std::to_string(rest) + " is outside the unpooled output of " +
               std::to_string(unpooled_numel) + " values");
    }
    int64_t at = 0, stride = 1;
    for (size_t d = out.size(); d-- > 0;) {
      const int64_t coord = rest % unpooled[d];
      rest /= unpooled[d];
      if (coord >= out[d]) ctx.fail("output_shape " + ctx.input(2).describe() + " is smaller than the unpooled shape");
      at += coord * stride;
      stride *= out[d];
    }
    std::memcpy(dst + static_cast<size_t>(at) * bytes, src + static_cast<size_t>(i) * bytes, bytes);
  }
  ctx.set_output(0, std::move(y));
}

}  // namespace

std::span<const OpDef> pool_ops() {
  static constexpr OpDef kOps[] = {
      {"MaxPool", "", max_pool},
      {"AveragePool", "", average_pool},
      {"LpPool", "", lp_pool},
      {"GlobalAveragePool", "", global_average_pool},
      {"GlobalMaxPool", "", global_max_pool},
      {"GlobalLpPool", "", global_lp_pool},
      {"MaxUnpool", "", max_unpool},
  };
  return kOps;
}

}  // namespace kvant
