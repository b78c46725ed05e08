#include "runtime/steps_conv.h"

#include <optional>

#include "kernels/qconv.h"
#include "kernels/sconv.h"
#include "kernels/sconv_nhwc.h"

namespace kvant {

ConvShape conv_shape(const std::string& name, const QConvFacts& f, const Shape& x, const Shape& w) {
  if (x.size() != 4)
    throw Error(ErrorCode::kInvalidArgument, name + ": expects a 4-D input, got " + shape_to_string(x));
  if (x[1] != w[1] * f.group) {
    throw Error(ErrorCode::kInvalidArgument, name + ": input has " + std::to_string(x[1]) +
                                                 " channels, the weight expects " + std::to_string(w[1] * f.group));
  }
  ConvShape s;
  s.batch = static_cast<int>(x[0]);
  s.c_in = static_cast<int>(x[1]);
  s.h_in = static_cast<int>(x[2]);
  s.w_in = static_cast<int>(x[3]);
  s.c_out = static_cast<int>(w[0]);
  s.kh = static_cast<int>(w[2]);
  s.kw = static_cast<int>(w[3]);
  s.stride_h = static_cast<int>(f.strides[0]);
  s.stride_w = static_cast<int>(f.strides[1]);
  s.dil_h = static_cast<int>(f.dilations[0]);
  s.dil_w = static_cast<int>(f.dilations[1]);
  s.group = static_cast<int>(f.group);
  int64_t pads[4] = {f.pads[0], f.pads[1], f.pads[2], f.pads[3]};
  const int64_t in[2] = {x[2], x[3]}, k[2] = {w[2], w[3]};
  for (int d = 0; d < 2; ++d) {
    const int64_t extent = f.dilations[static_cast<size_t>(d)] * (k[d] - 1) + 1;
    if (f.auto_pad == "VALID") {
      pads[d] = pads[d + 2] = 0;
    } else if (f.auto_pad != "NOTSET") {
      const int64_t stride = f.strides[static_cast<size_t>(d)];
      const int64_t out = (in[d] + stride - 1) / stride;
      const int64_t total = std::max<int64_t>(0, (out - 1) * stride + extent - in[d]);
      pads[d] = f.auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      pads[d + 2] = total - pads[d];
    }
    const int64_t span = in[d] + pads[d] + pads[d + 2] - extent;
    if (span < 0) throw Error(ErrorCode::kInvalidArgument, name + ": the kernel is larger than the padded input");
    const int64_t out = span / f.strides[static_cast<size_t>(d)] + 1;
    (d == 0 ? s.h_out : s.w_out) = static_cast<int>(out);
  }
  s.pad_top = static_cast<int>(pads[0]);
  s.pad_left = static_cast<int>(pads[1]);
  return s;
}

namespace {

// KVANT_ISA (or the CPU's best), read once: the level SConv's own default
// constructors use.
Isa conv_isa() {
  static const Isa isa = selected_isa();
  return isa;
}

bool same_shape(const ConvShape& a, const ConvShape& b) {
  return a.batch == b.batch && a.c_in == b.c_in && a.h_in == b.h_in && a.w_in == b.w_in && a.h_out == b.h_out &&
         a.w_out == b.w_out && a.pad_top == b.pad_top && a.pad_left == b.pad_left;
}

// An NHWC activation shape [N, H, W, C] read as NCHW [N, C, H, W].
Shape nchw_of(const Shape& nhwc) { return nhwc.size() == 4 ? Shape{nhwc[0], nhwc[3], nhwc[1], nhwc[2]} : nhwc; }

class QConvStep : public Step {
 public:
  QConvStep(const QConvFacts& facts, QConvParams params, std::vector<int8_t> weight, Shape w_shape, Isa isa,
            int threads)
      : facts_(facts), params_(std::move(params)), weight_(std::move(weight)), w_shape_(std::move(w_shape)), isa_(isa) {
    params_.max_threads = threads;
  }
  std::string kernel() const override { return kernel_ ? kernel_->kernel_name() : "qconv"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const DType want = params_.x_signed ? DType::kInt8 : DType::kUInt8;
    if (in[0]->dtype() != want)
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": expected " + dtype_name(want) + " input, got " + in[0]->describe());
    const ConvShape s = conv_shape(name, facts_, params_.nhwc ? nchw_of(in[0]->shape()) : in[0]->shape(), w_shape_);
    if (!kernel_ || !same_shape(kernel_->params().shape, s)) {
      QConvParams p = params_;
      p.shape = s;
      kernel_.emplace(p, weight_.data(), isa_);
    }
    const Shape y =
        params_.nhwc ? Shape{s.batch, s.h_out, s.w_out, s.c_out} : Shape{s.batch, s.c_out, s.h_out, s.w_out};
    out.assign(1, {params_.y_signed ? DType::kInt8 : DType::kUInt8, y});
  }
  size_t scratch_bytes(std::span<const Tensor* const>) const override { return kernel_ ? kernel_->scratch_bytes() : 0; }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    kernel_->run(in[0]->raw(), out[0]->raw(), scratch, pool);
  }

