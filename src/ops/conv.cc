// Convolution reference kernels (ONNX Conv, ConvTranspose), 1-D to 3-D.
//
// Conv: X [N, C, d1..dk], W [M, C/group, k1..kk], optional B [M]:
//   Y[n, m, o] = B[m] + sum_{c in group(m), p} X[n, c, o * stride - pad_begin + p * dilation] * W[m, c, p]
// where out-of-range input positions read as zero. Output size: see
// WindowGeometry (op_util.h).
//
// ConvTranspose: X [N, C, d1..dk], W [C, M/group, k1..kk]; every input
// element scatters X * W into
//   Y[n, m, i * stride - pad_begin + p * dilation]
// Output size: stride * (in - 1) + output_padding + (k - 1) * dilation + 1 - pad_begin - pad_end,
// or the given output_shape, whose total padding is then split begin/end
// (SAME_UPPER puts the odd element at the end, otherwise at the beginning).
//
// Both kernels view the spatial dims as 3-D (unit dims prepended).
// Conv gathers, per (image, group), a column buffer col[c, kernel tap][output position]
// (zeros where a tap falls into padding; filled row by row with the valid width
// range computed once per row), then forms Y[m] += W[m, r] * col[r] over output
// channel m and tap r with a contiguous inner loop over the output positions.
// Output rows are processed in chunks so that the buffer stays bounded.
// ConvTranspose loops channel -> kernel position -> input row, scattering a
// contiguous input row per step. Accumulation is in compute_t<T> (float for
// float16/bfloat16).
#include <algorithm>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

// First and one-past-last o in [0, out) with 0 <= o * stride + offset < in.
inline void valid_range(int64_t offset, int64_t stride, int64_t in, int64_t out, int64_t& lo, int64_t& hi) {
  lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  hi = in - offset <= 0 ? 0 : (in - offset - 1) / stride + 1;
  hi = std::min(hi, out);
  lo = std::min(lo, hi);
}

// Shape checks common to Conv and ConvTranspose; returns group.
int64_t check_conv_inputs(const KernelContext& ctx, const Tensor& x, const Tensor& w) {
  if (x.rank() < 3) ctx.fail("input X has rank " + std::to_string(x.rank()) + "; needs rank >= 3 (N, C, spatial...)");
  if (w.rank() != x.rank()) {
    ctx.fail("input W has rank " + std::to_string(w.rank()) + "; needs rank " + std::to_string(x.rank()) +
             " (the rank of X " + x.describe() + ")");
  }
  if (x.rank() > 5) ctx.unsupported("more than 3 spatial dims are not supported");
  if (w.dtype() != x.dtype())
    ctx.fail("W has type " + std::string(dtype_name(w.dtype())) + ", X has " + dtype_name(x.dtype()));
  const int64_t group = ctx.node.attr_int("group", 1);
  if (group < 1) ctx.fail("group must be positive");
  return group;
}

std::vector<int64_t> kernel_shape_of(const KernelContext& ctx, const Tensor& w) {
  std::vector<int64_t> kernel(w.shape().begin() + 2, w.shape().end());
  if (ctx.node.has_attr("kernel_shape") && ctx.node.attr_ints("kernel_shape") != kernel) {
    ctx.fail("kernel_shape attribute " + shape_to_string(ctx.node.attr_ints("kernel_shape")) +
             " does not match W's shape " + shape_to_string(w.shape()));
  }
  return kernel;
}

const Tensor* check_bias(const KernelContext& ctx, const Tensor& x, int64_t channels) {
  if (!ctx.has_input(2)) return nullptr;
  const Tensor& b = ctx.input(2);
  if (b.dtype() != x.dtype()) ctx.fail("B's type differs from X's");
  if (b.rank() != 1 || b.dim(0) != channels) {
    ctx.fail("B has shape " + shape_to_string(b.shape()) + "; needs [" + std::to_string(channels) + "]");
  }
  return &b;
}

