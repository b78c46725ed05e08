// Normalization reference kernels.
//
// BatchNormalization (inference): Y = (X - mean[c]) / sqrt(var[c] + eps) * scale[c] + B[c], c = dim 1.
//   training_mode = 1 (opset 14+): mean/var are the batch statistics over all dims but 1
//   (population variance), and the outputs running_mean = mean_in * momentum + batch_mean * (1 - momentum),
//   likewise running_var. Opsets 7-8 with spatial = 0 take per-(c, d1..dk) statistics.
// LayerNormalization: over dims [axis, rank): Y = (X - mean) * inv_std * scale + B, inv_std =
//   1 / sqrt(var + eps); optional outputs Mean and InvStdDev keep X's shape with those dims set to 1.
// InstanceNormalization: per (n, c) over the spatial dims, then * scale[c] + B[c].
// GroupNormalization (opset 18, 21): X [N, C, d...] in num_groups groups of C / num_groups channels;
//   per (n, group) over those channels and d...: Y = (X - mean) * inv_std * scale + B, scale and B one value
//   per group (opset 18) or per channel (opset 21). stash_type (21) only names the statistics' precision:
//   they are computed in double here as for the others.
// Softmax / LogSoftmax / Hardmax: opset < 13 views X as 2-D [prod(d0..axis-1), prod(daxis..)]
//   (axis default 1) and works on each row; opset >= 13 works along one axis (default -1).
//   softmax = exp(x - max) / sum exp(x - max); hardmax = 1 at the first maximum, else 0.
// LRN: Y = X / (bias + alpha / size * sum_{c' in [c - floor((size-1)/2), c + ceil((size-1)/2)]} X[c']^2)^beta.
// MeanVarianceNormalization: over `axes` (default [0, 2, 3]): Y = (X - mean) / (sqrt(var) + 1e-9).
// LpNormalization: along axis (default -1), Y = X / ||X||_p, p in {1, 2}.
// Statistics are accumulated in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

int64_t product(const Shape& s, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t i = begin; i < end; ++i) p *= s[i];
  return p;
}

template <typename T>
std::vector<double> to_doubles(const Tensor& t) {
  std::vector<double> out(static_cast<size_t>(t.numel()));
  const T* d = t.data<T>();
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(to_compute(d[i]));
  return out;
}

template <typename T>
Tensor from_doubles(DType dtype, const Shape& shape, const std::vector<double>& values) {
  Tensor t(dtype, shape);
  T* d = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) d[i] = from_compute<T>(static_cast<compute_t<T>>(values[i]));
  return t;
}

// ---- BatchNormalization ----

template <typename T>
void run_batch_norm(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) ctx.fail("input X " + x.describe() + " needs rank >= 2");
  const int64_t channels = x.dim(1);
  const bool per_element = ctx.opset < 9 && ctx.node.attr_int("spatial", 1) == 0;
  const bool training = ctx.opset >= 14 && ctx.node.attr_int("training_mode", 0) != 0;
  if (ctx.opset < 14 && (ctx.wants_output(1) || ctx.wants_output(2))) {
    ctx.unsupported("training-mode outputs (mean, var, saved_mean, saved_var) before opset 14 are not supported");
  }
  // Parameters hold one value per channel (or per (c, d..) with spatial = 0).
  const int64_t params = per_element ? product(x.shape(), 1, x.shape().size()) : channels;
  const int64_t inner = product(x.shape(), 2, x.shape().size());
  std::vector<std::vector<double>> p(4);
  const char* names[4] = {"scale", "B", "mean", "var"};
  for (size_t i = 0; i < 4; ++i) {
    const Tensor& t = ctx.input(i + 1);
    if (t.numel() != params) {
      ctx.fail(std::string(names[i]) + " has shape " + shape_to_string(t.shape()) + "; needs " +
               std::to_string(params) + " values for X " + x.describe());
    }
    dispatch<FloatTypes>(t.dtype(), ctx, [&](auto tag) { p[i] = to_doubles<typename decltype(tag)::type>(t); });
  }
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  const std::vector<double> xv = to_doubles<T>(x);
  const int64_t batch = x.dim(0);
  std::vector<double> mean = p[2], var = p[3];
  if (training) {
    const double count = static_cast<double>(batch * inner);
    for (int64_t c = 0; c < channels; ++c) {
      double s = 0, s2 = 0;
      for (int64_t n = 0; n < batch; ++n) {
        for (int64_t i = 0; i < inner; ++i) s += xv[static_cast<size_t>((n * channels + c) * inner + i)];
      }
      const double m = s / count;
      for (int64_t n = 0; n < batch; ++n) {
        for (int64_t i = 0; i < inner; ++i) {
          const double d = xv[static_cast<size_t>((n * channels + c) * inner + i)] - m;
          s2 += d * d;
        }
      }
      mean[static_cast<size_t>(c)] = m;
      var[static_cast<size_t>(c)] = s2 / count;
    }
  }
  std::vector<double> y(xv.size());
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      for (int64_t i = 0; i < inner; ++i) {
        const size_t k = static_cast<size_t>(per_element ? c * inner + i : c);
        const size_t at = static_cast<size_t>((n * channels + c) * inner + i);
        y[at] = (xv[at] - mean[k]) / std::sqrt(var[k] + eps) * p[0][k] + p[1][k];
      }
    }
  }
  ctx.set_output(0, from_doubles<T>(x.dtype(), x.shape(), y));
  if (training) {
    const double momentum = ctx.node.attr_float("momentum", 0.9f);
    std::vector<double> running_mean(mean.size()), running_var(var.size());
    for (size_t c = 0; c < mean.size(); ++c) {
      running_mean[c] = p[2][c] * momentum + mean[c] * (1 - momentum);
      running_var[c] = p[3][c] * momentum + var[c] * (1 - momentum);
    }
    const Tensor& mean_in = ctx.input(3);
    dispatch<FloatTypes>(mean_in.dtype(), ctx, [&](auto tag) {
      using U = typename decltype(tag)::type;
      ctx.set_output(1, from_doubles<U>(mean_in.dtype(), mean_in.shape(), running_mean));
      ctx.set_output(2, from_doubles<U>(mean_in.dtype(), mean_in.shape(), running_var));
    });
  }
}