 private:
  QConvFacts facts_;
  QConvParams params_;
  std::vector<int8_t> weight_;
  Shape w_shape_;
  Isa isa_;
  mutable std::optional<QConv> kernel_;
};

class SConvStep : public Step {
 public:
  SConvStep(const QConvFacts& facts, const Tensor& weight, const Tensor* bias, const FloatClamp& clamp, int threads,
            bool residual, SConvEpilogue epilogue, bool nhwc, HardSwishParams hard_swish = {})
      : facts_(facts),
        weight_(weight),
        act_(clamp.activation()),
        epilogue_(epilogue),
        threads_(threads),
        residual_(residual),
        nhwc_(nhwc),
        hard_swish_(hard_swish) {
    if (residual_ && epilogue_ != SConvEpilogue::kNone)
      throw Error(ErrorCode::kInternal, "a fused residual Add cannot be followed by a fused epilogue");
    if (bias != nullptr) bias_.assign(bias->data<float>(), bias->data<float>() + bias->numel());
  }
  std::string kernel() const override {
    std::string k = kernel_ ? kernel_->kernel_name() : nhwc_kernel_ ? nhwc_kernel_->kernel_name() : "sconv";
    if (epilogue_ == SConvEpilogue::kSilu) k += "+silu";
    if (epilogue_ == SConvEpilogue::kHardSwish) k += "+hardswish";
    return k;
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32)
      throw Error(ErrorCode::kInvalidArgument, name + ": expected float32 input, got " + in[0]->describe());
    const ConvShape s = conv_shape(name, facts_, nhwc_ ? nchw_of(in[0]->shape()) : in[0]->shape(), weight_.shape());
    const float* bias = bias_.empty() ? nullptr : bias_.data();
    if (nhwc_ && (!nhwc_kernel_ || !same_shape(nhwc_kernel_->shape(), s))) {
      nhwc_kernel_.emplace(s, weight_.data<float>(), bias, act_, isa_, epilogue_, hard_swish_);
    } else if (!nhwc_ && (!kernel_ || !same_shape(kernel_->shape(), s))) {
      kernel_.emplace(s, weight_.data<float>(), bias, act_, isa_, epilogue_, hard_swish_);
    }
    const Shape y = nhwc_ ? Shape{s.batch, s.h_out, s.w_out, s.c_out} : Shape{s.batch, s.c_out, s.h_out, s.w_out};
    if (residual_) {
      if (in[1]->dtype() != DType::kFloat32 || in[1]->shape() != y) {
        throw Error(ErrorCode::kInvalidArgument, name + ": the fused Add's other input is " + in[1]->describe() +
                                                     ", the convolution gives float32" + shape_to_string(y));
      }
      if (nhwc_ ? !nhwc_kernel_->supports_residual() : !kernel_->supports_residual())
        throw Error(ErrorCode::kInvalidArgument, name + ": a depthwise convolution cannot take a fused Add");
    }
    out.assign(1, {DType::kFloat32, y});
  }
  size_t scratch_bytes(std::span<const Tensor* const>) const override {
    if (nhwc_) return nhwc_kernel_ ? nhwc_kernel_->scratch_bytes(threads_) : 0;
    return kernel_ ? kernel_->scratch_bytes(threads_) : 0;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    if (nhwc_) {
      return nhwc_kernel_->run(in[0]->data<float>(), out[0]->data<float>(), scratch, pool,
                               residual_ ? in[1]->data<float>() : nullptr);
    }
    kernel_->run(in[0]->data<float>(), out[0]->data<float>(), scratch, pool,
                 residual_ ? in[1]->data<float>() : nullptr);
  }

 private:
  QConvFacts facts_;
  Tensor weight_;
  std::vector<float> bias_;
  SgemmActivation act_;
  SConvEpilogue epilogue_;
  int threads_;
  bool residual_;
  bool nhwc_;                   // x and y [N, H, W, C]: an NhwcConv of the layout pass (SConvNhwc)
  HardSwishParams hard_swish_;  // SConvEpilogue::kHardSwish
  Isa isa_ = conv_isa();        // as the kernels' own default
  mutable std::optional<SConv> kernel_;
  mutable std::optional<SConvNhwc> nhwc_kernel_;
};

}  // namespace

