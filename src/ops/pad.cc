// Padding and block rearrangement reference kernels: Pad, DepthToSpace, SpaceToDepth.
//
// Pad: out[d] = in[d] + pad_begin[d] + pad_end[d] (negative pads crop). Output
//   element o reads input coordinate i = o - pad_begin per dim; outside [0, n):
//     constant: the value (attribute before opset 11, input 2 after);
//     edge: clamp(i, 0, n - 1); reflect: mirror without repeating the edge
//     (period 2(n - 1)); wrap: i mod n.
//   pads: attribute before opset 11, input 1 after ([begin..., end...] over all
//   dims, or over `axes` (input 3, opset 18+)).
// DepthToSpace (blocksize b, X [N, C, H, W] -> [N, C / b^2, H b, W b]):
//   DCR: Y[n, c, h b + i, w b + j] = X[n, (i b + j) C / b^2 + c, h, w]
//   CRD: Y[n, c, h b + i, w b + j] = X[n, c b^2 + i b + j, h, w]
// SpaceToDepth is DCR's inverse: Y[n, (i b + j) C + c, h, w] = X[n, c, h b + i, w b + j].
#include <algorithm>
#include <string>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

// Input coordinate for output coordinate o along a dim of size n, or -1 for "use the constant".
int64_t source_index(int64_t i, int64_t n, const std::string& mode) {
  if (i >= 0 && i < n) return i;
  if (mode == "edge") return std::clamp<int64_t>(i, 0, n - 1);
  if (mode == "wrap") return ((i % n) + n) % n;
  if (mode == "reflect") {
    if (n == 1) return 0;
    const int64_t period = 2 * (n - 1);
    int64_t r = ((i % period) + period) % period;
    return r < n ? r : period - r;
  }
  return -1;
}

template <typename T>
void run_pad(KernelContext& ctx, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  const std::string mode = ctx.node.attr_string("mode", "constant");
  if (mode != "constant" && mode != "reflect" && mode != "edge" && mode != "wrap") {
    ctx.fail("mode '" + mode + "' is not one of constant, reflect, edge, wrap");
  }
  std::vector<int64_t> pads;
  T value{};
  if (ctx.opset < 11) {
    pads = ctx.node.attr_ints("pads");
    value = from_compute<T>(static_cast<compute_t<T>>(ctx.node.attr_float("value", 0.0f)));
  } else {
    pads = ctx.input(1).to_int64_vector();
    if (ctx.has_input(2)) {
      const Tensor& v = ctx.input(2);
      if (v.dtype() != x.dtype()) ctx.fail("constant_value's type differs from data's");
      if (v.numel() > 1) ctx.fail("constant_value must be a scalar or hold one value");
      if (v.numel() == 1) value = v.data<T>()[0];
    }
  }
  std::vector<int64_t> axes;
  if (ctx.opset >= 18 && ctx.has_input(3)) {
    for (int64_t a : ctx.input(3).to_int64_vector()) axes.push_back(normalize_axis(ctx, a, rank));
  } else {
    for (int64_t a = 0; a < rank; ++a) axes.push_back(a);
  }
  const size_t num_axes = axes.size();
  if (pads.size() != 2 * num_axes) {
    ctx.fail("pads has " + std::to_string(pads.size()) + " values; needs " + std::to_string(2 * num_axes));
  }
  std::vector<int64_t> begin(static_cast<size_t>(rank), 0);
  Shape out_shape = x.shape();
  for (size_t i = 0; i < num_axes; ++i) {
    const size_t a = static_cast<size_t>(axes[i]);
    begin[a] = pads[i];
    out_shape[a] = x.shape()[a] + pads[i] + pads[i + num_axes];
    if (out_shape[a] < 0) ctx.fail("pads crop more than dim " + std::to_string(a) + " holds");
    if (mode != "constant" && x.shape()[a] == 0 && out_shape[a] > 0) {
      ctx.fail("mode '" + mode + "' cannot pad an empty dim");
    }
  }
  Tensor y(x.dtype(), out_shape);
  const T* xd = x.data<T>();
  T* yd = y.data<T>();
  const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
  const int64_t total = y.numel();
  std::vector<int64_t> index(static_cast<size_t>(rank), 0);
  for (int64_t o = 0; o < total; ++o) {
    int64_t offset = 0;
    bool constant = false;
    for (size_t d = 0; d < static_cast<size_t>(rank); ++d) {
      const int64_t src = source_index(index[d] - begin[d], x.shape()[d], mode);
      if (src < 0) {
        constant = true;
        break;
      }
      offset += src * in_strides[d];
    }
    yd[o] = constant ? value : xd[offset];
    for (size_t d = static_cast<size_t>(rank); d-- > 0;) {
      if (++index[d] < out_shape[d]) break;
      index[d] = 0;
    }
  }
  ctx.set_output(0, std::move(y));
}

