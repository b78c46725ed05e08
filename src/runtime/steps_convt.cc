// ConvTranspose, 2-D, float32 NCHW, as a GEMM and a scatter (col2im):
//   X [N, C, H, W], W [C, M/group, KH, KW], per batch n and group g:
//   cols[(m, kh, kw), (ih, iw)] = sum_c W[c, m, kh, kw] X[n, c, ih, iw]    (sgemm, W^T packed once)
//   y[n, m, ih * sh - ph + kh * dh, iw * sw - pw + kw * dw] += cols[...]  (positions inside the output)
//   y starts at bias[m] (or 0).
// Output size, pads, output_padding, output_shape and auto_pad as the
// reference (src/ops/conv.cc): full = s (in - 1) + output_padding + (k - 1) d + 1,
// out = full - pad_begin - pad_end. The reference adds, per output, the
// input channels in order in float; here the GEMM's FMA chain over c does
// the same sum with other roundings, and overlapping taps (stride < kernel)
// add in (kh, kw) order after it: a tolerance in the test, not bit-exact.
#include <algorithm>
#include <cstring>

#include "kernels/sgemm.h"
#include "runtime/steps_fp32.h"

namespace kvant {

namespace {

class ConvTransposeStep : public Step {
 public:
  ConvTransposeStep(const Node& node, const Tensor& weight, const Tensor* bias) : node_(node) {
    group_ = node.attr_int("group", 1);
    in_channels_ = weight.dim(0);
    out_per_group_ = weight.dim(1);
    kh_ = weight.dim(2);
    kw_ = weight.dim(3);
    const int64_t in_per_group = in_channels_ / group_;
    const int64_t rows = out_per_group_ * kh_ * kw_;
    // Per group, A = W_g^T: rows (m, kh, kw), columns c.
    std::vector<float> a(static_cast<size_t>(rows * in_per_group));
    for (int64_t g = 0; g < group_; ++g) {
      for (int64_t c = 0; c < in_per_group; ++c) {
        const float* wc = weight.data<float>() + (g * in_per_group + c) * rows;
        for (int64_t r = 0; r < rows; ++r) a[static_cast<size_t>(r * in_per_group + c)] = wc[r];
      }
      packed_.push_back(sgemm_pack_a(a.data(), static_cast<int>(rows), static_cast<int>(in_per_group)));
    }
    if (bias != nullptr) bias_.assign(bias->data<float>(), bias->data<float>() + bias->numel());
  }
  std::string kernel() const override {
    return std::string("conv_transpose_gemm/") + (packed_.empty() ? "" : packed_[0].kernel_name());
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() != 4 || x.dim(1) != in_channels_) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": needs float32 [N, " + std::to_string(in_channels_) + ", H, W], got " + x.describe());
    }
    const int64_t kernel[2] = {kh_, kw_};
    const std::vector<int64_t> strides = node_.attr_ints("strides", {1, 1});
    const std::vector<int64_t> dilations = node_.attr_ints("dilations", {1, 1});
    const std::vector<int64_t> pads = node_.attr_ints("pads", {0, 0, 0, 0});
    const std::vector<int64_t> output_padding = node_.attr_ints("output_padding", {0, 0});
    std::vector<int64_t> output_shape = node_.attr_ints("output_shape");
    if (output_shape.size() == 4) output_shape.erase(output_shape.begin(), output_shape.begin() + 2);
    const std::string auto_pad = node_.attr_string("auto_pad", "NOTSET");
    for (int d = 0; d < 2; ++d) {
      const auto i = static_cast<size_t>(d);
      const int64_t in_size = x.dim(2 + d);
      strides_[d] = strides[i];
      dilations_[d] = dilations[i];
      const int64_t full = strides[i] * (in_size - 1) + output_padding[i] + (kernel[d] - 1) * dilations[i] + 1;
      if (!output_shape.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
        const int64_t target = !output_shape.empty() ? output_shape[i] : in_size * strides[i];
        const int64_t total = full - target;
        const int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);  // floor(total / 2)
        pad_begin_[d] = auto_pad == "SAME_UPPER" ? half : total - half;
        out_[d] = target;
      } else {
        pad_begin_[d] = auto_pad == "NOTSET" ? pads[i] : 0;
        out_[d] = full - pad_begin_[d] - (auto_pad == "NOTSET" ? pads[i + 2] : 0);
      }
      if (out_[d] < 0) throw Error(ErrorCode::kInvalidArgument, name + ": pads are larger than the output");
    }
    out.assign(1, {DType::kFloat32, {x.dim(0), out_per_group_ * group_, out_[0], out_[1]}});
  }
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    return static_cast<size_t>(out_per_group_ * kh_ * kw_ * in[0]->dim(2) * in[0]->dim(3)) * sizeof(float);
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const Tensor& xt = *in[0];
    const int64_t batch = xt.dim(0), h = xt.dim(2), w = xt.dim(3), hw = h * w;
    const int64_t oh = out_[0], ow = out_[1];
    const int64_t in_per_group = in_channels_ / group_;
    const int64_t rows = out_per_group_ * kh_ * kw_;
    const int64_t out_channels = out_per_group_ * group_;
    auto* cols = reinterpret_cast<float*>(scratch);
    float* y = out[0]->data<float>();
    for (int64_t n = 0; n < batch; ++n) {
      for (int64_t g = 0; g < group_; ++g) {
        const float* xg = xt.data<float>() + (n * in_channels_ + g * in_per_group) * hw;
        sgemm_packed_a(static_cast<int>(rows), static_cast<int>(hw), static_cast<int>(in_per_group),
                       packed_[static_cast<size_t>(g)], xg, static_cast<int>(hw), cols, static_cast<int>(hw), nullptr,
                       SgemmActivation::none());
        // col2im, output channels over the pool.
        parallel_for(pool, out_per_group_, [&](int64_t m0, int64_t m1) {
          for (int64_t m = m0; m < m1; ++m) {
            const int64_t channel = g * out_per_group_ + m;
            float* yp = y + (n * out_channels + channel) * oh * ow;
            std::fill(yp, yp + oh * ow, bias_.empty() ? 0.0f : bias_[static_cast<size_t>(channel)]);
            for (int64_t a = 0; a < kh_; ++a) {
              for (int64_t b = 0; b < kw_; ++b) {
                const float* cp = cols + ((m * kh_ + a) * kw_ + b) * hw;
                for (int64_t i = 0; i < h; ++i) {
                  const int64_t r = i * strides_[0] - pad_begin_[0] + a * dilations_[0];
                  if (r < 0 || r >= oh) continue;
                  float* yr = yp + r * ow;
                  const float* cr = cp + i * w;
                  for (int64_t j = 0; j < w; ++j) {
                    const int64_t c = j * strides_[1] - pad_begin_[1] + b * dilations_[1];
                    if (c >= 0 && c < ow) yr[c] += cr[j];
                  }
                }
              }
            }
          }
        });
      }
    }
  }

 private:
  Node node_;
  int64_t group_ = 1, in_channels_ = 0, out_per_group_ = 0, kh_ = 1, kw_ = 1;
  std::vector<PackedSgemmA> packed_;  // W_g^T per group
  std::vector<float> bias_;
  mutable int64_t strides_[2] = {1, 1}, dilations_[2] = {1, 1}, pad_begin_[2] = {0, 0}, out_[2] = {0, 0};
};

}  // namespace

std::unique_ptr<Step> make_conv_transpose_step(const Node& node, const Tensor& weight, const Tensor* bias) {
  return std::make_unique<ConvTransposeStep>(node, weight, bias);
}

}  // namespace kvant
