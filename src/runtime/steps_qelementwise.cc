// Compiled steps on quantized activations that need no GEMM: lookup tables,
// Add, MaxPool and GlobalAveragePool. Each repeats the float arithmetic of
// the QDQ simulation (DequantizeLinear: float(x - zp) * scale; QuantizeLinear:
// nearbyint(x / scale) + zp, saturated) so the results match it exactly.
#include <algorithm>
#include <cmath>

#include "kernels/qadd.h"
#include "ops/op_registry.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

inline float dq(int32_t v, const QuantScalar& q) { return static_cast<float>(v - q.zero_point) * q.scale; }
inline int32_t qz(float x, const QuantScalar& q) {
  const float r = x / q.scale;
  if (std::isnan(r)) return std::clamp<int32_t>(0, q.qmin(), q.qmax());
  return static_cast<int32_t>(
      std::clamp<double>(std::nearbyint(static_cast<double>(r)) + q.zero_point, q.qmin(), q.qmax()));
}
DType code_type(bool is_signed) { return is_signed ? DType::kInt8 : DType::kUInt8; }

void check_code_input(const std::string& name, const Tensor& t, bool is_signed) {
  if (t.dtype() != code_type(is_signed)) {
    throw Error(ErrorCode::kInvalidArgument,
                name + ": expected " + dtype_name(code_type(is_signed)) + " input, got " + t.describe());
  }
}