void batch_norm(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_batch_norm(ctx, tag); });
}

// ---- LayerNormalization ----

template <typename T>
void run_layer_norm(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const int64_t axis = normalize_axis(ctx, ctx.node.attr_int("axis", -1), x.rank());
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  const int64_t outer = product(x.shape(), 0, static_cast<size_t>(axis));
  const int64_t inner = product(x.shape(), static_cast<size_t>(axis), x.shape().size());
  const Shape norm_shape(x.shape().begin() + axis, x.shape().end());
  // scale and B broadcast unidirectionally to the normalized shape.
  auto param = [&](size_t i) {
    const Tensor& t = ctx.input(i);
    if (t.dtype() != x.dtype()) ctx.fail("scale/B type differs from X's");
    if (t.rank() > static_cast<int>(norm_shape.size()) || broadcast_shapes(ctx, t.shape(), norm_shape) != norm_shape) {
      ctx.fail("input " + std::to_string(i) + " " + t.describe() + " does not broadcast to the normalized shape " +
               shape_to_string(norm_shape));
    }
    const std::vector<double> v = to_doubles<T>(t);
    const std::vector<int64_t> strides = broadcast_strides(t.shape(), norm_shape);
    std::vector<double> full(static_cast<size_t>(inner));
    size_t k = 0;
    const std::vector<int64_t> s[1] = {strides};
    for_each_index(norm_shape, s, [&](const int64_t* off) { full[k++] = v[static_cast<size_t>(off[0])]; });
    return full;
  };
  const std::vector<double> sc = param(1);
  const std::vector<double> bias = ctx.has_input(2) ? param(2) : std::vector<double>(static_cast<size_t>(inner), 0.0);
  (void)scale;
  const std::vector<double> xv = to_doubles<T>(x);
  std::vector<double> y(xv.size()), means(static_cast<size_t>(outer)), inv_stds(static_cast<size_t>(outer));
  for (int64_t o = 0; o < outer; ++o) {
    const double* row = xv.data() + o * inner;
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < inner; ++i) s += row[i];
    const double mean = s / static_cast<double>(inner);
    for (int64_t i = 0; i < inner; ++i) s2 += (row[i] - mean) * (row[i] - mean);
    const double inv_std = 1.0 / std::sqrt(s2 / static_cast<double>(inner) + eps);
    for (int64_t i = 0; i < inner; ++i) {
      y[static_cast<size_t>(o * inner + i)] =
          (row[i] - mean) * inv_std * sc[static_cast<size_t>(i)] + bias[static_cast<size_t>(i)];
    }
    means[static_cast<size_t>(o)] = mean;
    inv_stds[static_cast<size_t>(o)] = inv_std;
  }
  ctx.set_output(0, from_doubles<T>(x.dtype(), x.shape(), y));
  Shape stat_shape = x.shape();
  std::fill(stat_shape.begin() + axis, stat_shape.end(), 1);
  const DType stash = static_cast<DType>(ctx.node.attr_int("stash_type", 1));
  dispatch<FloatTypes>(stash, ctx, [&](auto tag) {
    using U = typename decltype(tag)::type;
    if (ctx.wants_output(1)) ctx.set_output(1, from_doubles<U>(stash, stat_shape, means));
    if (ctx.wants_output(2)) ctx.set_output(2, from_doubles<U>(stash, stat_shape, inv_stds));
  });
}

