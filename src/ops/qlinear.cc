// Integer matmul / convolution reference kernels: MatMulInteger, ConvInteger,
// QLinearMatMul, QLinearConv. They are the oracle for the fast integer
// kernels (DESIGN.md §4): plain loops, products of (value - zero_point)
// accumulated in int64 and stored as int32 (wrapping like the int32
// accumulators of the fast kernels would).
//
//   MatMulInteger: y[m, n] = sum_k (a[m, k] - a_zp[m]) * (b[k, n] - b_zp[n])      (int32)
//     a_zp: scalar, or per row of a (M values, or one per batch and row);
//     b_zp: scalar, or per column of b (N values, or one per batch and column).
//     Batch dims broadcast and 1-D operands are promoted as in MatMul.
//   QLinearMatMul: acc as above, then
//     y = saturate(round_half_even(acc * (a_scale[m] * b_scale[n] / y_scale)) + y_zp)
//     with the real multiplier and the product computed in float.
//   ConvInteger: y[n, m, p] = sum_{c, k} (x[n, c, p*stride + k*dilation - pad] - x_zp) * (w[m, c, k] - w_zp[m])
//     padding reads x_zp (so contributes 0); w_zp scalar or per output channel.
//   QLinearConv: acc as ConvInteger (+ int32 bias B[m]), then
//     y = saturate(round_half_even((acc + B[m]) * (x_scale * w_scale[m] / y_scale)) + y_zp)
//     w_scale / w_zp per tensor or per output channel.
// The quantized output type is y_zp's type (uint8 or int8).
#include <algorithm>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/quant_util.h"