template <typename T>
void run_conv(KernelContext& ctx, TypeTag<T>) {
  using C = compute_t<T>;
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const int64_t group = check_conv_inputs(ctx, x, w);
  const int64_t batch = x.dim(0), in_channels = x.dim(1), out_channels = w.dim(0);
  if (in_channels % group != 0 || out_channels % group != 0) {
    ctx.fail("channels (" + std::to_string(in_channels) + " in, " + std::to_string(out_channels) +
             " out) are not divisible by group " + std::to_string(group));
  }
  const int64_t in_per_group = in_channels / group, out_per_group = out_channels / group;
  if (w.dim(1) != in_per_group) {
    ctx.fail("W has shape " + shape_to_string(w.shape()) + "; dim 1 must be C/group = " + std::to_string(in_per_group) +
             " for X " + x.describe());
  }
  const Tensor* bias = check_bias(ctx, x, out_channels);
  const Shape in_spatial(x.shape().begin() + 2, x.shape().end());
  WindowGeometry g = window_geometry(ctx, in_spatial, kernel_shape_of(ctx, w), false);
  Shape out_shape = {batch, out_channels};
  out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
  pad_geometry_to_rank(g, 3);

  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
  const int64_t kernel_size = g.kernel[0] * g.kernel[1] * g.kernel[2];
  const int64_t patch = in_per_group * kernel_size;  // rows of the column buffer
  const int64_t out_rows = g.out[0] * g.out[1];      // output rows of width g.out[2]
  // Output rows per chunk: keep the column buffer under ~16M elements.
  const int64_t chunk_rows = std::clamp<int64_t>((int64_t{1} << 24) / std::max<int64_t>(1, patch * g.out[2]), 1,
                                                 std::max<int64_t>(out_rows, 1));
  const T* xd = x.data<T>();
  const T* wd = w.data<T>();
  std::vector<C> wc(static_cast<size_t>(w.numel()));
  for (size_t i = 0; i < wc.size(); ++i) wc[i] = to_compute(wd[i]);

  Tensor y(x.dtype(), out_shape);
  T* yd = y.data<T>();
  std::vector<C> col(static_cast<size_t>(patch * chunk_rows * g.out[2]));
  std::vector<C> acc(static_cast<size_t>(out_per_group * out_plane));
  const int64_t sw = g.strides[2];
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t grp = 0; grp < group; ++grp) {
      for (int64_t m = 0; m < out_per_group; ++m) {
        const C b = bias ? to_compute(bias->data<T>()[grp * out_per_group + m]) : C(0);
        std::fill(acc.begin() + m * out_plane, acc.begin() + (m + 1) * out_plane, b);
      }
      for (int64_t row0 = 0; row0 < out_rows; row0 += chunk_rows) {
        const int64_t rows = std::min(chunk_rows, out_rows - row0);
        const int64_t cols = rows * g.out[2];
        // 1. Column buffer: col[r][j] = X at kernel tap r (channel, kd, kh, kw) for output
        //    position j of this chunk, 0 where the tap falls into padding.
        for (int64_t ci = 0; ci < in_per_group; ++ci) {
          const T* x_plane = xd + (n * in_channels + grp * in_per_group + ci) * in_plane;
          for (int64_t kpos = 0; kpos < kernel_size; ++kpos) {
            const int64_t kd = kpos / (g.kernel[1] * g.kernel[2]);
            const int64_t kh = (kpos / g.kernel[2]) % g.kernel[1];
            const int64_t kw = kpos % g.kernel[2];
            const int64_t off_w = kw * g.dilations[2] - g.pads_begin[2];
            int64_t ow_lo, ow_hi;
            valid_range(off_w, sw, g.in[2], g.out[2], ow_lo, ow_hi);
            C* col_row = col.data() + (ci * kernel_size + kpos) * cols;
            for (int64_t r = 0; r < rows; ++r) {
              const int64_t od = (row0 + r) / g.out[1], oh = (row0 + r) % g.out[1];
              const int64_t id = od * g.strides[0] + kd * g.dilations[0] - g.pads_begin[0];
              const int64_t ih = oh * g.strides[1] + kh * g.dilations[1] - g.pads_begin[1];
              C* dst = col_row + r * g.out[2];
              if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1]) {
                std::fill(dst, dst + g.out[2], C(0));
                continue;
              }
              const T* in_row = x_plane + (id * g.in[1] + ih) * g.in[2] + off_w;
              std::fill(dst, dst + ow_lo, C(0));
              for (int64_t ow = ow_lo; ow < ow_hi; ++ow) dst[ow] = to_compute(in_row[ow * sw]);
              std::fill(dst + ow_hi, dst + g.out[2], C(0));
            }
          }
        }
        // 2. acc[m][chunk] += W[m][r] * col[r][chunk], i-k-j order: contiguous inner loop.
        for (int64_t m = 0; m < out_per_group; ++m) {
          C* out = acc.data() + m * out_plane + row0 * g.out[2];
          const C* w_row = wc.data() + (grp * out_per_group + m) * patch;
          for (int64_t r = 0; r < patch; ++r) {
            const C wv = w_row[r];
            const C* src = col.data() + r * cols;
            for (int64_t j = 0; j < cols; ++j) out[j] += wv * src[j];
          }
        }
      }
      T* out = yd + (n * out_channels + grp * out_per_group) * out_plane;
      for (size_t i = 0; i < acc.size(); ++i) out[i] = from_compute<T>(acc[i]);
    }
  }
  ctx.set_output(0, std::move(y));
}

