// Compiled steps for QDQ graphs:
//   quantize:   y = saturate(nearbyint(x / scale) + zp)   (NaN -> 0), as the reference
//   dequantize: y = float(x - zp) * scale
//   qgemm:      acc[m, n] = sum_k (x - x_zp)(W - w_zp[n]) + bias_q[n]          (int32, exact)
//               y = clamp(nearbyint(float(acc) * (x_scale * w_scale[n] / y_scale)) + y_zp)
//               or, with no output Q, y = clamp_float(float(acc) * (x_scale * w_scale[n]))
// The simulation computes the same in float (DQ, matmul, bias, Q); the two
// agree to within one output step (DESIGN.md §2).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/dynamic_quant.h"
#include "kernels/gemm_s8.h"
#include "kernels/layout_u8.h"
#include "kernels/vmath.h"
#include "runtime/steps.h"

namespace kvant {

SgemmActivation FloatClamp::activation() const {
  if (!active()) return SgemmActivation::none();
  if (lo == 0.0f && hi == std::numeric_limits<float>::infinity()) return SgemmActivation::relu();
  return SgemmActivation::clip(lo, hi);
}

namespace {

int32_t quantize_one(float x, const QuantScalar& q) {
  const float r = x / q.scale;
  if (std::isnan(r)) return std::clamp<int32_t>(0, q.qmin(), q.qmax());
  const double v = std::nearbyint(static_cast<double>(r)) + q.zero_point;
  return static_cast<int32_t>(std::clamp<double>(v, q.qmin(), q.qmax()));
}

class QuantizeStep : public Step {
 public:
  explicit QuantizeStep(const QuantScalar& q) : q_(q) {}
  std::string kernel() const override { return q_.is_signed ? "quantize_f32_s8" : "quantize_f32_u8"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32) throw Error(ErrorCode::kInvalidArgument, name + ": expects float32 input");
    out.assign(1, {q_.is_signed ? DType::kInt8 : DType::kUInt8, in[0]->shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const float* x = in[0]->data<float>();
    const int64_t n = in[0]->numel();
    auto* y = static_cast<uint8_t*>(out[0]->raw());
    constexpr int64_t kChunk = 16384;
    parallel_for(pool, (n + kChunk - 1) / kChunk, [&](int64_t b, int64_t e) {
      const int64_t begin = b * kChunk, end = std::min(n, e * kChunk);
      quantize_f32(x + begin, y + begin, end - begin, q_.scale, q_.zero_point, q_.is_signed);
    });
  }

 private:
  QuantScalar q_;
};

class DequantizeStep : public Step {
 public:
  explicit DequantizeStep(const QuantScalar& q) : q_(q) {}
  std::string kernel() const override { return q_.is_signed ? "dequantize_s8_f32" : "dequantize_u8_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const DType want = q_.is_signed ? DType::kInt8 : DType::kUInt8;
    if (in[0]->dtype() != want)
      throw Error(ErrorCode::kInvalidArgument, name + ": input type differs from its zero point");
    out.assign(1, {DType::kFloat32, in[0]->shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    dequantize_f32(in[0]->raw(), out[0]->data<float>(), in[0]->numel(), q_.scale, q_.zero_point, q_.is_signed);
  }

 private:
  QuantScalar q_;
};

class QGemmStep : public Step {
 public:
  explicit QGemmStep(QGemmParams p) : p_(std::move(p)) {
    packed_ = pack_b_s8(p_.weight.data(), p_.k, p_.n, p_.isa, p_.w_zp.empty() ? nullptr : p_.w_zp.data());
    p_.weight = {};
    multiplier_.resize(static_cast<size_t>(p_.n));
    for (int j = 0; j < p_.n; ++j) {
      const float ws = p_.w_scale.size() == 1 ? p_.w_scale[0] : p_.w_scale[static_cast<size_t>(j)];
      multiplier_[static_cast<size_t>(j)] = p_.y ? p_.x.scale * ws / p_.y->scale : p_.x.scale * ws;
    }
    if (p_.y) quantized_bounds(p_.clamp, *p_.y, qmin_, qmax_);
    zero_bias_.assign(static_cast<size_t>(p_.n), 0);
  }
  std::string kernel() const override {
    // The GEMM entry's name ("qgemm_u8s8_avx512vnni_6x64"), then what this
    // step adds: an int8 input, and the output type.
    std::string s = packed_.kernel_name();
    if (p_.x.is_signed) s += "+s8in";
    s += p_.y ? (p_.y->is_signed ? "+s8out" : "+u8out") : "+f32out";
    return s;
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    const DType want = p_.x.is_signed ? DType::kInt8 : DType::kUInt8;
    if (x.dtype() != want || x.rank() < 1 || x.shape().back() != p_.k) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": input " + x.describe() + " does not match the weight's K " + std::to_string(p_.k));
    }
    Shape shape = x.shape();
    shape.back() = p_.n;
    out.assign(1, {p_.y ? (p_.y->is_signed ? DType::kInt8 : DType::kUInt8) : DType::kFloat32, shape});
  }
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    const int64_t m = in[0]->numel() / p_.k;
    return static_cast<size_t>(m * p_.n) * 4 + (p_.x.is_signed ? static_cast<size_t>(m * p_.k) : 0) + 64;
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
           ThreadPool* pool) override {
    const int k = p_.k, n = p_.n;
    const int64_t m = in[0]->numel() / k;
    int32_t* acc = reinterpret_cast<int32_t*>(scratch);
    const uint8_t* a = static_cast<const uint8_t*>(in[0]->raw());
    int32_t a_zp = p_.x.zero_point;
    if (p_.x.is_signed) {  // x - zp == (x ^ 0x80) - (zp + 128), with x ^ 0x80 read as uint8
      uint8_t* shifted = reinterpret_cast<uint8_t*>(scratch + static_cast<size_t>(m * n) * 4);
      for (int64_t i = 0; i < m * k; ++i) shifted[i] = static_cast<uint8_t>(a[i] ^ 0x80u);
      a = shifted;
      a_zp += 128;
    }
    void* y = out[0]->raw();
    const int64_t tiles = (m + 7) / 8;
    const int32_t* bias = p_.bias_q.empty() ? zero_bias_.data() : p_.bias_q.data();
    parallel_for(pool, tiles, [&](int64_t tb, int64_t te) {
      const int64_t r0 = tb * 8, r1 = std::min(m, te * 8);
      const int rows = static_cast<int>(r1 - r0);
      int32_t* c = acc + r0 * n;
      if (p_.y) {
        // Requantized in the GEMM's registers where the entry can (the 7-bit
        // AVX2 and AMX ones: no int32 block written and read back), else
        // through requant_rows; the same bytes either way (gemm_s8.h).
        gemm_u8s8_requant(a + r0 * k, k, rows, static_cast<uint8_t>(a_zp), packed_,
                          QGemmRequant{bias, multiplier_.data(), p_.y->zero_point, qmin_, qmax_, p_.y->is_signed,
                                       static_cast<uint8_t*>(y) + r0 * n, n},
                          c);
        return;
      }
      gemm_u8s8_s32(a + r0 * k, k, rows, static_cast<uint8_t>(a_zp), packed_, c, n);
      fq_->dequant(DequantRowsArgs{c, n, rows, n, bias, multiplier_.data(), nullptr, p_.clamp.lo, p_.clamp.hi,
                                   static_cast<float*>(y) + r0 * n, n});
    });
  }

 private:
  QGemmParams p_;
  PackedB packed_;
  const FloatQuantKernel* fq_ = &pick_float_quant(p_.isa);
  std::vector<int32_t> zero_bias_;
  std::vector<float> multiplier_;
  int32_t qmin_ = 0, qmax_ = 255;
};

}  // namespace

void quantized_bounds(const FloatClamp& clamp, const QuantScalar& q, int32_t& qmin, int32_t& qmax) {
  qmin = q.qmin();
  qmax = q.qmax();
  if (clamp.lo != -std::numeric_limits<float>::infinity()) qmin = std::max(qmin, quantize_one(clamp.lo, q));
  if (clamp.hi != std::numeric_limits<float>::infinity()) qmax = std::min(qmax, quantize_one(clamp.hi, q));
}

std::unique_ptr<Step> make_quantize_step(const QuantScalar& q) { return std::make_unique<QuantizeStep>(q); }
std::unique_ptr<Step> make_dequantize_step(const QuantScalar& q) { return std::make_unique<DequantizeStep>(q); }
std::unique_ptr<Step> make_qgemm_step(QGemmParams params) { return std::make_unique<QGemmStep>(std::move(params)); }

}  // namespace kvant