bool conv_facts(const Node& node, QConvFacts& facts) {
  if (node.inputs.size() < 2) return false;
  const std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
  if (!kernel.empty() && kernel.size() != 2) return false;
  facts.strides = node.attr_ints("strides", {1, 1});
  facts.dilations = node.attr_ints("dilations", {1, 1});
  facts.pads = node.attr_ints("pads", {0, 0, 0, 0});
  facts.auto_pad = node.attr_string("auto_pad", "NOTSET");
  facts.group = node.attr_int("group", 1);
  if (facts.strides.size() != 2 || facts.dilations.size() != 2 || facts.pads.size() != 4 || facts.group < 1)
    return false;
  for (int64_t v : facts.strides)
    if (v < 1) return false;
  for (int64_t v : facts.dilations)
    if (v < 1) return false;
  for (int64_t v : facts.pads)
    if (v < 0) return false;
  return facts.auto_pad == "NOTSET" || facts.auto_pad == "VALID" || facts.auto_pad == "SAME_UPPER" ||
         facts.auto_pad == "SAME_LOWER";
}

std::unique_ptr<Step> make_qconv_step(const QConvFacts& facts, const QuantScalar& x, const QuantScalar& y,
                                      const std::vector<int8_t>& weight, const Shape& w_shape,
                                      const std::vector<float>& w_scale, const std::vector<int32_t>& w_zp,
                                      const std::vector<int32_t>& bias, const FloatClamp& clamp, Isa isa, int threads,
                                      bool nhwc) {
  QConvParams p;
  p.nhwc = nhwc;
  p.x_signed = x.is_signed;
  p.x_scale = x.scale;
  p.x_zp = x.zero_point;
  p.y_signed = y.is_signed;
  p.y_scale = y.scale;
  p.y_zp = y.zero_point;
  p.w_scale = w_scale;
  p.w_zp = w_zp;
  p.bias = bias;
  int32_t lo = 0, hi = 0;
  quantized_bounds(clamp, y, lo, hi);
  p.out_min = lo;
  p.out_max = hi;
  return std::make_unique<QConvStep>(facts, std::move(p), weight, w_shape, isa, threads);
}

std::unique_ptr<Step> make_sconv_step(const QConvFacts& facts, const Tensor& weight, const Tensor* bias,
                                      const FloatClamp& clamp, int threads, bool residual, bool silu, bool nhwc,
                                      std::optional<HardSwishParams> hard_swish) {
  const SConvEpilogue epilogue = silu         ? SConvEpilogue::kSilu
                                 : hard_swish ? SConvEpilogue::kHardSwish
                                              : SConvEpilogue::kNone;
  return std::make_unique<SConvStep>(facts, weight, bias, clamp, threads, residual, epilogue, nhwc,
                                     hard_swish.value_or(HardSwishParams{}));
}

}  // namespace kvant