void conv(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_conv(ctx, tag); });
}

template <typename T>
void run_conv_transpose(KernelContext& ctx, TypeTag<T>) {
  using C = compute_t<T>;
  const Tensor& x = ctx.input(0);
  const Tensor& w = ctx.input(1);
  const int64_t group = check_conv_inputs(ctx, x, w);
  const int64_t batch = x.dim(0), in_channels = x.dim(1);
  if (w.dim(0) != in_channels) {
    ctx.fail("W has shape " + shape_to_string(w.shape()) + "; dim 0 must equal X's channels " +
             std::to_string(in_channels));
  }
  if (in_channels % group != 0) ctx.fail("input channels are not divisible by group");
  const int64_t in_per_group = in_channels / group, out_per_group = w.dim(1);
  const int64_t out_channels = out_per_group * group;
  const Tensor* bias = check_bias(ctx, x, out_channels);

  const size_t n_sp = static_cast<size_t>(x.rank() - 2);
  const Node& node = ctx.node;
  WindowGeometry g;
  g.in.assign(x.shape().begin() + 2, x.shape().end());
  g.kernel = kernel_shape_of(ctx, w);
  g.strides = node.attr_ints("strides", std::vector<int64_t>(n_sp, 1));
  g.dilations = node.attr_ints("dilations", std::vector<int64_t>(n_sp, 1));
  std::vector<int64_t> pads = node.attr_ints("pads", std::vector<int64_t>(2 * n_sp, 0));
  std::vector<int64_t> output_padding = node.attr_ints("output_padding", std::vector<int64_t>(n_sp, 0));
  std::vector<int64_t> output_shape = node.attr_ints("output_shape");
  if (output_shape.size() == n_sp + 2) output_shape.erase(output_shape.begin(), output_shape.begin() + 2);
  if (g.strides.size() != n_sp || g.dilations.size() != n_sp || pads.size() != 2 * n_sp ||
      output_padding.size() != n_sp || (!output_shape.empty() && output_shape.size() != n_sp)) {
    ctx.fail("strides, dilations, pads, output_padding or output_shape has the wrong number of values");
  }
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  if (auto_pad != "NOTSET" && auto_pad != "VALID" && auto_pad != "SAME_UPPER" && auto_pad != "SAME_LOWER") {
    ctx.fail("auto_pad '" + auto_pad + "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
  }
  g.pads_begin.assign(n_sp, 0);
  g.pads_end.assign(n_sp, 0);
  g.out.assign(n_sp, 0);
  for (size_t i = 0; i < n_sp; ++i) {
    if (g.strides[i] < 1 || g.dilations[i] < 1) ctx.fail("strides and dilations must be positive");
    const int64_t full = g.strides[i] * (g.in[i] - 1) + output_padding[i] + (g.kernel[i] - 1) * g.dilations[i] + 1;
    if (!output_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      const int64_t target = !output_shape.empty() ? output_shape[i] : g.in[i] * g.strides[i];
      // A negative total (output_shape beyond the full result) pads the end with bias-only positions.
      const int64_t total = full - target;
      const int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);  // floor(total / 2)
      g.pads_begin[i] = auto_pad == "SAME_UPPER" ? half : total - half;
      g.pads_end[i] = total - g.pads_begin[i];
    } else if (auto_pad == "NOTSET") {
      g.pads_begin[i] = pads[i];
      g.pads_end[i] = pads[i + n_sp];
    }
    g.out[i] = full - g.pads_begin[i] - g.pads_end[i];
    if (g.out[i] < 0) ctx.fail("pads are larger than the output");
  }
  Shape out_shape = {batch, out_channels};
  out_shape.insert(out_shape.end(), g.out.begin(), g.out.end());
  pad_geometry_to_rank(g, 3);

  const int64_t in_plane = g.in[0] * g.in[1] * g.in[2];
  const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
  const int64_t kernel_size = g.kernel[0] * g.kernel[1] * g.kernel[2];
  const T* xd = x.data<T>();
  const T* wd = w.data<T>();
  std::vector<C> xc(static_cast<size_t>(x.numel())), wc(static_cast<size_t>(w.numel()));
  for (size_t i = 0; i < xc.size(); ++i) xc[i] = to_compute(xd[i]);
  for (size_t i = 0; i < wc.size(); ++i) wc[i] = to_compute(wd[i]);

  Tensor y(x.dtype(), out_shape);
  T* yd = y.data<T>();
  std::vector<C> acc(static_cast<size_t>(out_plane));
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t m = 0; m < out_channels; ++m) {
      const int64_t grp = m / out_per_group, mg = m % out_per_group;
      std::fill(acc.begin(), acc.end(), bias ? to_compute(bias->data<T>()[m]) : C(0));
      for (int64_t ci = 0; ci < in_per_group; ++ci) {
        const int64_t c = grp * in_per_group + ci;
        const C* x_plane = xc.data() + (n * in_channels + c) * in_plane;
        const C* w_kernel = wc.data() + (c * out_per_group + mg) * kernel_size;
        for (int64_t kd = 0; kd < g.kernel[0]; ++kd) {
          for (int64_t kh = 0; kh < g.kernel[1]; ++kh) {
            for (int64_t kw = 0; kw < g.kernel[2]; ++kw) {
              const C wv = w_kernel[(kd * g.kernel[1] + kh) * g.kernel[2] + kw];
              // Input i lands on output o = i * stride + off; valid input ranges are those with 0 <= o < out.
              const int64_t off_d = kd * g.dilations[0] - g.pads_begin[0];
              const int64_t off_h = kh * g.dilations[1] - g.pads_begin[1];
              const int64_t off_w = kw * g.dilations[2] - g.pads_begin[2];
              int64_t id_lo, id_hi, ih_lo, ih_hi, iw_lo, iw_hi;
              valid_range(off_d, g.strides[0], g.out[0], g.in[0], id_lo, id_hi);
              valid_range(off_h, g.strides[1], g.out[1], g.in[1], ih_lo, ih_hi);
              valid_range(off_w, g.strides[2], g.out[2], g.in[2], iw_lo, iw_hi);
              const int64_t sw = g.strides[2];
              for (int64_t id = id_lo; id < id_hi; ++id) {
                const int64_t od = id * g.strides[0] + off_d;
                for (int64_t ih = ih_lo; ih < ih_hi; ++ih) {
                  const int64_t oh = ih * g.strides[1] + off_h;
                  const C* in_row = x_plane + (id * g.in[1] + ih) * g.in[2];
                  C* out_row = acc.data() + (od * g.out[1] + oh) * g.out[2] + off_w;
                  for (int64_t iw = iw_lo; iw < iw_hi; ++iw) out_row[iw * sw] += wv * in_row[iw];
                }
              }
            }
          }
        }
      }
      T* out = yd + (n * out_channels + m) * out_plane;
      for (int64_t i = 0; i < out_plane; ++i) out[i] = from_compute<T>(acc[static_cast<size_t>(i)]);
    }
  }
  ctx.set_output(0, std::move(y));
}

void conv_transpose(KernelContext& ctx) {
  dispatch<FloatTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_conv_transpose(ctx, tag); });
}

}  // namespace

std::span<const OpDef> conv_ops() {
  static constexpr OpDef kOps[] = {
      {"Conv", "", conv},
      {"ConvTranspose", "", conv_transpose},
  };
  return kOps;
}

}  // namespace kvant