void layer_norm(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_layer_norm(ctx, tag); });
}

// ---- InstanceNormalization ----

template <typename T>
void run_instance_norm(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 3) ctx.fail("input X " + x.describe() + " needs rank >= 3");
  const int64_t channels = x.dim(1);
  const Tensor& scale = ctx.input(1);
  const Tensor& bias = ctx.input(2);
  if (scale.numel() != channels || bias.numel() != channels || scale.dtype() != x.dtype() ||
      bias.dtype() != x.dtype()) {
    ctx.fail("scale and B must hold " + std::to_string(channels) + " values of X's type");
  }
  const std::vector<double> sc = to_doubles<T>(scale), b = to_doubles<T>(bias), xv = to_doubles<T>(x);
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  const int64_t inner = product(x.shape(), 2, x.shape().size());
  std::vector<double> y(xv.size());
  for (int64_t plane = 0; plane < x.dim(0) * channels; ++plane) {
    const size_t c = static_cast<size_t>(plane % channels);
    const double* row = xv.data() + plane * inner;
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < inner; ++i) s += row[i];
    const double mean = s / static_cast<double>(inner);
    for (int64_t i = 0; i < inner; ++i) s2 += (row[i] - mean) * (row[i] - mean);
    const double inv_std = 1.0 / std::sqrt(s2 / static_cast<double>(inner) + eps);
    for (int64_t i = 0; i < inner; ++i)
      y[static_cast<size_t>(plane * inner + i)] = (row[i] - mean) * inv_std * sc[c] + b[c];
  }
  ctx.set_output(0, from_doubles<T>(x.dtype(), x.shape(), y));
}

void instance_norm(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_instance_norm(ctx, tag); });
}

// ---- GroupNormalization ----

template <typename T>
void run_group_norm(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) ctx.fail("input X " + x.describe() + " needs rank >= 2");
  const int64_t channels = x.dim(1);
  const int64_t groups = ctx.node.attr_int("num_groups", 0);
  if (groups < 1 || channels % groups != 0) {
    ctx.fail("num_groups " + std::to_string(groups) + " must be >= 1 and divide the " + std::to_string(channels) +
             " channels");
  }
  // Opset 21 gives scale and B per channel, opset 18 per group.
  const int64_t per = ctx.opset >= 21 ? channels : groups;
  const Tensor& scale = ctx.input(1);
  const Tensor& bias = ctx.input(2);
  if (scale.numel() != per || bias.numel() != per || scale.dtype() != x.dtype() || bias.dtype() != x.dtype()) {
    ctx.fail("scale and B must hold " + std::to_string(per) + " values of X's type (one per " +
             (ctx.opset >= 21 ? "channel" : "group") + " at opset " + std::to_string(ctx.opset) + "), got " +
             scale.describe() + " and " + bias.describe());
  }
  const std::vector<double> sc = to_doubles<T>(scale), b = to_doubles<T>(bias), xv = to_doubles<T>(x);
  const double eps = ctx.node.attr_float("epsilon", 1e-5f);
  const int64_t spatial = product(x.shape(), 2, x.shape().size());
  const int64_t group_channels = channels / groups;
  const int64_t inner = group_channels * spatial;
  std::vector<double> y(xv.size());
  for (int64_t row = 0; row < x.dim(0) * groups; ++row) {
    const double* r = xv.data() + row * inner;
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < inner; ++i) s += r[i];
    const double mean = s / static_cast<double>(inner);
    for (int64_t i = 0; i < inner; ++i) s2 += (r[i] - mean) * (r[i] - mean);
    const double inv_std = 1.0 / std::sqrt(s2 / static_cast<double>(inner) + eps);
    for (int64_t i = 0; i < inner; ++i) {
      const int64_t c = (row % groups) * group_channels + i / std::max<int64_t>(spatial, 1);
      const auto k = static_cast<size_t>(per == channels ? c : row % groups);
      y[static_cast<size_t>(row * inner + i)] = (r[i] - mean) * inv_std * sc[k] + b[k];
    }
  }
  ctx.set_output(0, from_doubles<T>(x.dtype(), x.shape(), y));
}

