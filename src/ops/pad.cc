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
#include <cstring>
#include <string>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/strided_copy.h"

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

}  // namespace

PadLayout pad_layout(const KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t rank = x.rank();
  PadLayout l;
  l.mode = ctx.node.attr_string("mode", "constant");
  if (l.mode != "constant" && l.mode != "reflect" && l.mode != "edge" && l.mode != "wrap") {
    ctx.fail("mode '" + l.mode + "' is not one of constant, reflect, edge, wrap");
  }
  const size_t es = element_size(ctx, x.dtype());
  l.value.assign(es, std::byte{0});
  std::vector<int64_t> pads;
  if (ctx.opset < 11) {
    pads = ctx.node.attr_ints("pads");
    const float v = ctx.node.attr_float("value", 0.0f);
    dispatch<AllTypes>(x.dtype(), ctx, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T t = from_compute<T>(static_cast<compute_t<T>>(v));
      std::memcpy(l.value.data(), &t, sizeof(T));
    });
  } else {
    pads = ctx.input(1).to_int64_vector();
    if (ctx.has_input(2)) {
      const Tensor& v = ctx.input(2);
      if (v.dtype() != x.dtype()) ctx.fail("constant_value's type differs from data's");
      if (v.numel() > 1) ctx.fail("constant_value must be a scalar or hold one value");
      if (v.numel() == 1) std::memcpy(l.value.data(), v.raw(), es);
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
  l.begin.assign(static_cast<size_t>(rank), 0);
  l.out_shape = x.shape();
  for (size_t i = 0; i < num_axes; ++i) {
    const size_t a = static_cast<size_t>(axes[i]);
    l.begin[a] = pads[i];
    l.out_shape[a] = x.shape()[a] + pads[i] + pads[i + num_axes];
    if (l.out_shape[a] < 0) ctx.fail("pads crop more than dim " + std::to_string(a) + " holds");
    if (l.mode != "constant" && x.shape()[a] == 0 && l.out_shape[a] > 0) {
      ctx.fail("mode '" + l.mode + "' cannot pad an empty dim");
    }
  }
  return l;
}

// Row by row over the output's last dim: a row whose outer coordinates fall
// in the constant border is the value; otherwise its source row's middle is
// one memcpy and the border elements are mapped one by one.
void pad_into(const KernelContext& ctx, const PadLayout& l, Tensor& y) {
  const Tensor& x = ctx.input(0);
  const size_t es = element_size(ctx, x.dtype());
  const int64_t total = y.numel();
  if (total == 0) return;
  const int64_t rank = x.rank();
  if (rank == 0) {
    std::memcpy(y.raw(), x.raw(), es);
    return;
  }
  const std::vector<int64_t> in_strides = contiguous_strides(x.shape());
  const int64_t width = l.out_shape.back();
  const int64_t in_width = x.shape().back();
  const int64_t left = l.begin.back();
  const auto* src = static_cast<const std::byte*>(x.raw());
  auto* dst = static_cast<std::byte*>(y.raw());
  const int64_t rows = total / width;
  std::vector<int64_t> index(static_cast<size_t>(rank), 0);  // output coordinates of the row
  for (int64_t r = 0; r < rows; ++r) {
    std::byte* out = dst + static_cast<size_t>(r * width) * es;
    int64_t offset = 0;
    bool constant = false;
    for (size_t d = 0; d + 1 < static_cast<size_t>(rank); ++d) {
      const int64_t s = source_index(index[d] - l.begin[d], x.shape()[d], l.mode);
      if (s < 0) {
        constant = true;
        break;
      }
      offset += s * in_strides[d];
    }
    if (constant) {
      // The value once, then doubling copies (a row of Swin-T's window
      // padding is 96 floats: one memcpy call per element cost 4% of its run).
      const size_t row_bytes = static_cast<size_t>(width) * es;
      std::memcpy(out, l.value.data(), es);
      for (size_t done = es; done < row_bytes; done *= 2) {
        std::memcpy(out + done, out, std::min(done, row_bytes - done));
      }
    } else {
      const std::byte* row = src + static_cast<size_t>(offset) * es;
      const int64_t lo = std::clamp<int64_t>(left, 0, width);              // first output column inside x
      const int64_t hi = std::clamp<int64_t>(left + in_width, lo, width);  // one past the last
      if (hi > lo) {
        std::memcpy(out + static_cast<size_t>(lo) * es, row + static_cast<size_t>(lo - left) * es,
                    static_cast<size_t>(hi - lo) * es);
      }
      for (int64_t c = 0; c < width; ++c) {
        if (c == lo && hi > lo) c = hi;
        if (c >= width) break;
        const int64_t s = source_index(c - left, in_width, l.mode);
        std::memcpy(out + static_cast<size_t>(c) * es, s < 0 ? l.value.data() : row + static_cast<size_t>(s) * es, es);
      }
    }
    for (size_t d = static_cast<size_t>(rank) - 1; d-- > 0;) {
      if (++index[d] < l.out_shape[d]) break;
      index[d] = 0;
    }
  }
}

namespace {

void pad(KernelContext& ctx) {
  const PadLayout l = pad_layout(ctx);
  Tensor y(ctx.input(0).dtype(), l.out_shape);
  pad_into(ctx, l, y);
  ctx.set_output(0, std::move(y));
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
