// Standalone BatchNormalization (float and on codes) and LayerNormalization
// over any axis.
//
// BatchNormalization, inference form, float32 X [N, C, d...]:
//   reference: y = (x - mean[c]) / sqrt(var[c] + eps) * scale[c] + B[c] in double
//   here:      a[c] = scale[c] / sqrt(var[c] + eps), b[c] = B[c] - mean[c] * a[c]
//              (double, rounded to float once, as fold_batchnorm does for Conv),
//              y = clamp(x * a[c] + b[c]) in float (no FMA: two roundings).
//   |y - reference| <= 2^-22 (|x a| + |b| + |y|): the roundings of a, b,
//   x * a and the sum, each at most half an ulp of its value.
//
// DQ -> BatchNormalization -> [Relu|Clip] -> Q: y_q = table[c][x_q], one
// 256-code table per channel computed by the compiler with the reference ops
// (the simulation itself), so bit-exact.
//
// InstanceNormalization: the same per (n, c) plane over the spatial dims, with
// scale[c], B[c] (the reference sums in double too).
//
// LayerNormalization (opset 17) over dims [axis, rank), rows of
// n = prod(dims[axis:]) values:
//   mean = sum(x) / n, var = sum((x - mean)^2) / n in double,
//   y = (x - mean) * (1 / sqrt(var + eps)) * scale[i] + B[i] in double, rounded
//   to float: the reference's operations, with the two sums taken as eight
//   interleaved partial sums (so they vectorise) instead of in order; the
//   difference is in the sums' last double bits, far below float rounding
//   (the test allows 1 ulp).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/lookup_u8.h"
#include "ops/op_util.h"
#include "runtime/steps_fp32.h"

namespace kvant {

namespace {

int64_t inner_size(const Shape& s, size_t from) {
  int64_t p = 1;
  for (size_t i = from; i < s.size(); ++i) p *= s[i];
  return p;
}

class BatchNormStep : public Step {
 public:
  BatchNormStep(std::vector<float> a, std::vector<float> b, FloatClamp clamp, bool channels_last)
      : a_(std::move(a)), b_(std::move(b)), clamp_(clamp), channels_last_(channels_last) {}
  std::string kernel() const override {
    return std::string(channels_last_ ? "batchnorm_nhwc_f32" : "batchnorm_f32") + (clamp_.active() ? "+clamp" : "");
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    const auto channels = static_cast<int64_t>(a_.size());
    if (channels_last_) {
      if (x.dtype() != DType::kFloat32 || x.rank() != 4 || x.dim(3) != channels) {
        throw Error(ErrorCode::kInvalidArgument, name + ": needs float32 NHWC [N, H, W, " + std::to_string(channels) +
                                                     "] (one scale per channel), got " + x.describe());
      }
    } else if (x.dtype() != DType::kFloat32 || x.rank() < 2 || x.dim(1) != channels) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs float32 [N, " + std::to_string(channels) +
                                                   ", ...] (one scale per channel), got " + x.describe());
    }
    out.assign(1, {DType::kFloat32, x.shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    if (channels_last_) {
      run_nhwc(*in[0], *out[0], pool);
      return;
    }
    const Tensor& xt = *in[0];
    const int64_t channels = xt.dim(1);
    const int64_t inner = inner_size(xt.shape(), 2);
    const int64_t planes = xt.dim(0) * channels;
    const float* x = xt.data<float>();
    float* y = out[0]->data<float>();
    const float lo = clamp_.lo, hi = clamp_.hi;
    const bool clamp = clamp_.active();
    parallel_for(pool, planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const float a = a_[static_cast<size_t>(p % channels)], b = b_[static_cast<size_t>(p % channels)];
        const float* xp = x + p * inner;
        float* yp = y + p * inner;
        if (clamp) {
          for (int64_t i = 0; i < inner; ++i) {
            const float v = xp[i] * a + b;
            yp[i] = std::min(std::max(v, lo), hi);
          }
        } else {
          for (int64_t i = 0; i < inner; ++i) yp[i] = xp[i] * a + b;
        }
      }
    });
  }