void group_norm(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_group_norm(ctx, tag); });
}

// ---- Softmax, LogSoftmax, Hardmax ----

enum class SoftmaxKind { kSoftmax, kLogSoftmax, kHardmax };

template <typename T>
void run_softmax(KernelContext& ctx, SoftmaxKind kind, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  const bool legacy = ctx.opset < 13;
  const int64_t rank = x.rank();
  const int64_t axis = rank == 0 ? 0 : normalize_axis(ctx, ctx.node.attr_int("axis", legacy ? 1 : -1), rank);
  const size_t ax = static_cast<size_t>(axis);
  const int64_t outer = product(x.shape(), 0, ax);
  const int64_t len = legacy ? product(x.shape(), ax, x.shape().size()) : (rank == 0 ? 1 : x.dim(static_cast<int>(ax)));
  const int64_t inner = legacy ? 1 : product(x.shape(), std::min<size_t>(ax + 1, x.shape().size()), x.shape().size());
  const T* xd = x.data<T>();
  Tensor out(x.dtype(), x.shape());
  T* yd = out.data<T>();
  std::vector<double> v(static_cast<size_t>(len));
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      const int64_t base = o * len * inner + in;
      double max_v = -INFINITY;
      int64_t arg = 0;
      for (int64_t i = 0; i < len; ++i) {
        v[static_cast<size_t>(i)] = static_cast<double>(to_compute(xd[base + i * inner]));
        if (v[static_cast<size_t>(i)] > max_v) {
          max_v = v[static_cast<size_t>(i)];
          arg = i;
        }
      }
      if (kind == SoftmaxKind::kHardmax) {
        for (int64_t i = 0; i < len; ++i) yd[base + i * inner] = from_compute<T>(i == arg ? 1.0f : 0.0f);
        continue;
      }
      double sum = 0;
      for (int64_t i = 0; i < len; ++i) sum += std::exp(v[static_cast<size_t>(i)] - max_v);
      const double log_sum = std::log(sum);
      for (int64_t i = 0; i < len; ++i) {
        const double shifted = v[static_cast<size_t>(i)] - max_v;
        const double r = kind == SoftmaxKind::kSoftmax ? std::exp(shifted) / sum : shifted - log_sum;
        yd[base + i * inner] = from_compute<T>(static_cast<compute_t<T>>(r));
      }
    }
  }
  ctx.set_output(0, std::move(out));
}

void softmax(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_softmax(ctx, SoftmaxKind::kSoftmax, tag); });
}
void log_softmax(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_softmax(ctx, SoftmaxKind::kLogSoftmax, tag); });
}
void hardmax(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_softmax(ctx, SoftmaxKind::kHardmax, tag); });
}

// ---- LRN ----

template <typename T>
void run_lrn(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) ctx.fail("input X " + x.describe() + " needs rank >= 2");
  const int64_t size = ctx.node.attr_int("size", 0);
  if (size < 1) ctx.fail("attribute size must be a positive integer");
  const double alpha = ctx.node.attr_float("alpha", 1e-4f), beta = ctx.node.attr_float("beta", 0.75f),
               bias = ctx.node.attr_float("bias", 1.0f);
  const int64_t channels = x.dim(1), inner = product(x.shape(), 2, x.shape().size());
  const int64_t lo_off = (size - 1) / 2, hi_off = size - 1 - lo_off;
  const std::vector<double> xv = to_doubles<T>(x);
  std::vector<double> y(xv.size());
  for (int64_t n = 0; n < x.dim(0); ++n) {
    for (int64_t c = 0; c < channels; ++c) {
      const int64_t c0 = std::max<int64_t>(0, c - lo_off), c1 = std::min(channels - 1, c + hi_off);
      for (int64_t i = 0; i < inner; ++i) {
        double sq = 0;
        for (int64_t cc = c0; cc <= c1; ++cc) {
          const double v = xv[static_cast<size_t>((n * channels + cc) * inner + i)];
          sq += v * v;
        }
        const size_t at = static_cast<size_t>((n * channels + c) * inner + i);
        y[at] = xv[at] / std::pow(bias + alpha / static_cast<double>(size) * sq, beta);
      }
    }
  }
  ctx.set_output(0, from_doubles<T>(x.dtype(), x.shape(), y));
}

