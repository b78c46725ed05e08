// Layer normalization and GELU. Layer normalization over the last axis, the step behind the decomposed
// form exporters write at opsets below 17 (compile.cc, match_layernorm):
//   m = ReduceMean(x, -1); d = x - m; v = ReduceMean(d^2, -1)
//   y = d / sqrt(v + eps) [* gamma] [+ beta]
// and behind LayerNormalization itself (axis -1). Per row, the same float
// operations as the graph: the means are summed in double (as the reference
// ReduceMean does, here in eight interleaved parts) and rounded to float,
// then d, v + eps, the square root, the division and the affine part in
// float, so the result equals the reference up to the order of the sums.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/vmath.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

class LayerNormStep : public Step {
 public:
  LayerNormStep(float eps, std::vector<float> gamma, std::vector<float> beta)
      : eps_(eps), gamma_(std::move(gamma)), beta_(std::move(beta)) {}
  std::string kernel() const override { return "layernorm_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() == 0) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs a float32 tensor of rank >= 1, got " + x.describe());
    }
    const int64_t c = x.shape().back();
    auto fits = [c](const std::vector<float>& v) { return v.size() <= 1 || static_cast<int64_t>(v.size()) == c; };
    if (!fits(gamma_) || !fits(beta_)) {
      throw Error(ErrorCode::kInvalidArgument, name + ": scale/bias of " + std::to_string(gamma_.size()) +
                                                   " values for a last axis of " + std::to_string(c));
    }
    out.assign(1, {DType::kFloat32, x.shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const int64_t cols = in[0]->shape().back();
    const int64_t rows = cols == 0 ? 0 : in[0]->numel() / cols;
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        // Eight interleaved double sums (the reference sums in order; the
        // difference is far below float rounding) so the loops vectorise.
        double part[8] = {};
        int64_t i = 0;
        for (; i + 8 <= cols; i += 8) {
          for (int l = 0; l < 8; ++l) part[l] += xr[i + l];
        }
        double sum = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
        for (; i < cols; ++i) sum += xr[i];
        const float mean = static_cast<float>(sum / static_cast<double>(cols));
        std::fill(part, part + 8, 0.0);
        for (i = 0; i + 8 <= cols; i += 8) {
          for (int l = 0; l < 8; ++l) {
            const float d = xr[i + l] - mean;
            yr[i + l] = d;
            part[l] += d * d;
          }
        }
        double sq = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
        for (; i < cols; ++i) {
          const float d = xr[i] - mean;
          yr[i] = d;
          sq += d * d;
        }
        const float denom = std::sqrt(static_cast<float>(sq / static_cast<double>(cols)) + eps_);
        for (i = 0; i < cols; ++i) {
          float v = yr[i] / denom;
          if (!gamma_.empty()) v *= gamma_[gamma_.size() == 1 ? 0 : static_cast<size_t>(i)];
          if (!beta_.empty()) v += beta_[beta_.size() == 1 ? 0 : static_cast<size_t>(i)];
          yr[i] = v;
        }
      }
    });
  }

 private:
  float eps_;
  std::vector<float> gamma_, beta_;
};

}  // namespace

std::unique_ptr<Step> make_layernorm_step(float eps, std::vector<float> gamma, std::vector<float> beta) {
  return std::make_unique<LayerNormStep>(eps, std::move(gamma), std::move(beta));
}

}  // namespace kvant

namespace kvant {

namespace {

// Two activations that exporters spell as several elementwise nodes, in one
// pass each, with the same float operations in the same order as the nodes
// and the vectorised erf / sigmoid of the Erf / Sigmoid steps:
//   GELU (erf form, below opset 20): y = (x * (erf(x / divisor) + 1)) * half
//   SiLU: y = x * sigmoid(x)
class FusedActivationStep : public Step {
 public:
  enum class Kind { kGeluErf, kSilu };
  FusedActivationStep(Kind kind, float divisor, float half) : kind_(kind), divisor_(divisor), half_(half) {}
  std::string kernel() const override {
    return std::string(kind_ == Kind::kGeluErf ? "gelu_erf_f32/" : "silu_f32/") + vmath_name(vmath_default());
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
    constexpr int64_t kChunk = 4096;
    parallel_for(pool, (n + kChunk - 1) / kChunk, [&](int64_t cb, int64_t ce) {
      const int64_t begin = cb * kChunk, end = std::min(n, ce * kChunk);
      if (kind_ == Kind::kSilu) {
        silu_f32(x + begin, y + begin, end - begin);
      } else {
        gelu_erf_f32(x + begin, y + begin, end - begin, divisor_, half_);
      }
    });
  }

 private:
  Kind kind_;
  float divisor_, half_;
};

}  // namespace

std::unique_ptr<Step> make_gelu_step(float divisor, float half) {
  return std::make_unique<FusedActivationStep>(FusedActivationStep::Kind::kGeluErf, divisor, half);
}
std::unique_ptr<Step> make_silu_step() {
  return std::make_unique<FusedActivationStep>(FusedActivationStep::Kind::kSilu, 1.0f, 1.0f);
}

}  // namespace kvant
