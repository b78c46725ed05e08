// The dynamic convolution step (steps_conv.h): ONNX Runtime's quantize_dynamic
// pattern for Conv run as one step. Per call: the input's range, scale and
// zero point and its uint8 codes exactly as DynamicQuantizeLinear computes
// them (dynamic_quant.h), then one of two exact integer convolutions:
//
//   gemm   the NHWC GEMM of the INT8 convolution (qconv_gemm.h) with the
//          call's zero point, its int32 accumulators dequantized per block
//          (y = float(acc) * mult[m] + bias[m], multiply then add) and
//          transposed into the NCHW planes;
//   float  depthwise convolutions: the codes minus the zero point as floats
//          (integers in [-255, 255]) through the FP32 depthwise kernel with
//          the integer weights w - w_zp as floats. Every product and partial
//          sum is an integer of magnitude at most 255 * sum_k |w - w_zp|,
//          checked at compile time to be <= 2^24, so the float sums are the
//          int32 accumulators exactly, in any order and with FMA; the same
//          epilogue follows. (A depthwise conv has K = kh * kw: a GEMM per
//          channel would be all overhead.)
//
// Either way the output is bit-identical to the reference graph's
// ConvInteger -> Cast -> Mul -> Add [-> Relu|Clip].
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <optional>

#include "kernels/dynamic_quant.h"
#include "kernels/qconv_gemm.h"
#include "kernels/sconv.h"
#include "runtime/steps_conv.h"

