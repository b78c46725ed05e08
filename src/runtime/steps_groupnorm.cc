// GroupNormalization (opset 18, 21) on float32 X [N, C, spatial...] with
// G = num_groups groups of C / G consecutive channels:
//   per (n, g), over its C / G channels and all spatial values (a row of
//   cols = C / G * prod(spatial) floats, contiguous in NCHW):
//     mean = sum(x) / cols, var = sum((x - mean)^2) / cols, in double
//     (row_mean_inv_std: eight interleaved partial sums, as LayerNorm);
//   y = float((x - mean) * (1 / sqrt(var + eps)) * scale[c] + B[c]) in double,
//   scale and B per channel (opset 21) or per group (opset 18: expanded to
//   the group's channels at plan time).
// These are the reference's operations (ops/norm.cc); only the order of the
// two sums differs, in the last bits of a double, so y is within one float
// ulp of the reference's.
#include <algorithm>

#include "runtime/steps_fp32.h"

namespace kvant {

namespace {

class GroupNormStep : public Step {
 public:
  GroupNormStep(float eps, int64_t groups, bool per_channel, std::vector<double> scale, std::vector<double> bias)
      : eps_(eps), groups_(groups), per_channel_(per_channel), scale_(std::move(scale)), bias_(std::move(bias)) {}
  std::string kernel() const override { return "groupnorm_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() < 2) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs float32 [N, C, ...], got " + x.describe());
    }
    const int64_t channels = x.dim(1);
    if (channels % groups_ != 0) {
      throw Error(ErrorCode::kInvalidArgument, name + ": num_groups " + std::to_string(groups_) + " does not divide " +
                                                   std::to_string(channels) + " channels of " + x.describe());
    }
    const auto want = static_cast<size_t>(per_channel_ ? channels : groups_);
    if (scale_.size() != want) {
      throw Error(ErrorCode::kInvalidArgument, name + ": scale and B hold " + std::to_string(scale_.size()) +
                                                   " values; X " + x.describe() + " needs " + std::to_string(want) +
                                                   (per_channel_ ? " (one per channel)" : " (one per group)"));
    }
    if (gamma_.size() != static_cast<size_t>(channels)) {  // per channel, for the run
      gamma_.resize(static_cast<size_t>(channels));
      beta_.resize(static_cast<size_t>(channels));
      const int64_t group_channels = channels / groups_;
      for (int64_t c = 0; c < channels; ++c) {
        const auto k = static_cast<size_t>(per_channel_ ? c : c / group_channels);
        gamma_[static_cast<size_t>(c)] = scale_[k];
        beta_[static_cast<size_t>(c)] = bias_[k];
      }
    }
    out.assign(1, {DType::kFloat32, x.shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const Tensor& xt = *in[0];
    const int64_t channels = xt.dim(1);
    int64_t spatial = 1;
    for (int d = 2; d < xt.rank(); ++d) spatial *= xt.dim(d);
    const int64_t group_channels = channels / groups_;
    const int64_t cols = group_channels * spatial;
    const float* x = xt.data<float>();
    float* y = out[0]->data<float>();
    const double eps = static_cast<double>(eps_);
    parallel_for(pool, xt.dim(0) * groups_, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        double mean = 0.0, inv_std = 0.0;
        if (cols > 0) row_mean_inv_std(xr, cols, eps, mean, inv_std);
        for (int64_t j = 0; j < group_channels; ++j) {
          const auto c = static_cast<size_t>((r % groups_) * group_channels + j);
          const double g = gamma_[c], b = beta_[c];
          const float* xc = xr + j * spatial;
          float* yc = yr + j * spatial;
          for (int64_t i = 0; i < spatial; ++i) {
            yc[i] = static_cast<float>((static_cast<double>(xc[i]) - mean) * inv_std * g + b);
          }
        }
      }
    });
  }

 private:
  float eps_;
  int64_t groups_;
  bool per_channel_;
  std::vector<double> scale_, bias_;          // as given: per channel or per group
  mutable std::vector<double> gamma_, beta_;  // per channel, set by infer()
};

}  // namespace

std::unique_ptr<Step> make_groupnorm_step(float eps, int64_t groups, bool per_channel, std::vector<double> scale,
                                          std::vector<double> bias) {
  return std::make_unique<GroupNormStep>(eps, groups, per_channel, std::move(scale), std::move(bias));
}

}  // namespace kvant