void lrn(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_lrn(ctx, tag); });
}

// ---- MeanVarianceNormalization, LpNormalization ----

// Calls fn(offsets of the group's elements) for each group of elements that
// share their coordinates outside `reduce` (a mask over dims).
template <typename Fn>
void for_each_group(const Shape& shape, const std::vector<bool>& reduce, Fn&& fn) {
  Shape kept_shape, red_shape;
  std::vector<int64_t> kept_strides, red_strides;
  const std::vector<int64_t> own = contiguous_strides(shape);
  for (size_t d = 0; d < shape.size(); ++d) {
    (reduce[d] ? red_shape : kept_shape).push_back(shape[d]);
    (reduce[d] ? red_strides : kept_strides).push_back(own[d]);
  }
  std::vector<int64_t> offsets;
  const std::vector<int64_t> ks[1] = {kept_strides}, rs[1] = {red_strides};
  for_each_index(kept_shape, ks, [&](const int64_t* base) {
    offsets.clear();
    for_each_index(red_shape, rs, [&](const int64_t* off) { offsets.push_back(base[0] + off[0]); });
    fn(offsets);
  });
}

template <typename T>
void run_mvn(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  const std::vector<int64_t> axes = ctx.node.attr_ints("axes", {0, 2, 3});
  std::vector<bool> reduce(static_cast<size_t>(x.rank()), false);
  for (int64_t a : axes) reduce[static_cast<size_t>(normalize_axis(ctx, a, x.rank()))] = true;
  const std::vector<double> xv = to_doubles<T>(x);
  std::vector<double> y(xv.size());
  for_each_group(x.shape(), reduce, [&](const std::vector<int64_t>& offs) {
    double s = 0, s2 = 0;
    for (int64_t o : offs) s += xv[static_cast<size_t>(o)];
    const double mean = s / static_cast<double>(offs.size());
    for (int64_t o : offs) s2 += (xv[static_cast<size_t>(o)] - mean) * (xv[static_cast<size_t>(o)] - mean);
    const double std_dev = std::sqrt(s2 / static_cast<double>(offs.size()));
    for (int64_t o : offs) y[static_cast<size_t>(o)] = (xv[static_cast<size_t>(o)] - mean) / (std_dev + 1e-9);
  });
  ctx.set_output(0, from_doubles<T>(x.dtype(), x.shape(), y));
}

void mvn(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_mvn(ctx, tag); });
}

template <typename T>
void run_lp_norm(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  const int64_t axis = normalize_axis(ctx, ctx.node.attr_int("axis", -1), x.rank());
  const int64_t p = ctx.node.attr_int("p", 2);
  if (p != 1 && p != 2) ctx.fail("p must be 1 or 2, got " + std::to_string(p));
  std::vector<bool> reduce(static_cast<size_t>(x.rank()), false);
  reduce[static_cast<size_t>(axis)] = true;
  const std::vector<double> xv = to_doubles<T>(x);
  std::vector<double> y(xv.size());
  for_each_group(x.shape(), reduce, [&](const std::vector<int64_t>& offs) {
    double norm = 0;
    for (int64_t o : offs) {
      const double v = xv[static_cast<size_t>(o)];
      norm += p == 1 ? std::fabs(v) : v * v;
    }
    if (p == 2) norm = std::sqrt(norm);
    for (int64_t o : offs) y[static_cast<size_t>(o)] = xv[static_cast<size_t>(o)] / norm;
  });
  ctx.set_output(0, from_doubles<T>(x.dtype(), x.shape(), y));
}

void lp_norm(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_lp_norm(ctx, tag); });
}

}  // namespace

std::span<const OpDef> norm_ops() {
  static constexpr OpDef kOps[] = {
      {"BatchNormalization", "", batch_norm},
      {"LayerNormalization", "", layer_norm},
      {"InstanceNormalization", "", instance_norm},
      {"GroupNormalization", "", group_norm},
      {"Softmax", "", softmax},
      {"LogSoftmax", "", log_softmax},
      {"Hardmax", "", hardmax},
      {"LRN", "", lrn},
      {"MeanVarianceNormalization", "", mvn},
      {"LpNormalization", "", lp_norm},
  };
  return kOps;
}

}  // namespace kvant