namespace kvant {

namespace {

size_t round64(size_t x) { return (x + 63) / 64 * 64; }

constexpr int64_t kMaxGemmK = 33025;      // gemm_s8.h: int32 exact up to this K
constexpr int64_t kFloatExact = 1 << 24;  // integers floats hold exactly

class DynamicConvStep : public Step {
 public:
  explicit DynamicConvStep(DynamicConvParams p) : p_(std::move(p)), fq_(&pick_float_quant(p_.isa)) {
    const int64_t m = p_.w_shape[0];
    const int64_t k = p_.w_shape[1] * p_.w_shape[2] * p_.w_shape[3];
    zp_.assign(static_cast<size_t>(m), 0);
    for (int64_t j = 0; j < m && !p_.w_zp.empty(); ++j)
      zp_[static_cast<size_t>(j)] = p_.w_zp[p_.w_zp.size() == 1 ? 0 : static_cast<size_t>(j)];
    // Depthwise: the float path when every channel's bound holds.
    bool exact_in_float = p_.facts.group == m && p_.w_shape[1] == 1;
    for (int64_t j = 0; j < m && exact_in_float; ++j) {
      int64_t sum = 0;
      for (int64_t i = 0; i < k; ++i)
        sum += std::abs(p_.weight[static_cast<size_t>(j * k + i)] - zp_[static_cast<size_t>(j)]);
      exact_in_float = 255 * sum <= kFloatExact;
    }
    float_path_ = exact_in_float;
    if (float_path_) {
      wf_.resize(p_.weight.size());
      for (int64_t j = 0; j < m; ++j) {
        for (int64_t i = 0; i < k; ++i)
          wf_[static_cast<size_t>(j * k + i)] =
              static_cast<float>(p_.weight[static_cast<size_t>(j * k + i)] - zp_[static_cast<size_t>(j)]);
      }
      p_.weight = {};
    }
  }
  static bool fits(const DynamicConvParams& p) {
    return p.w_shape.size() == 4 && p.w_shape[1] * p.w_shape[2] * p.w_shape[3] <= kMaxGemmK;
  }
  std::string kernel() const override {
    if (sconv_) return std::string("dynamic_exact_f32/") + sconv_->kernel_name();
    return std::string("dynamic_") + (gemm_ ? gemm_->name() : "conv");
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32)
      throw Error(ErrorCode::kInvalidArgument, name + ": expected float32 input, got " + in[0]->describe());
    const ConvShape s = conv_shape(name, p_.facts, in[0]->shape(), p_.w_shape);
    if (!shape_ || !same(*shape_, s)) {
      shape_ = s;
      if (float_path_) {
        sconv_.emplace(s, wf_.data(), nullptr, SgemmActivation::none(), p_.isa);
      } else {
        QConvParams q;
        q.shape = s;
        q.max_threads = p_.threads;
        q.w_scale = {1.0f};
        gemm_ = std::make_unique<QConvGemm>(q, p_.weight.data(), zp_, p_.isa);
      }
    }
    out.assign(1, {DType::kFloat32, {s.batch, s.c_out, s.h_out, s.w_out}});
  }
  // Scratch: the multipliers, the codes (uint8, or floats on the float
  // path), the kernel's scratch.
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    const auto n = static_cast<size_t>(in[0]->numel());
    const size_t head = round64(zp_.size() * 4) + round64(n * (float_path_ ? 4 : 1));
    if (float_path_) return head + (sconv_ ? sconv_->scratch_bytes(p_.threads) : 0);
    return head + (gemm_ ? gemm_->scratch_bytes(p_.threads) : 0);
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const int64_t total = in[0]->numel();
    const float* x = in[0]->data<float>();
    float lo = 0.0f, hi = 0.0f;
    if (!fq_->range(x, total, &lo, &hi)) throw Error(ErrorCode::kInvalidArgument, name + ": x contains NaN");
    const float scale = (hi - lo) / 255.0f;
    if (!std::isfinite(scale)) throw Error(ErrorCode::kInvalidArgument, name + ": x contains infinite values");
    int32_t zp = 0;
    if (scale > 0.0f) {
      zp = static_cast<int32_t>(std::clamp(std::nearbyint(static_cast<double>(0.0f - lo / scale)), 0.0, 255.0));
    }
    const size_t m = zp_.size();
    auto* mult = reinterpret_cast<float*>(scratch);
    const bool per_channel = p_.w_scale.size() != 1;
    for (size_t j = 0; j < m; ++j) mult[j] = scale * p_.w_scale[per_channel ? j : 0];
    std::byte* codes = scratch + round64(m * 4);
    std::byte* rest = codes + round64(static_cast<size_t>(total) * (float_path_ ? 4 : 1));
    auto* xq = reinterpret_cast<uint8_t*>(codes);
    auto* xf = reinterpret_cast<float*>(codes);
    // The codes, in chunks over the pool (all zero when x is: scale 0, zp 0).
    constexpr int64_t kChunk = 16384;
    parallel_for(pool, (total + kChunk - 1) / kChunk, [&](int64_t b, int64_t e) {
      const int64_t i0 = b * kChunk, i1 = std::min(total, e * kChunk);
      if (scale <= 0.0f) {
        if (float_path_) std::fill(xf + i0, xf + i1, 0.0f);
        if (!float_path_) std::fill(xq + i0, xq + i1, uint8_t{0});
      } else if (float_path_) {
        fq_->quantize_centered(x + i0, i1 - i0, scale, zp, xf + i0);
      } else {
        fq_->quantize(x + i0, i1 - i0, scale, zp, xq + i0);
      }
    });
    const float* bias = p_.bias.empty() ? nullptr : p_.bias.data();
    float* y = out[0]->data<float>();
    if (!float_path_) {
      gemm_->run_dequant(xq, static_cast<uint8_t>(zp), y, reinterpret_cast<uint8_t*>(rest),
                         std::min(p_.threads, pool != nullptr ? pool->size() : 1), pool, fq_->dequant_t, mult, bias,
                         p_.clamp.lo, p_.clamp.hi);
      return;
    }
    sconv_->run(xf, y, rest, pool);
    const ConvShape& s = *shape_;
    const int64_t hw = static_cast<int64_t>(s.h_out) * s.w_out;
    const float clo = p_.clamp.lo, chi = p_.clamp.hi;
    parallel_for(pool, static_cast<int64_t>(s.batch) * s.c_out, [&](int64_t b, int64_t e) {
      for (int64_t plane = b; plane < e; ++plane) {
        const auto j = static_cast<size_t>(plane % s.c_out);
        const float mj = mult[j], bj = bias != nullptr ? bias[j] : 0.0f;
        float* yp = y + plane * hw;
        // The Cast -> Mul -> Add of the reference: two roundings (this file
        // is compiled without FMA contraction).
        if (bias != nullptr) {
          for (int64_t i = 0; i < hw; ++i) yp[i] = std::min(std::max(yp[i] * mj + bj, clo), chi);
        } else {
          for (int64_t i = 0; i < hw; ++i) yp[i] = std::min(std::max(yp[i] * mj, clo), chi);
        }
      }
    });
  }

 private:
  static bool same(const ConvShape& a, const ConvShape& b) {
    return a.batch == b.batch && a.c_in == b.c_in && a.h_in == b.h_in && a.w_in == b.w_in && a.h_out == b.h_out &&
           a.w_out == b.w_out && a.pad_top == b.pad_top && a.pad_left == b.pad_left;
  }
  DynamicConvParams p_;
  const FloatQuantKernel* fq_;
  std::vector<int32_t> zp_;  // M values
  bool float_path_ = false;
  std::vector<float> wf_;  // float path: w - w_zp
  mutable std::optional<ConvShape> shape_;
  mutable std::unique_ptr<QConvGemm> gemm_;
  mutable std::optional<SConv> sconv_;
};

}  // namespace

std::unique_ptr<Step> make_dynamic_conv_step(DynamicConvParams params) {
  if (!DynamicConvStep::fits(params)) return nullptr;
  return std::make_unique<DynamicConvStep>(std::move(params));
}

}  // namespace kvant