 private:
  // [N, H, W, C]: one pixel's C values per row, a[c] and b[c] along it; the
  // same float expression as the NCHW loop (no FMA: this file is built
  // without -mfma), so the two layouts give the same bits.
  void run_nhwc(const Tensor& xt, Tensor& yt, ThreadPool* pool) const {
    const auto channels = static_cast<int64_t>(a_.size());
    const int64_t rows = xt.dim(0) * xt.dim(1) * xt.dim(2);
    const float* x = xt.data<float>();
    float* y = yt.data<float>();
    const float* a = a_.data();
    const float* b = b_.data();
    const float lo = clamp_.lo, hi = clamp_.hi;
    const bool clamp = clamp_.active();
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xp = x + r * channels;
        float* yp = y + r * channels;
        if (clamp) {
          for (int64_t c = 0; c < channels; ++c) {
            const float v = xp[c] * a[c] + b[c];
            yp[c] = std::min(std::max(v, lo), hi);
          }
        } else {
          for (int64_t c = 0; c < channels; ++c) yp[c] = xp[c] * a[c] + b[c];
        }
      }
    });
  }

  std::vector<float> a_, b_;
  FloatClamp clamp_;
  bool channels_last_;
};

class ChannelLookupStep : public Step {
 public:
  ChannelLookupStep(std::vector<uint8_t> tables, int64_t channels, bool x_signed, bool y_signed, Isa isa)
      : tables_(std::move(tables)),
        channels_(channels),
        x_signed_(x_signed),
        y_signed_(y_signed),
        kernel_(&pick_lookup_u8(isa)) {}
  std::string kernel() const override {
    return std::string("channel_lookup_") + (x_signed_ ? "s8" : "u8") + (y_signed_ ? "s8" : "u8") + "/" + kernel_->name;
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    const DType want = x_signed_ ? DType::kInt8 : DType::kUInt8;
    if (x.dtype() != want || x.rank() < 2 || x.dim(1) != channels_) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs " + dtype_name(want) + " [N, " +
                                                   std::to_string(channels_) + ", ...], got " + x.describe());
    }
    out.assign(1, {y_signed_ ? DType::kInt8 : DType::kUInt8, x.shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const Tensor& xt = *in[0];
    const int64_t inner = inner_size(xt.shape(), 2);
    const int64_t planes = xt.dim(0) * channels_;
    const auto* x = static_cast<const uint8_t*>(xt.raw());
    auto* y = static_cast<uint8_t*>(out[0]->raw());
    parallel_for(pool, planes, [&](int64_t p0, int64_t p1) {
      while (p0 < p1) {  // one kernel call per run of channels within an image
        const int64_t c = p0 % channels_, n = std::min(p1 - p0, channels_ - c);
        kernel_->run_planes(tables_.data() + c * 256, x + p0 * inner, y + p0 * inner, inner, n);
        p0 += n;
      }
    });
  }

 private:
  std::vector<uint8_t> tables_;
  int64_t channels_;
  bool x_signed_, y_signed_;
  const LookupU8Kernel* kernel_;  // the byte lookup of kernels/lookup_u8.h, picked once
};

}  // namespace

void row_mean_inv_std(const float* xr, int64_t cols, double eps, double& mean_out, double& inv_std_out) {
  double part[8] = {};
  int64_t i = 0;
  for (; i + 8 <= cols; i += 8) {
    for (int l = 0; l < 8; ++l) part[l] += static_cast<double>(xr[i + l]);
  }
  double sum = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
  for (; i < cols; ++i) sum += static_cast<double>(xr[i]);
  const double mean = sum / static_cast<double>(cols);
  std::fill(part, part + 8, 0.0);
  for (i = 0; i + 8 <= cols; i += 8) {
    for (int l = 0; l < 8; ++l) {
      const double d = static_cast<double>(xr[i + l]) - mean;
      part[l] += d * d;
    }
  }
  double sq = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
  for (; i < cols; ++i) {
    const double d = static_cast<double>(xr[i]) - mean;
    sq += d * d;
  }
  mean_out = mean;
  inv_std_out = 1.0 / std::sqrt(sq / static_cast<double>(cols) + eps);
}