namespace kvant {

namespace {

bool is_8bit(DType t) { return t == DType::kUInt8 || t == DType::kInt8; }

void check_8bit(const KernelContext& ctx, const Tensor& t, const char* what) {
  if (!is_8bit(t.dtype())) {
    ctx.unsupported(std::string(what) + " of type " + dtype_name(t.dtype()) + " (only uint8 and int8)");
  }
}

// A float scalar input (scale), checked to be one finite positive value.
float scalar_scale(const KernelContext& ctx, size_t index) {
  const Tensor& s = ctx.input(index);
  if (!is_float(s.dtype()) || s.numel() != 1) {
    ctx.fail("input " + std::to_string(index) + " must be one float scale, got " + s.describe());
  }
  return static_cast<float>(s.get_as_double(0));
}

// ---- matmul ----------------------------------------------------------------

// Shapes of a broadcast batched matmul a[..., M, K] x b[..., K, N].
struct MatMulPlan {
  int64_t m = 1, k = 1, n = 1;
  int64_t a_batches = 1, b_batches = 1;
  std::vector<int64_t> a_batch, b_batch;  // per output batch: the batch of a / b it reads
  Shape out_shape;
};

MatMulPlan plan_matmul(const KernelContext& ctx, const Tensor& a, const Tensor& b) {
  if (a.rank() == 0 || b.rank() == 0) ctx.fail("matmul operands must have rank >= 1");
  MatMulPlan plan;
  Shape as = a.shape(), bs = b.shape();
  const bool a_vec = as.size() == 1, b_vec = bs.size() == 1;
  if (a_vec) as.insert(as.begin(), 1);
  if (b_vec) bs.push_back(1);
  plan.m = as[as.size() - 2];
  plan.k = as.back();
  plan.n = bs.back();
  if (bs[bs.size() - 2] != plan.k) {
    ctx.fail("inner dimensions differ: " + a.describe() + " x " + b.describe());
  }
  const Shape a_b(as.begin(), as.end() - 2), b_b(bs.begin(), bs.end() - 2);
  const Shape out_b = broadcast_shapes(ctx, a_b, b_b);
  for (int64_t d : a_b) plan.a_batches *= d;
  for (int64_t d : b_b) plan.b_batches *= d;
  const std::vector<int64_t> strides[2] = {broadcast_strides(a_b, out_b), broadcast_strides(b_b, out_b)};
  for_each_index(out_b, strides, [&](const int64_t* off) {
    plan.a_batch.push_back(off[0]);
    plan.b_batch.push_back(off[1]);
  });
  if (out_b.empty()) {
    plan.a_batch = {0};
    plan.b_batch = {0};
  }
  plan.out_shape = out_b;
  if (!a_vec) plan.out_shape.push_back(plan.m);
  if (!b_vec) plan.out_shape.push_back(plan.n);
  return plan;
}

// Index of the per-row (a) or per-column (b) parameter for batch `batch` and
// row/column `i`; `count` is M or N. Fails when the shape fits neither form.
int64_t param_index(const KernelContext& ctx, const Tensor* param, int64_t batches, int64_t count, int64_t batch,
                    int64_t i, const char* what) {
  if (param == nullptr || param->numel() == 1) return 0;
  if (param->numel() == count) return i;
  if (param->numel() == batches * count) return batch * count + i;
  ctx.fail(std::string(what) + " has " + std::to_string(param->numel()) + " elements; expected 1, " +
           std::to_string(count) + " or " + std::to_string(batches * count));
}

// acc[batch, m, n] (int64) of (a - a_zp) x (b - b_zp).
std::vector<int64_t> integer_matmul(const KernelContext& ctx, const MatMulPlan& plan, const Tensor& a,
                                    const Tensor* a_zp, const Tensor& b, const Tensor* b_zp) {
  const std::vector<int32_t> av = read_int32(a), bv = read_int32(b);
  const std::vector<int32_t> azp = a_zp ? read_int32(*a_zp) : std::vector<int32_t>{0};
  const std::vector<int32_t> bzp = b_zp ? read_int32(*b_zp) : std::vector<int32_t>{0};
  // Subtract zero points once: a' = a - a_zp[row], b' = b - b_zp[col].
  std::vector<int32_t> a2(av.size()), b2(bv.size());
  for (int64_t bt = 0; bt < plan.a_batches; ++bt) {
    for (int64_t i = 0; i < plan.m; ++i) {
      const int32_t zp =
          azp[static_cast<size_t>(param_index(ctx, a_zp, plan.a_batches, plan.m, bt, i, "a_zero_point"))];
      for (int64_t kk = 0; kk < plan.k; ++kk) {
        const size_t at = static_cast<size_t>((bt * plan.m + i) * plan.k + kk);
        a2[at] = av[at] - zp;
      }
    }
  }
  for (int64_t bt = 0; bt < plan.b_batches; ++bt) {
    for (int64_t j = 0; j < plan.n; ++j) {
      const int32_t zp =
          bzp[static_cast<size_t>(param_index(ctx, b_zp, plan.b_batches, plan.n, bt, j, "b_zero_point"))];
      for (int64_t kk = 0; kk < plan.k; ++kk) {
        const size_t at = static_cast<size_t>((bt * plan.k + kk) * plan.n + j);
        b2[at] = bv[at] - zp;
      }
    }
  }
  const int64_t batches = static_cast<int64_t>(plan.a_batch.size());
  std::vector<int64_t> acc(static_cast<size_t>(batches * plan.m * plan.n), 0);
  for (int64_t bt = 0; bt < batches; ++bt) {
    const int32_t* ap = a2.data() + plan.a_batch[static_cast<size_t>(bt)] * plan.m * plan.k;
    const int32_t* bp = b2.data() + plan.b_batch[static_cast<size_t>(bt)] * plan.k * plan.n;
    int64_t* cp = acc.data() + bt * plan.m * plan.n;
    for (int64_t i = 0; i < plan.m; ++i) {
      for (int64_t kk = 0; kk < plan.k; ++kk) {
        const int64_t av_ik = ap[i * plan.k + kk];
        const int32_t* brow = bp + kk * plan.n;
        for (int64_t j = 0; j < plan.n; ++j) cp[i * plan.n + j] += av_ik * brow[j];
      }
    }
  }
  return acc;
}

void matmul_integer(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  check_8bit(ctx, a, "A");
  check_8bit(ctx, b, "B");
  const Tensor* a_zp = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  const Tensor* b_zp = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  if (a_zp && a_zp->dtype() != a.dtype()) ctx.fail("a_zero_point type differs from A's");
  if (b_zp && b_zp->dtype() != b.dtype()) ctx.fail("b_zero_point type differs from B's");
  const MatMulPlan plan = plan_matmul(ctx, a, b);
  const std::vector<int64_t> acc = integer_matmul(ctx, plan, a, a_zp, b, b_zp);
  Tensor y(DType::kInt32, plan.out_shape);
  int32_t* out = y.data<int32_t>();
  for (size_t i = 0; i < acc.size(); ++i) out[i] = static_cast<int32_t>(acc[i]);
  ctx.set_output(0, std::move(y));
}

void qlinear_matmul(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& a_scale = ctx.input(1);
  const Tensor& a_zp = ctx.input(2);
  const Tensor& b = ctx.input(3);
  const Tensor& b_scale = ctx.input(4);
  const Tensor& b_zp = ctx.input(5);
  const float y_scale = scalar_scale(ctx, 6);
  const Tensor& y_zp = ctx.input(7);
  check_8bit(ctx, a, "a");
  check_8bit(ctx, b, "b");
  check_8bit(ctx, y_zp, "y_zero_point");
  if (a_zp.dtype() != a.dtype() || b_zp.dtype() != b.dtype()) ctx.fail("zero point types must match a and b");
  if (y_zp.numel() != 1) ctx.fail("y_zero_point must be one value, got " + y_zp.describe());
  const MatMulPlan plan = plan_matmul(ctx, a, b);
  const std::vector<int64_t> acc = integer_matmul(ctx, plan, a, &a_zp, b, &b_zp);
  const std::vector<float> as = read_float(a_scale), bs = read_float(b_scale);
  const int64_t zp = y_zp.get_as_int64(0);
  const QuantRange range = quant_range(ctx, y_zp.dtype());
  Tensor y(y_zp.dtype(), plan.out_shape);
  const int64_t batches = static_cast<int64_t>(plan.a_batch.size());
  for (int64_t bt = 0; bt < batches; ++bt) {
    const int64_t ab = plan.a_batch[static_cast<size_t>(bt)], bb = plan.b_batch[static_cast<size_t>(bt)];
    for (int64_t i = 0; i < plan.m; ++i) {
      const float sa = as[static_cast<size_t>(param_index(ctx, &a_scale, plan.a_batches, plan.m, ab, i, "a_scale"))];
      for (int64_t j = 0; j < plan.n; ++j) {
        const float sb = bs[static_cast<size_t>(param_index(ctx, &b_scale, plan.b_batches, plan.n, bb, j, "b_scale"))];
        const int64_t at = (bt * plan.m + i) * plan.n + j;
        const float real = static_cast<float>(acc[static_cast<size_t>(at)]) * (sa * sb / y_scale);
        store_int(y, at, round_saturate(std::nearbyint(static_cast<double>(real)) + static_cast<double>(zp), range));
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

// ---- convolution -----------------------------------------------------------

struct ConvPlan {
  int64_t batch = 0, in_channels = 0, out_channels = 0, group = 1;
  Shape in_spatial, kernel, out_spatial;
  std::vector<int64_t> strides, dilations, pads_begin;
};

ConvPlan plan_conv(const KernelContext& ctx, const Tensor& x, const Tensor& w) {
  if (x.rank() < 3) ctx.fail("X must have rank >= 3 (N, C, spatial...), got " + x.describe());
  if (w.rank() != x.rank()) ctx.fail("W " + w.describe() + " must have the rank of X " + x.describe());
  const size_t dims = static_cast<size_t>(x.rank() - 2);
  const Node& node = ctx.node;
  ConvPlan p;
  p.batch = x.dim(0);
  p.in_channels = x.dim(1);
  p.out_channels = w.dim(0);
  p.group = node.attr_int("group", 1);
  if (p.group <= 0 || p.in_channels % p.group != 0 || p.out_channels % p.group != 0) {
    ctx.fail("group " + std::to_string(p.group) + " does not divide the channels of X " + x.describe() + " and W " +
             w.describe());
  }
  if (w.dim(1) * p.group != p.in_channels) {
    ctx.fail("W " + w.describe() + " expects " + std::to_string(w.dim(1) * p.group) + " input channels, X has " +
             std::to_string(p.in_channels));
  }
  p.in_spatial.assign(x.shape().begin() + 2, x.shape().end());
  p.kernel.assign(w.shape().begin() + 2, w.shape().end());
  const auto kernel_attr = node.attr_ints("kernel_shape", p.kernel);
  if (kernel_attr != p.kernel) ctx.fail("kernel_shape attribute differs from W's spatial shape");
  p.strides = node.attr_ints("strides", std::vector<int64_t>(dims, 1));
  p.dilations = node.attr_ints("dilations", std::vector<int64_t>(dims, 1));
  std::vector<int64_t> pads = node.attr_ints("pads", std::vector<int64_t>(2 * dims, 0));
  if (p.strides.size() != dims || p.dilations.size() != dims || pads.size() != 2 * dims) {
    ctx.fail("strides/dilations/pads do not match " + std::to_string(dims) + " spatial dimensions");
  }
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  p.pads_begin.resize(dims);
  p.out_spatial.resize(dims);
  for (size_t d = 0; d < dims; ++d) {
    const int64_t in = p.in_spatial[d], stride = p.strides[d], dil = p.dilations[d];
    if (stride <= 0 || dil <= 0 || pads[d] < 0 || pads[d + dims] < 0)
      ctx.fail("strides, dilations and pads must be positive");
    const int64_t extent = (p.kernel[d] - 1) * dil + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const int64_t out = (in + stride - 1) / stride;
      const int64_t total = std::max<int64_t>(0, (out - 1) * stride + extent - in);
      pads[d] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pads[d + dims] = total - pads[d];
    } else if (auto_pad == "VALID") {
      pads[d] = pads[d + dims] = 0;
    } else if (auto_pad != "NOTSET") {
      ctx.fail("auto_pad '" + auto_pad + "' is not valid");
    }
    const int64_t span = in + pads[d] + pads[d + dims] - extent;
    if (span < 0) ctx.fail("kernel is larger than the padded input in spatial dimension " + std::to_string(d));
    p.out_spatial[d] = span / stride + 1;
    p.pads_begin[d] = pads[d];
  }
  return p;
}

// acc[n, m, out positions] (int64) of (x - x_zp) conv (w - w_zp[m]).
std::vector<int64_t> integer_conv(const KernelContext& ctx, const ConvPlan& p, const Tensor& x, int32_t x_zp,
                                  const Tensor& w, const Tensor* w_zp) {
  const std::vector<int32_t> xv = read_int32(x), wv = read_int32(w);
  const std::vector<int32_t> wzp = w_zp ? read_int32(*w_zp) : std::vector<int32_t>{0};
  if (w_zp && wzp.size() != 1 && static_cast<int64_t>(wzp.size()) != p.out_channels) {
    ctx.fail("w_zero_point must have 1 or " + std::to_string(p.out_channels) + " elements, got " + w_zp->describe());
  }
  const size_t dims = p.in_spatial.size();
  int64_t in_size = 1, out_size = 1, kernel_size = 1;
  for (size_t d = 0; d < dims; ++d) {
    in_size *= p.in_spatial[d];
    out_size *= p.out_spatial[d];
    kernel_size *= p.kernel[d];
  }
  const int64_t cin_g = p.in_channels / p.group, cout_g = p.out_channels / p.group;
  std::vector<int32_t> w2(wv.size());
  for (int64_t m = 0; m < p.out_channels; ++m) {
    const int32_t zp = wzp.size() == 1 ? wzp[0] : wzp[static_cast<size_t>(m)];
    for (int64_t i = 0; i < cin_g * kernel_size; ++i) {
      const size_t at = static_cast<size_t>(m * cin_g * kernel_size + i);
      w2[at] = wv[at] - zp;
    }
  }
  const std::vector<int64_t> in_strides = contiguous_strides(p.in_spatial);
  std::vector<int64_t> acc(static_cast<size_t>(p.batch * p.out_channels * out_size), 0);
  std::vector<int64_t> offsets(static_cast<size_t>(kernel_size));  // input offset per kernel tap, -1 = padding
  std::vector<int64_t> out_index(dims, 0), k_index(dims, 0);
  for (int64_t pos = 0; pos < out_size; ++pos) {
    // out_index = multi-index of pos
    for (int64_t rest = pos, d = static_cast<int64_t>(dims) - 1; d >= 0; --d) {
      out_index[static_cast<size_t>(d)] = rest % p.out_spatial[static_cast<size_t>(d)];
      rest /= p.out_spatial[static_cast<size_t>(d)];
    }
    for (int64_t kp = 0; kp < kernel_size; ++kp) {
      int64_t off = 0;
      for (int64_t rest = kp, d = static_cast<int64_t>(dims) - 1; d >= 0; --d) {
        const size_t dd = static_cast<size_t>(d);
        const int64_t kd = rest % p.kernel[dd];
        rest /= p.kernel[dd];
        const int64_t coord = out_index[dd] * p.strides[dd] + kd * p.dilations[dd] - p.pads_begin[dd];
        if (coord < 0 || coord >= p.in_spatial[dd] || off < 0) {
          off = -1;
          continue;
        }
        off += coord * in_strides[dd];
      }
      offsets[static_cast<size_t>(kp)] = off;
    }
    for (int64_t n = 0; n < p.batch; ++n) {
      for (int64_t m = 0; m < p.out_channels; ++m) {
        const int64_t g = m / cout_g;
        int64_t sum = 0;
        for (int64_t c = 0; c < cin_g; ++c) {
          const int32_t* xp = xv.data() + (n * p.in_channels + g * cin_g + c) * in_size;
          const int32_t* wp = w2.data() + (m * cin_g + c) * kernel_size;
          for (int64_t kp = 0; kp < kernel_size; ++kp) {
            const int64_t off = offsets[static_cast<size_t>(kp)];
            if (off >= 0) sum += int64_t{xp[off] - x_zp} * wp[kp];
          }
        }
        acc[static_cast<size_t>((n * p.out_channels + m) * out_size + pos)] = sum;
      }
    }
  }
  return acc;
}

Shape conv_out_shape(const ConvPlan& p) {
  Shape s = {p.batch, p.out_channels};
  s.insert(s.end(), p.out_spatial.begin(), p.out_spatial.end());
  return s;
}

int32_t scalar_zero_point(const KernelContext& ctx, const Tensor* zp, const Tensor& x, const char* what) {
  if (zp == nullptr) return 0;
  if (zp->dtype() != x.dtype()) ctx.fail(std::string(what) + " type differs from its input's");
  if (zp->numel() != 1) ctx.fail(std::string(what) + " must be one value, got " + zp->describe());
  return static_cast<int32_t>(zp->get_as_int64(0));
}

void conv_integer(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  check_8bit(ctx, x, "x");
  check_8bit(ctx, w, "w");
  const int32_t x_zp = scalar_zero_point(ctx, ctx.has_input(2) ? &ctx.input(2) : nullptr, x, "x_zero_point");
  const Tensor* w_zp = ctx.has_input(3) ? &ctx.input(3) : nullptr;
  if (w_zp && w_zp->dtype() != w.dtype()) ctx.fail("w_zero_point type differs from w's");
  const ConvPlan plan = plan_conv(ctx, x, w);
  const std::vector<int64_t> acc = integer_conv(ctx, plan, x, x_zp, w, w_zp);
  Tensor y(DType::kInt32, conv_out_shape(plan));
  int32_t* out = y.data<int32_t>();
  for (size_t i = 0; i < acc.size(); ++i) out[i] = static_cast<int32_t>(acc[i]);
  ctx.set_output(0, std::move(y));
}

void qlinear_conv(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const float x_scale = scalar_scale(ctx, 1);
  const Tensor& w = ctx.input(3);
  const Tensor& w_scale = ctx.input(4);
  const float y_scale = scalar_scale(ctx, 6);
  check_8bit(ctx, x, "x");
  check_8bit(ctx, w, "w");
  const int32_t x_zp = scalar_zero_point(ctx, ctx.has_input(2) ? &ctx.input(2) : nullptr, x, "x_zero_point");
  const Tensor* w_zp = ctx.has_input(5) ? &ctx.input(5) : nullptr;
  if (w_zp && w_zp->dtype() != w.dtype()) ctx.fail("w_zero_point type differs from w's");
  const Tensor* y_zp_t = ctx.has_input(7) ? &ctx.input(7) : nullptr;
  const DType out_type = y_zp_t ? y_zp_t->dtype() : x.dtype();
  if (!is_8bit(out_type))
    ctx.unsupported(std::string("output type ") + dtype_name(out_type) + " (only uint8 and int8)");
  if (y_zp_t && y_zp_t->numel() != 1) ctx.fail("y_zero_point must be one value, got " + y_zp_t->describe());
  const int64_t y_zp = y_zp_t ? y_zp_t->get_as_int64(0) : 0;
  const ConvPlan plan = plan_conv(ctx, x, w);
  if (!is_float(w_scale.dtype()) || (w_scale.numel() != 1 && w_scale.numel() != plan.out_channels)) {
    ctx.fail("w_scale must hold 1 or " + std::to_string(plan.out_channels) + " floats, got " + w_scale.describe());
  }
  std::vector<int32_t> bias(static_cast<size_t>(plan.out_channels), 0);
  if (ctx.has_input(8)) {
    const Tensor& b = ctx.input(8);
    if (b.dtype() != DType::kInt32 || b.numel() != plan.out_channels) {
      ctx.fail("B must be int32 with " + std::to_string(plan.out_channels) + " elements, got " + b.describe());
    }
    bias = read_int32(b);
  }
  const std::vector<int64_t> acc = integer_conv(ctx, plan, x, x_zp, w, w_zp);
  const std::vector<float> ws = read_float(w_scale);
  const QuantRange range = quant_range(ctx, out_type);
  const int64_t per_channel = static_cast<int64_t>(acc.size()) / std::max<int64_t>(1, plan.batch * plan.out_channels);
  Tensor y(out_type, conv_out_shape(plan));
  for (int64_t n = 0; n < plan.batch; ++n) {
    for (int64_t m = 0; m < plan.out_channels; ++m) {
      const float multiplier = x_scale * ws[ws.size() == 1 ? 0 : static_cast<size_t>(m)] / y_scale;
      for (int64_t i = 0; i < per_channel; ++i) {
        const int64_t at = (n * plan.out_channels + m) * per_channel + i;
        const int64_t sum = acc[static_cast<size_t>(at)] + bias[static_cast<size_t>(m)];
        const float real = static_cast<float>(sum) * multiplier;
        store_int(y, at, round_saturate(std::nearbyint(static_cast<double>(real)) + static_cast<double>(y_zp), range));
      }
    }
  }
  ctx.set_output(0, std::move(y));
}

constexpr OpDef kQLinearOps[] = {
    {"MatMulInteger", "", matmul_integer},
    {"QLinearMatMul", "", qlinear_matmul},
    {"ConvInteger", "", conv_integer},
    {"QLinearConv", "", qlinear_conv},
};

}  // namespace

std::span<const OpDef> qlinear_ops() { return kQLinearOps; }

}  // namespace kvant
