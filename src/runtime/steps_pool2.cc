// AveragePool, 2-D, float32 NCHW, bit-exact with the reference (src/ops/pool.cc):
//   y[i][j] = (sum over in-range taps, kernel rows outer and columns inner,
//              in float from 0) / float(divisor)
//   divisor = valid taps, or with count_include_pad the taps inside the padded
//   extent [-pad_begin, in + pad_end) (ceil_mode's overhang never counts); 0 taps: 0.
// The window is separable, so divisor(i, j) = rows(i) * cols(j), both counted
// once per plan. Per output row the sums run across the row's outputs (the
// same order per output as the reference, so the same float additions);
// columns whose window lies inside the input need no bounds checks.
// Strides, pads (NOTSET, VALID, SAME_*), dilations and ceil_mode come from the
// reference's window_geometry. Planes are split over the thread pool.
#include <algorithm>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "runtime/steps_fp32.h"

namespace kvant {

namespace {

class AvgPoolF32Step : public Step {
 public:
  AvgPoolF32Step(const Node& node, int64_t opset) : node_(node), opset_(opset) {}
  std::string kernel() const override { return "avgpool_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() != 4) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs float32 NCHW, got " + x.describe());
    }
    KernelContext ctx{node_, opset_, {in[0]}, {}, nullptr};
    const std::vector<int64_t> kernel = node_.attr_ints("kernel_shape");
    g_ = window_geometry(ctx, {x.dim(2), x.dim(3)}, kernel, node_.attr_int("ceil_mode", 0) != 0);
    const bool include_pad = node_.attr_int("count_include_pad", 0) != 0;
    for (int d = 0; d < 2; ++d) {
      std::vector<int64_t>& count = d == 0 ? rows_ : cols_;
      count.assign(static_cast<size_t>(g_.out[d]), 0);
      for (int64_t o = 0; o < g_.out[d]; ++o) {
        for (int64_t k = 0; k < g_.kernel[d]; ++k) {
          const int64_t at = o * g_.strides[d] - g_.pads_begin[d] + k * g_.dilations[d];
          const bool counts =
              include_pad ? at >= -g_.pads_begin[d] && at < g_.in[d] + g_.pads_end[d] : at >= 0 && at < g_.in[d];
          count[static_cast<size_t>(o)] += counts ? 1 : 0;
        }
      }
    }
    out.assign(1, {DType::kFloat32, {x.dim(0), x.dim(1), g_.out[0], g_.out[1]}});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const Tensor& xt = *in[0];
    const int64_t planes = xt.dim(0) * xt.dim(1), h = xt.dim(2), w = xt.dim(3);
    const int64_t oh = g_.out[0], ow = g_.out[1];
    const int64_t kh = g_.kernel[0], kw = g_.kernel[1], sh = g_.strides[0], sw = g_.strides[1];
    const int64_t dh = g_.dilations[0], dw = g_.dilations[1], ph = g_.pads_begin[0], pw = g_.pads_begin[1];
    // Output columns [j_lo, j_hi) read only columns inside [0, w).
    int64_t j_lo = 0;
    while (j_lo < ow && j_lo * sw - pw < 0) ++j_lo;
    int64_t j_hi = ow;
    while (j_hi > j_lo && (j_hi - 1) * sw - pw + (kw - 1) * dw >= w) --j_hi;
    const float* x = xt.data<float>();
    float* y = out[0]->data<float>();
    parallel_for(pool, planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const float* xp = x + p * h * w;
        float* yp = y + p * oh * ow;
        for (int64_t i = 0; i < oh; ++i) {
          float* yr = yp + i * ow;
          std::fill(yr, yr + ow, 0.0f);
          for (int64_t ki = 0; ki < kh; ++ki) {
            const int64_t r = i * sh - ph + ki * dh;
            if (r < 0 || r >= h) continue;
            const float* xr = xp + r * w;
            for (int64_t j = 0; j < j_lo; ++j) add_checked(yr, xr, j, sw, pw, kw, dw, w);
            for (int64_t j = j_lo; j < j_hi; ++j) {
              const float* xc = xr + j * sw - pw;
              float s = yr[j];
              for (int64_t kj = 0; kj < kw; ++kj) s += xc[kj * dw];
              yr[j] = s;
            }
            for (int64_t j = std::max(j_lo, j_hi); j < ow; ++j) add_checked(yr, xr, j, sw, pw, kw, dw, w);
          }
          for (int64_t j = 0; j < ow; ++j) {
            const int64_t divisor = rows_[static_cast<size_t>(i)] * cols_[static_cast<size_t>(j)];
            yr[j] = divisor > 0 ? yr[j] / static_cast<float>(divisor) : 0.0f;
          }
        }
      }
    });
  }

 private:
  static void add_checked(float* yr, const float* xr, int64_t j, int64_t sw, int64_t pw, int64_t kw, int64_t dw,
                          int64_t w) {
    float s = yr[j];
    for (int64_t kj = 0; kj < kw; ++kj) {
      const int64_t c = j * sw - pw + kj * dw;
      if (c >= 0 && c < w) s += xr[c];
    }
    yr[j] = s;
  }

  Node node_;
  int64_t opset_;
  mutable WindowGeometry g_;                  // set by infer()
  mutable std::vector<int64_t> rows_, cols_;  // taps counted per output row / column
};

}  // namespace

std::unique_ptr<Step> make_avgpool_f32_step(const Node& node, int64_t opset) {
  return std::make_unique<AvgPoolF32Step>(node, opset);
}

}  // namespace kvant