class LookupStep : public Step {
 public:
  LookupStep(const std::vector<int32_t>& table, bool x_signed, bool y_signed, std::string what)
      : x_signed_(x_signed), y_signed_(y_signed), what_(std::move(what)) {
    for (size_t i = 0; i < 256; ++i) table_[i] = static_cast<uint8_t>(table[i] & 0xff);
  }
  std::string kernel() const override { return "lookup_table (" + what_ + ")"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_code_input(name, *in[0], x_signed_);
    out.assign(1, {code_type(y_signed_), in[0]->shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const uint8_t* x = static_cast<const uint8_t*>(in[0]->raw());
    uint8_t* y = static_cast<uint8_t*>(out[0]->raw());
    const int64_t n = in[0]->numel();
    for (int64_t i = 0; i < n; ++i) y[i] = table_[x[i]];
  }

 private:
  uint8_t table_[256] = {};
  bool x_signed_, y_signed_;
  std::string what_;
};

class QAddStep : public Step {
 public:
  QAddStep(const QuantScalar& a, const QuantScalar& b, const QuantScalar& y, const FloatClamp& clamp, Isa isa,
           bool multiply)
      : a_(a), b_(b), y_(y), isa_(isa) {
    p_.multiply = multiply;
    p_.a_scale = a.scale;
    p_.b_scale = b.scale;
    p_.y_scale = y.scale;
    p_.a_zp = a.zero_point;
    p_.b_zp = b.zero_point;
    p_.y_zp = y.zero_point;
    p_.lo = clamp.lo;
    p_.hi = clamp.hi;
    p_.qmin = y.qmin();
    p_.qmax = y.qmax();
  }
  std::string kernel() const override {
    return std::string(p_.multiply ? "qmul_" : "qadd_") + (y_.is_signed ? "s8_" : "u8_") + isa_name(isa_);
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_code_input(name, *in[0], a_.is_signed);
    check_code_input(name, *in[1], b_.is_signed);
    const Shape& sa = in[0]->shape();
    const Shape& sb = in[1]->shape();
    const size_t rank = std::max(sa.size(), sb.size());
    if (rank > 8) throw Error(ErrorCode::kUnsupported, name + ": rank above 8");
    Shape s(rank);
    for (size_t i = 0; i < rank; ++i) {
      const int64_t da = i < rank - sa.size() ? 1 : sa[i - (rank - sa.size())];
      const int64_t db = i < rank - sb.size() ? 1 : sb[i - (rank - sb.size())];
      if (da != db && da != 1 && db != 1) throw Error(ErrorCode::kInvalidArgument, name + ": shapes do not broadcast");
      s[i] = da == 1 ? db : da;
    }
    out.assign(1, {code_type(y_.is_signed), s});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const int64_t n = out[0]->numel();
    if (in[0]->numel() != n || in[1]->numel() != n) {
      broadcast(*in[0], *in[1], *out[0]);
      return;
    }
    constexpr int64_t kChunk = 16384;
    parallel_for(pool, (n + kChunk - 1) / kChunk, [&](int64_t cb, int64_t ce) {
      const int64_t b0 = cb * kChunk, len = std::min(n, ce * kChunk) - b0;
      if (y_.is_signed) {
        qadd_s8(in[0]->data<int8_t>() + b0, in[1]->data<int8_t>() + b0, out[0]->data<int8_t>() + b0, len, p_, isa_);
      } else {
        qadd_u8(in[0]->data<uint8_t>() + b0, in[1]->data<uint8_t>() + b0, out[0]->data<uint8_t>() + b0, len, p_, isa_);
      }
    });
  }

 private:
  // Broadcast operands (e.g. a squeeze-excitation scale [N,C,1,1]): one
  // element at a time with the scalar kernel, operand offsets from strides.
  void broadcast(const Tensor& a, const Tensor& b, Tensor& y) const {
    const size_t rank = static_cast<size_t>(y.rank());
    int64_t sa[8] = {}, sb[8] = {}, idx[8] = {};
    int64_t acc_a = 1, acc_b = 1;
    for (size_t i = rank; i-- > 0;) {
      const size_t oa = rank - static_cast<size_t>(a.rank()), ob = rank - static_cast<size_t>(b.rank());
      const int64_t da = i < oa ? 1 : a.dim(static_cast<int>(i - oa));
      const int64_t db = i < ob ? 1 : b.dim(static_cast<int>(i - ob));
      sa[i] = da == 1 ? 0 : acc_a;
      sb[i] = db == 1 ? 0 : acc_b;
      acc_a *= da;
      acc_b *= db;
    }
    const auto* pa = static_cast<const uint8_t*>(a.raw());
    const auto* pb = static_cast<const uint8_t*>(b.raw());
    auto* py = static_cast<uint8_t*>(y.raw());
    // Row by row along the innermost dim; an operand broadcast along it is
    // repeated into a small stack buffer so the vector kernel still runs.
    const int64_t inner = y.dim(static_cast<int>(rank) - 1);
    constexpr int64_t kBlock = 1024;
    uint8_t rep_a[kBlock], rep_b[kBlock];
    for (int64_t row = 0; row < y.numel() / inner; ++row) {
      int64_t oa = 0, ob = 0;
      for (size_t d = 0; d + 1 < rank; ++d) {
        oa += idx[d] * sa[d];
        ob += idx[d] * sb[d];
      }
      for (int64_t c0 = 0; c0 < inner; c0 += kBlock) {
        const int64_t len = std::min(kBlock, inner - c0);
        const uint8_t* ra = pa + oa + c0 * sa[rank - 1];
        const uint8_t* rb = pb + ob + c0 * sb[rank - 1];
        if (sa[rank - 1] == 0) {
          std::fill(rep_a, rep_a + len, ra[0]);
          ra = rep_a;
        }
        if (sb[rank - 1] == 0) {
          std::fill(rep_b, rep_b + len, rb[0]);
          rb = rep_b;
        }
        uint8_t* ry = py + row * inner + c0;
        if (y_.is_signed) {
          qadd_s8(reinterpret_cast<const int8_t*>(ra), reinterpret_cast<const int8_t*>(rb),
                  reinterpret_cast<int8_t*>(ry), len, p_, isa_);
        } else {
          qadd_u8(ra, rb, ry, len, p_, isa_);
        }
      }
      for (size_t d = rank - 1; d-- > 0;) {
        if (++idx[d] < y.dim(static_cast<int>(d))) break;
        idx[d] = 0;
      }
    }
  }

  QuantScalar a_, b_, y_;
  QAddParams p_;
  Isa isa_;
};

class QMaxPoolStep : public Step {
 public:
  QMaxPoolStep(const Node& node, int64_t opset, bool is_signed, bool is_float)
      : node_(node), opset_(opset), signed_(is_signed), float_(is_float) {
    kernel_ = node.attr_ints("kernel_shape");
    strides_ = node.attr_ints("strides", std::vector<int64_t>(kernel_.size(), 1));
    dilations_ = node.attr_ints("dilations", std::vector<int64_t>(kernel_.size(), 1));
    pads_ = node.attr_ints("pads", std::vector<int64_t>(2 * kernel_.size(), 0));
  }
  std::string kernel() const override { return float_ ? "maxpool_f32" : signed_ ? "maxpool_s8" : "maxpool_u8"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (float_) {
      if (in[0]->dtype() != DType::kFloat32 || in[0]->rank() != 4)
        throw Error(ErrorCode::kInvalidArgument, name + ": float32 NCHW input expected");
    } else {
      check_code_input(name, *in[0], signed_);
    }
    KernelContext ctx{node_, opset_, {in[0]}, {}, nullptr};
    ctx.outputs.resize(node_.outputs.size());
    find_op("", "MaxPool")->run(ctx);
    out.assign(1, {in[0]->dtype(), ctx.outputs[0].shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    if (float_) {
      pool(in[0]->data<float>(), out[0]->data<float>(), *in[0], *out[0]);
    } else if (signed_) {
      pool(in[0]->data<int8_t>(), out[0]->data<int8_t>(), *in[0], *out[0]);
    } else {
      pool(in[0]->data<uint8_t>(), out[0]->data<uint8_t>(), *in[0], *out[0]);
    }
  }
  template <typename T>
  void pool(const T* x, T* y, const Tensor& xt, const Tensor& yt) const {
    const int64_t planes = xt.dim(0) * xt.dim(1), h = xt.dim(2), w = xt.dim(3);
    const int64_t oh = yt.dim(2), ow = yt.dim(3);
    for (int64_t p = 0; p < planes; ++p) {
      const T* xp = x + p * h * w;
      T* yp = y + p * oh * ow;
      for (int64_t i = 0; i < oh; ++i) {
        for (int64_t j = 0; j < ow; ++j) {
          T best = std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity()
                                                        : std::numeric_limits<T>::lowest();
          for (int64_t ki = 0; ki < kernel_[0]; ++ki) {
            const int64_t r = i * strides_[0] - pads_[0] + ki * dilations_[0];
            if (r < 0 || r >= h) continue;
            for (int64_t kj = 0; kj < kernel_[1]; ++kj) {
              const int64_t c = j * strides_[1] - pads_[1] + kj * dilations_[1];
              if (c < 0 || c >= w) continue;
              best = std::max(best, xp[r * w + c]);
            }
          }
          yp[i * ow + j] = best;
        }
      }
    }
  }

 private:
  Node node_;
  int64_t opset_;
  bool signed_;
  bool float_;
  std::vector<int64_t> kernel_, strides_, dilations_, pads_;
};

class QGlobalAvgPoolStep : public Step {
 public:
  QGlobalAvgPoolStep(const QuantScalar& x, const QuantScalar& y) : x_(x), y_(y) {}
  std::string kernel() const override { return "global_avgpool_q"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_code_input(name, *in[0], x_.is_signed);
    if (in[0]->rank() < 3) throw Error(ErrorCode::kInvalidArgument, name + ": needs rank >= 3");
    Shape s = in[0]->shape();
    for (size_t i = 2; i < s.size(); ++i) s[i] = 1;
    out.assign(1, {code_type(y_.is_signed), s});
  }
  template <typename T>
  void loop(const T* x, T* y, int64_t planes, int64_t size) const {
    for (int64_t p = 0; p < planes; ++p) {
      double sum = 0;
      for (int64_t i = 0; i < size; ++i) sum += dq(x[p * size + i], x_);
      y[p] = static_cast<T>(qz(static_cast<float>(sum / static_cast<double>(size)), y_));
    }
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const int64_t planes = in[0]->dim(0) * in[0]->dim(1);
    const int64_t size = planes == 0 ? 0 : in[0]->numel() / planes;
    if (x_.is_signed != y_.is_signed) throw Error(ErrorCode::kUnsupported, name + ": mixed uint8/int8");
    if (x_.is_signed) {
      loop(in[0]->data<int8_t>(), out[0]->data<int8_t>(), planes, size);
    } else {
      loop(in[0]->data<uint8_t>(), out[0]->data<uint8_t>(), planes, size);
    }
  }

 private:
  QuantScalar x_, y_;
};

}  // namespace

std::unique_ptr<Step> make_lookup_step(const std::vector<int32_t>& table, bool x_signed, bool y_signed,
                                       std::string what) {
  return std::make_unique<LookupStep>(table, x_signed, y_signed, std::move(what));
}
std::unique_ptr<Step> make_qadd_step(const QuantScalar& a, const QuantScalar& b, const QuantScalar& y,
                                     const FloatClamp& clamp, Isa isa, bool multiply) {
  return std::make_unique<QAddStep>(a, b, y, clamp, isa, multiply);
}
std::unique_ptr<Step> make_qmaxpool_step(const Node& node, int64_t opset, bool is_signed) {
  return std::make_unique<QMaxPoolStep>(node, opset, is_signed, false);
}
std::unique_ptr<Step> make_maxpool_f32_step(const Node& node, int64_t opset) {
  return std::make_unique<QMaxPoolStep>(node, opset, false, true);
}
std::unique_ptr<Step> make_qglobal_avgpool_step(const QuantScalar& x, const QuantScalar& y) {
  return std::make_unique<QGlobalAvgPoolStep>(x, y);
}

}  // namespace kvant