namespace {

// One row of LayerNormalization / InstanceNormalization: mean and variance
// in double (row_mean_inv_std), then
// y[i] = float((x[i] - mean) * inv_std * g[i * gs] + b[i * bs]) in double.
void normalize_row(const float* xr, float* yr, int64_t cols, double eps, const double* g, int64_t gs, const double* b,
                   int64_t bs) {
  double mean = 0.0, inv_std = 0.0;
  row_mean_inv_std(xr, cols, eps, mean, inv_std);
  for (int64_t i = 0; i < cols; ++i) {
    yr[i] = static_cast<float>((static_cast<double>(xr[i]) - mean) * inv_std * g[i * gs] + b[i * bs]);
  }
}

class LayerNormAxisStep : public Step {
 public:
  LayerNormAxisStep(int64_t axis, float eps, Tensor scale, Tensor bias)
      : axis_(axis), eps_(eps), scale_(std::move(scale)), bias_(std::move(bias)) {}
  std::string kernel() const override { return "layernorm_axis_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    const int64_t rank = x.rank();
    if (x.dtype() != DType::kFloat32 || rank == 0 || axis_ < -rank || axis_ >= rank) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": needs float32 of rank > axis " + std::to_string(axis_) + ", got " + x.describe());
    }
    const size_t axis = static_cast<size_t>(axis_ < 0 ? axis_ + rank : axis_);
    const Shape norm(x.shape().begin() + static_cast<std::ptrdiff_t>(axis), x.shape().end());
    const int64_t inner = inner_size(x.shape(), axis);
    // scale / B broadcast (unidirectionally) to the normalized shape.
    auto expand = [&](const Tensor& t, const char* what, std::vector<double>& full) {
      full.assign(static_cast<size_t>(inner), 0.0);
      if (!t.defined()) return;
      bool ok = t.dtype() == DType::kFloat32 && t.rank() <= static_cast<int>(norm.size());
      for (int d = 0; ok && d < t.rank(); ++d) {
        const int64_t td = t.dim(t.rank() - 1 - d), nd = norm[norm.size() - 1 - static_cast<size_t>(d)];
        ok = td == nd || td == 1;
      }
      if (!ok) {
        throw Error(ErrorCode::kInvalidArgument, name + ": " + what + " " + t.describe() +
                                                     " does not broadcast to the normalized shape " +
                                                     shape_to_string(norm));
      }
      const std::vector<int64_t> strides = broadcast_strides(t.shape(), norm);
      const std::vector<int64_t> s[1] = {strides};
      size_t k = 0;
      const float* v = t.data<float>();
      for_each_index(norm, s, [&](const int64_t* off) { full[k++] = static_cast<double>(v[off[0]]); });
    };
    expand(scale_, "scale", gamma_);
    expand(bias_, "B", beta_);
    cols_ = inner;
    out.assign(1, {DType::kFloat32, x.shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const int64_t cols = cols_;
    const int64_t rows = cols == 0 ? 0 : in[0]->numel() / cols;
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    const double* g = gamma_.data();
    const double* b = beta_.data();
    const double eps = static_cast<double>(eps_);
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        normalize_row(x + r * cols, y + r * cols, cols, eps, g, 1, b, 1);
      }
    });
  }

 private:
  int64_t axis_;
  float eps_;
  Tensor scale_, bias_;
  mutable std::vector<double> gamma_, beta_;  // expanded to a row by infer()
  mutable int64_t cols_ = 0;
};

class InstanceNormStep : public Step {
 public:
  InstanceNormStep(float eps, std::vector<double> scale, std::vector<double> bias)
      : eps_(eps), scale_(std::move(scale)), bias_(std::move(bias)) {}
  std::string kernel() const override { return "instancenorm_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() < 3 || x.dim(1) != static_cast<int64_t>(scale_.size())) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": needs float32 [N, " + std::to_string(scale_.size()) + ", spatial...], got " + x.describe());
    }
    out.assign(1, {DType::kFloat32, x.shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const Tensor& xt = *in[0];
    const int64_t channels = xt.dim(1);
    const int64_t cols = inner_size(xt.shape(), 2);
    const float* x = xt.data<float>();
    float* y = out[0]->data<float>();
    const double eps = static_cast<double>(eps_);
    parallel_for(pool, xt.dim(0) * channels, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const auto c = static_cast<size_t>(p % channels);
        normalize_row(x + p * cols, y + p * cols, cols, eps, &scale_[c], 0, &bias_[c], 0);
      }
    });
  }

 private:
  float eps_;
  std::vector<double> scale_, bias_;
};

}  // namespace

std::unique_ptr<Step> make_batchnorm_step(std::vector<float> a, std::vector<float> b, FloatClamp clamp,
                                          bool channels_last) {
  return std::make_unique<BatchNormStep>(std::move(a), std::move(b), clamp, channels_last);
}

std::unique_ptr<Step> make_channel_lookup_step(std::vector<uint8_t> tables, int64_t channels, bool x_signed,
                                               bool y_signed, Isa isa) {
  return std::make_unique<ChannelLookupStep>(std::move(tables), channels, x_signed, y_signed, isa);
}

std::unique_ptr<Step> make_instancenorm_step(float eps, std::vector<double> scale, std::vector<double> bias) {
  return std::make_unique<InstanceNormStep>(eps, std::move(scale), std::move(bias));
}

std::unique_ptr<Step> make_layernorm_axis_step(int64_t axis, float eps, Tensor scale, Tensor bias) {
  return std::make_unique<LayerNormAxisStep>(axis, eps, std::move(scale), std::move(bias));
}

}  // namespace kvant
