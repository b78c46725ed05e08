// Compiled FP32 steps:
//   sgemm: y[..., N] = clamp(x[..., K] W[K, N] + bias[N]), W packed once
//          (sgemm_packed), split across threads by row or column panels.
#include "runtime/steps.h"

namespace kvant {

namespace {

class SgemmStep : public Step {
 public:
  SgemmStep(const Tensor& weight, bool trans_b, std::vector<float> bias, FloatClamp clamp)
      : bias_(std::move(bias)), clamp_(clamp) {
    const int rows = static_cast<int>(weight.dim(0)), cols = static_cast<int>(weight.dim(1));
    k_ = trans_b ? cols : rows;
    n_ = trans_b ? rows : cols;
    packed_ = sgemm_pack_b(weight.data<float>(), k_, n_, trans_b);
  }
  std::string kernel() const override { return std::string("sgemm_packed/") + packed_.kernel_name(); }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() < 1 || x.shape().back() != k_) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": input " + x.describe() + " does not match the weight's K " + std::to_string(k_));
    }
    Shape shape = x.shape();
    shape.back() = n_;
    out.assign(1, {DType::kFloat32, shape});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const int64_t m = in[0]->numel() / k_;
    const float* a = in[0]->data<float>();
    float* y = out[0]->data<float>();
    const SgemmActivation act = clamp_.activation();
    const float* bias = bias_.empty() ? nullptr : bias_.data();
    sgemm_packed(static_cast<int>(m), n_, k_, a, k_, packed_, y, n_, bias, act, pool);
  }

 private:
  int k_ = 0, n_ = 0;
  PackedSgemmB packed_;
  std::vector<float> bias_;
  FloatClamp clamp_;
};

}  // namespace

std::unique_ptr<Step> make_sgemm_step(const Tensor& weight, bool trans_b, std::vector<float> bias, FloatClamp clamp) {
  return std::make_unique<SgemmStep>(weight, trans_b, std::move(bias), clamp);
}

}  // namespace kvant
