// HardSigmoid, HardSwish and a Dropout whose mask is read, on float32, with
// the reference's float operations in its order (src/ops/activation.cc), so
// bit-exact:
//   HardSigmoid(x) = max(0, min(1, alpha * x + beta))
//   x * HardSigmoid(x)   (opset < 14 exporters' hard swish: HardSigmoid then Mul)
//   HardSwish(x) = x * max(0, min(1, x / 6 + 0.5))
//   Dropout (inference, opset 10+): y = x, mask = true everywhere.
// Elementwise in chunks over the thread pool. Also the unit-dim view that
// lets a 1-D Conv run as a 2-D one.
#include <algorithm>
#include <cstring>

#include "kernels/sconv.h"
#include "runtime/steps_fp32.h"

namespace kvant {

namespace {

constexpr int64_t kChunk = 8192;

class HardStep : public Step {
 public:
  enum class Kind { kSigmoid, kSigmoidTimesX, kSwish };
  HardStep(Kind kind, float alpha, float beta) : kind_(kind), alpha_(alpha), beta_(beta) {}
  std::string kernel() const override {
    return kind_ == Kind::kSigmoid ? "hard_sigmoid_f32"
           : kind_ == Kind::kSwish ? "hard_swish_f32"
                                   : "x_hard_sigmoid_f32";
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs float32, got " + in[0]->describe());
    }
    out.assign(1, {DType::kFloat32, in[0]->shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const int64_t n = in[0]->numel();
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    const float alpha = alpha_, beta = beta_;
    parallel_for(pool, (n + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1) {
      const int64_t begin = c0 * kChunk, end = std::min(n, c1 * kChunk);
      switch (kind_) {
        case Kind::kSigmoid:
          for (int64_t i = begin; i < end; ++i) y[i] = std::max(0.0f, std::min(1.0f, alpha * x[i] + beta));
          break;
        case Kind::kSigmoidTimesX:
          hard_swish_f32(x + begin, y + begin, end - begin, alpha, beta);  // as a conv's epilogue
          break;
        case Kind::kSwish:
          hard_swish_op_f32(x + begin, y + begin, end - begin);  // as a conv's epilogue
          break;
      }
    });
  }

 private:
  Kind kind_;
  float alpha_, beta_;
};

class DropoutMaskStep : public Step {
 public:
  explicit DropoutMaskStep(int64_t opset) : opset_(opset) {}  // opset >= 10 (a bool mask)
  std::string kernel() const override { return "dropout_copy+mask"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    // Inference form only: training_mode (opset 12+) constant false, or ratio 0.
    if (opset_ >= 12 && in.size() > 2 && in[2] != nullptr && in[2]->numel() > 0 && in[2]->get_as_int64(0) != 0) {
      const double ratio = in.size() > 1 && in[1] != nullptr ? in[1]->get_as_double(0) : 0.5;
      if (ratio != 0) {
        throw Error(ErrorCode::kUnsupported, name + ": training_mode = true (random dropout) is not supported");
      }
    }
    if (dtype_bits(x.dtype()) < 8)
      throw Error(ErrorCode::kInvalidArgument, name + ": unsupported input " + x.describe());
    out.assign(2, {x.dtype(), x.shape()});
    out[1].dtype = DType::kBool;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    if (out[0] != nullptr && in[0]->nbytes() > 0) std::memcpy(out[0]->raw(), in[0]->raw(), in[0]->nbytes());
    if (out.size() < 2 || out[1] == nullptr) return;
    std::memset(out[1]->raw(), 1, out[1]->nbytes());  // bool true
  }

 private:
  int64_t opset_;
};

class UnitDimViewStep : public Step {
 public:
  UnitDimViewStep(int64_t axis, bool insert) : axis_(axis), insert_(insert) {}
  std::string kernel() const override { return insert_ ? "view (unit dim added)" : "view (unit dim dropped)"; }
  Kind kind() const override { return Kind::kView; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    shape_ = in[0]->shape();
    const auto axis = static_cast<size_t>(axis_);
    if (insert_ ? axis > shape_.size() : axis >= shape_.size() || shape_[axis] != 1) {
      throw Error(ErrorCode::kInvalidArgument, name + ": no unit dim " + std::to_string(axis_) + " to " +
                                                   (insert_ ? "add to " : "drop from ") + in[0]->describe());
    }
    if (insert_) {
      shape_.insert(shape_.begin() + static_cast<std::ptrdiff_t>(axis), 1);
    } else {
      shape_.erase(shape_.begin() + static_cast<std::ptrdiff_t>(axis));
    }
    out.assign(1, {in[0]->dtype(), shape_});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    *out[0] = in[0]->reshaped(shape_);
  }

 private:
  int64_t axis_;
  bool insert_;
  mutable Shape shape_;  // planned by infer()
};

}  // namespace

std::unique_ptr<Step> make_unit_dim_view_step(int64_t axis, bool insert) {
  return std::make_unique<UnitDimViewStep>(axis, insert);
}

std::unique_ptr<Step> make_hard_sigmoid_step(float alpha, float beta, bool times_x) {
  return std::make_unique<HardStep>(times_x ? HardStep::Kind::kSigmoidTimesX : HardStep::Kind::kSigmoid, alpha, beta);
}
std::unique_ptr<Step> make_hard_swish_step() { return std::make_unique<HardStep>(HardStep::Kind::kSwish, 0.0f, 0.0f); }
std::unique_ptr<Step> make_dropout_mask_step(int64_t opset) { return std::make_unique<DropoutMaskStep>(opset); }

}  // namespace kvant