void pad(KernelContext& ctx) {
  dispatch<AllTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_pad(ctx, tag); });
}

template <typename T>
void run_depth_space(KernelContext& ctx, bool to_space, TypeTag<T>) {
  const Tensor& x = ctx.input(0);
  if (x.rank() != 4) ctx.fail("input " + x.describe() + " must have rank 4");
  const int64_t b = ctx.node.attr_int("blocksize", 0);
  if (b < 1) ctx.fail("blocksize must be positive");
  const int64_t n = x.dim(0), c = x.dim(1), h = x.dim(2), w = x.dim(3);
  const T* xd = x.data<T>();
  if (to_space) {
    const std::string mode = ctx.node.attr_string("mode", "DCR");
    if (mode != "DCR" && mode != "CRD") ctx.fail("mode '" + mode + "' is not DCR or CRD");
    if (c % (b * b) != 0) ctx.fail("channels " + std::to_string(c) + " are not divisible by blocksize^2");
    const int64_t oc = c / (b * b);
    Tensor y(x.dtype(), {n, oc, h * b, w * b});
    T* yd = y.data<T>();
    for (int64_t in = 0; in < n; ++in) {
      for (int64_t ch = 0; ch < oc; ++ch) {
        for (int64_t i = 0; i < b; ++i) {
          for (int64_t j = 0; j < b; ++j) {
            const int64_t src_c = mode == "DCR" ? (i * b + j) * oc + ch : ch * b * b + i * b + j;
            const T* src = xd + (in * c + src_c) * h * w;
            T* dst = yd + (in * oc + ch) * h * b * w * b;
            for (int64_t r = 0; r < h; ++r) {
              for (int64_t col = 0; col < w; ++col) dst[(r * b + i) * w * b + col * b + j] = src[r * w + col];
            }
          }
        }
      }
    }
    ctx.set_output(0, std::move(y));
  } else {
    if (h % b != 0 || w % b != 0) ctx.fail("spatial dims of " + x.describe() + " are not divisible by blocksize");
    const int64_t oh = h / b, ow = w / b;
    Tensor y(x.dtype(), {n, c * b * b, oh, ow});
    T* yd = y.data<T>();
    for (int64_t in = 0; in < n; ++in) {
      for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t i = 0; i < b; ++i) {
          for (int64_t j = 0; j < b; ++j) {
            const T* src = xd + (in * c + ch) * h * w;
            T* dst = yd + (in * c * b * b + (i * b + j) * c + ch) * oh * ow;
            for (int64_t r = 0; r < oh; ++r) {
              for (int64_t col = 0; col < ow; ++col) dst[r * ow + col] = src[(r * b + i) * w + col * b + j];
            }
          }
        }
      }
    }
    ctx.set_output(0, std::move(y));
  }
}

void depth_to_space(KernelContext& ctx) {
  dispatch<AllTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_depth_space(ctx, true, tag); });
}
void space_to_depth(KernelContext& ctx) {
  dispatch<AllTypes>(ctx.input(0).dtype(), ctx, [&](auto tag) { run_depth_space(ctx, false, tag); });
}

}  // namespace

std::span<const OpDef> pad_ops() {
  static constexpr OpDef kOps[] = {
      {"Pad", "", pad},
      {"DepthToSpace", "", depth_to_space},
      {"SpaceToDepth", "", space_to_depth},
  };
  return kOps;
}

}  // namespace kvant
