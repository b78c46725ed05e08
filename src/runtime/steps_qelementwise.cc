// Compiled steps on quantized activations that need no GEMM: lookup tables,
// Add, MaxPool and GlobalAveragePool. Each repeats the float arithmetic of
// the QDQ simulation (DequantizeLinear: float(x - zp) * scale; QuantizeLinear:
// nearbyint(x / scale) + zp, saturated) so the results match it exactly.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gap_u8.h"
#include "kernels/lookup_u8.h"
#include "kernels/qadd.h"
#include "ops/op_registry.h"
#include "ops/op_util.h"
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
  LookupStep(const std::vector<int32_t>& table, bool x_signed, bool y_signed, std::string what, Isa isa)
      : x_signed_(x_signed), y_signed_(y_signed), what_(std::move(what)), kernel_(&pick_lookup_u8(isa)) {
    for (size_t i = 0; i < 256; ++i) table_[i] = static_cast<uint8_t>(table[i] & 0xff);
  }
  std::string kernel() const override { return "lookup_table (" + what_ + ")"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_code_input(name, *in[0], x_signed_);
    out.assign(1, {code_type(y_signed_), in[0]->shape()});
  }
  // Chunks over the pool (lookup_u8.h's kernel).
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    const uint8_t* x = static_cast<const uint8_t*>(in[0]->raw());
    uint8_t* y = static_cast<uint8_t*>(out[0]->raw());
    const int64_t n = in[0]->numel();
    constexpr int64_t kChunk = 32768;
    parallel_for(pool, (n + kChunk - 1) / kChunk, [&](int64_t cb, int64_t ce) {
      const int64_t begin = cb * kChunk, end = std::min(n, ce * kChunk);
      kernel_->run(table_, x + begin, y + begin, end - begin);
    });
  }

 private:
  uint8_t table_[256] = {};
  bool x_signed_, y_signed_;
  std::string what_;
  const LookupU8Kernel* kernel_;
};

class QAddStep : public Step {
 public:
  QAddStep(const QuantScalar& a, const QuantScalar& b, const QuantScalar& y, const FloatClamp& clamp, Isa isa,
           bool multiply)
      : a_(a), b_(b), y_(y), kernel_(&qadd_pick(isa)) {
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
    return std::string(p_.multiply ? "qmul_" : "qadd_") + (y_.is_signed ? "s8/" : "u8/") + qadd_name(*kernel_);
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
        qadd_s8(*kernel_, in[0]->data<int8_t>() + b0, in[1]->data<int8_t>() + b0, out[0]->data<int8_t>() + b0, len, p_);
      } else {
        qadd_u8(*kernel_, in[0]->data<uint8_t>() + b0, in[1]->data<uint8_t>() + b0, out[0]->data<uint8_t>() + b0, len,
                p_);
      }
    });
  }

 private:
  // Broadcast operands (e.g. a squeeze-excitation scale [N,C,1,1] times
  // [N,C,H,W]). Dims of size 1 in the output are dropped and neighbouring
  // dims where each operand is broadcast the same way are merged, so the SE
  // case becomes rows of H*W with one scale value each. Then row by row along
  // the innermost merged dim; an operand broadcast along it is repeated into a
  // small stack buffer so the vector kernel still runs.
  void broadcast(const Tensor& a, const Tensor& b, Tensor& y) const {
    if (y.numel() == 0) return;
    const BroadcastWalk walk = plan_broadcast(y.shape(), a.shape(), b.shape());
    const int merged = walk.rank;
    const int64_t* dims = walk.dims;
    const int64_t* sa = walk.sa;
    const int64_t* sb = walk.sb;
    // dims[0] is now the innermost run.
    const auto* pa = static_cast<const uint8_t*>(a.raw());
    const auto* pb = static_cast<const uint8_t*>(b.raw());
    auto* py = static_cast<uint8_t*>(y.raw());
    const int64_t inner = dims[0];
    const int64_t rows = y.numel() / inner;
    constexpr int64_t kBlock = 1024;
    uint8_t rep_a[kBlock], rep_b[kBlock];
    int64_t idx[8] = {};
    for (int64_t row = 0; row < rows; ++row) {
      int64_t off_a = 0, off_b = 0;
      for (int d = 1; d < merged; ++d) {
        off_a += idx[d] * sa[d];
        off_b += idx[d] * sb[d];
      }
      if (sa[0] == 0) std::fill(rep_a, rep_a + std::min(kBlock, inner), pa[off_a]);
      if (sb[0] == 0) std::fill(rep_b, rep_b + std::min(kBlock, inner), pb[off_b]);
      for (int64_t c0 = 0; c0 < inner; c0 += kBlock) {
        const int64_t len = std::min(kBlock, inner - c0);
        const uint8_t* ra = sa[0] == 0 ? rep_a : pa + off_a + c0;
        const uint8_t* rb = sb[0] == 0 ? rep_b : pb + off_b + c0;
        uint8_t* ry = py + row * inner + c0;
        if (y_.is_signed) {
          qadd_s8(*kernel_, reinterpret_cast<const int8_t*>(ra), reinterpret_cast<const int8_t*>(rb),
                  reinterpret_cast<int8_t*>(ry), len, p_);
        } else {
          qadd_u8(*kernel_, ra, rb, ry, len, p_);
        }
      }
      for (int d = 1; d < merged; ++d) {
        if (++idx[d] < dims[d]) break;
        idx[d] = 0;
      }
    }
  }

  QuantScalar a_, b_, y_;
  QAddParams p_;
  const QAddKernel* kernel_;  // picked once, for the compile's ISA level
};

class QMaxPoolStep : public Step {
 public:
  QMaxPoolStep(const Node& node, int64_t opset, bool is_signed, bool is_float, bool nhwc = false)
      : node_(node), opset_(opset), signed_(is_signed), float_(is_float), nhwc_(nhwc) {
    kernel_ = node.attr_ints("kernel_shape");
    strides_ = node.attr_ints("strides", std::vector<int64_t>(kernel_.size(), 1));
    dilations_ = node.attr_ints("dilations", std::vector<int64_t>(kernel_.size(), 1));
    pads_ = node.attr_ints("pads", std::vector<int64_t>(2 * kernel_.size(), 0));
  }
  std::string kernel() const override {
    return std::string(float_ ? "maxpool_f32" : signed_ ? "maxpool_s8" : "maxpool_u8") + (nhwc_ ? "_nhwc" : "");
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (float_) {
      if (in[0]->dtype() != DType::kFloat32 || in[0]->rank() != 4)
        throw Error(ErrorCode::kInvalidArgument, name + ": float32 NCHW input expected");
    } else {
      check_code_input(name, *in[0], signed_);
    }
    if (nhwc_) {  // [N, H, W, C]: the window geometry on H, W
      if (in[0]->rank() != 4) throw Error(ErrorCode::kInvalidArgument, name + ": expects a 4-D NHWC input");
      KernelContext ctx{node_, opset_, {}, {}, nullptr};
      geometry_ = window_geometry(ctx, {in[0]->dim(1), in[0]->dim(2)}, kernel_, node_.attr_int("ceil_mode", 0) != 0);
      out.assign(1, {in[0]->dtype(), {in[0]->dim(0), geometry_.out[0], geometry_.out[1], in[0]->dim(3)}});
      return;
    }
    KernelContext ctx{node_, opset_, {in[0]}, {}, nullptr};
    ctx.outputs.resize(node_.outputs.size());
    find_op("", "MaxPool")->run(ctx);
    out.assign(1, {in[0]->dtype(), ctx.outputs[0].shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    if (nhwc_) {
      if (float_) {
        run_pool_nhwc(in[0]->data<float>(), out[0]->data<float>(), *in[0], *out[0], pool);
      } else if (signed_) {
        run_pool_nhwc(in[0]->data<int8_t>(), out[0]->data<int8_t>(), *in[0], *out[0], pool);
      } else {
        run_pool_nhwc(in[0]->data<uint8_t>(), out[0]->data<uint8_t>(), *in[0], *out[0], pool);
      }
      return;
    }
    if (float_) {
      run_pool(in[0]->data<float>(), out[0]->data<float>(), *in[0], *out[0], pool);
    } else if (signed_) {
      run_pool(in[0]->data<int8_t>(), out[0]->data<int8_t>(), *in[0], *out[0], pool);
    } else {
      run_pool(in[0]->data<uint8_t>(), out[0]->data<uint8_t>(), *in[0], *out[0], pool);
    }
  }
  // y[k] = std::max(y[k], x[k]) for k < n, 32 bytes at a time with GCC's
  // portable vector extensions (the element-wise ?: keeps std::max's NaN rule).
  template <typename T>
  static void max_into(T* y, const T* x, int64_t n) {
    typedef T V __attribute__((vector_size(32)));
    constexpr int64_t kLanes = 32 / static_cast<int64_t>(sizeof(T));
    int64_t k = 0;
    for (; k + kLanes <= n; k += kLanes) {
      V a, b;
      std::memcpy(&a, y + k, sizeof(V));
      std::memcpy(&b, x + k, sizeof(V));
      const V m = a < b ? b : a;
      std::memcpy(y + k, &m, sizeof(V));
    }
    for (; k < n; ++k) y[k] = std::max(y[k], x[k]);
  }

  // NHWC: output rows over the pool; per output pixel the max over the taps
  // inside the input, vectorised across channels (NaN: as std::max, a NaN
  // tap after a number is skipped, like the NCHW loop).
  template <typename T>
  void run_pool_nhwc(const T* x, T* y, const Tensor& xt, const Tensor& yt, ThreadPool* pool) const {
    const int64_t h = xt.dim(1), w = xt.dim(2), c = xt.dim(3), oh = yt.dim(1), ow = yt.dim(2);
    const WindowGeometry& g = geometry_;
    const T lowest =
        std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
    parallel_for(pool, xt.dim(0) * oh, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t b = r / oh, i = r % oh;
        const T* xb = x + b * h * w * c;
        for (int64_t j = 0; j < ow; ++j) {
          T* yp = y + (r * ow + j) * c;
          for (int64_t k = 0; k < c; ++k) yp[k] = lowest;
          for (int64_t ki = 0; ki < g.kernel[0]; ++ki) {
            const int64_t row = i * g.strides[0] - g.pads_begin[0] + ki * g.dilations[0];
            if (row < 0 || row >= h) continue;
            for (int64_t kj = 0; kj < g.kernel[1]; ++kj) {
              const int64_t col = j * g.strides[1] - g.pads_begin[1] + kj * g.dilations[1];
              if (col < 0 || col >= w) continue;
              max_into(yp, xb + (row * w + col) * c, c);
            }
          }
        }
      }
    });
  }

  // Planes over the pool. Per output row, the columns whose window lies
  // inside the row run without bounds checks; the edges check each tap.
  template <typename T>
  void run_pool(const T* x, T* y, const Tensor& xt, const Tensor& yt, ThreadPool* pool) const {
    const int64_t planes = xt.dim(0) * xt.dim(1), h = xt.dim(2), w = xt.dim(3);
    const int64_t oh = yt.dim(2), ow = yt.dim(3);
    const int64_t kh = kernel_[0], kw = kernel_[1], sh = strides_[0], sw = strides_[1];
    const int64_t dh = dilations_[0], dw = dilations_[1], ph = pads_[0], pw = pads_[1];
    const T lowest =
        std::numeric_limits<T>::has_infinity ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::lowest();
    // Output columns [j_lo, j_hi) read only columns inside [0, w).
    int64_t j_lo = 0;
    while (j_lo < ow && j_lo * sw - pw < 0) ++j_lo;
    int64_t j_hi = ow;
    while (j_hi > j_lo && (j_hi - 1) * sw - pw + (kw - 1) * dw >= w) --j_hi;
    parallel_for(pool, planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        const T* xp = x + p * h * w;
        T* yp = y + p * oh * ow;
        for (int64_t i = 0; i < oh; ++i) {
          T* yr = yp + i * ow;
          for (int64_t j = 0; j < ow; ++j) yr[j] = lowest;
          for (int64_t ki = 0; ki < kh; ++ki) {
            const int64_t r = i * sh - ph + ki * dh;
            if (r < 0 || r >= h) continue;
            const T* xr = xp + r * w;
            for (int64_t j = 0; j < ow; ++j) {
              if (j == j_lo && j_hi > j_lo) {  // the interior, no checks
                for (; j < j_hi; ++j) {
                  const T* xc = xr + j * sw - pw;
                  T best = yr[j];
                  for (int64_t kj = 0; kj < kw; ++kj) best = std::max(best, xc[kj * dw]);
                  yr[j] = best;
                }
                if (j >= ow) break;
              }
              T best = yr[j];
              for (int64_t kj = 0; kj < kw; ++kj) {
                const int64_t c = j * sw - pw + kj * dw;
                if (c >= 0 && c < w) best = std::max(best, xr[c]);
              }
              yr[j] = best;
            }
          }
        }
      }
    });
  }

 private:
  Node node_;
  int64_t opset_;
  bool signed_;
  bool float_;
  bool nhwc_;
  std::vector<int64_t> kernel_, strides_, dilations_, pads_;
  mutable WindowGeometry geometry_;  // NHWC: set by infer()
};

class QGlobalAvgPoolStep : public Step {
 public:
  QGlobalAvgPoolStep(const QuantScalar& x, const QuantScalar& y, bool nhwc, Isa isa)
      : x_(x), y_(y), nhwc_(nhwc), sums_(&pick_gap_u8(isa)) {
    for (int v = 0; v < 256; ++v) {
      table_f_[v] = dq(x.is_signed ? static_cast<int8_t>(v) : v, x);
      table_[v] = table_f_[v];
    }
  }
  std::string kernel() const override { return nhwc_ ? "global_avgpool_q_nhwc" : "global_avgpool_q"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_code_input(name, *in[0], x_.is_signed);
    if (in[0]->rank() < 3 || (nhwc_ && in[0]->rank() != 4)) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs rank >= 3 (4 in NHWC)");
    }
    Shape s = in[0]->shape();
    if (nhwc_) {
      s = {s[0], 1, 1, s[3]};
    } else {
      for (size_t i = 2; i < s.size(); ++i) s[i] = 1;
    }
    out.assign(1, {code_type(y_.is_signed), s});
  }
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    return nhwc_ ? static_cast<size_t>(in[0]->dim(3)) * sizeof(double) * 4 : 0;
  }
  // NHWC: the same sums per channel: any order while exact (gap_u8.h),
  // else the pixels in the simulation's (row-major) order.
  template <typename T>
  void loop_nhwc(const T* x, T* y, int64_t batch, int64_t pixels, int64_t channels, double* sums) const {
    for (int64_t b = 0; b < batch; ++b) {
      const auto* xb = reinterpret_cast<const uint8_t*>(x + b * pixels * channels);
      if (pixels <= (int64_t{1} << 20)) {
        sums_->run(xb, pixels, channels, table_f_, sums);
      } else {
        std::fill(sums, sums + channels, 0.0);
        for (int64_t p = 0; p < pixels; ++p) {
          const uint8_t* xp = xb + p * channels;
          for (int64_t c = 0; c < channels; ++c) sums[c] += table_[xp[c]];
        }
      }
      for (int64_t c = 0; c < channels; ++c) {
        y[b * channels + c] = static_cast<T>(qz(static_cast<float>(sums[c] / static_cast<double>(pixels)), y_));
      }
    }
  }
  // The simulation sums the DQ values of a plane one by one in double. Every
  // DQ value is an integer multiple of ulp(x_scale) of magnitude below 2^33
  // such ulps, so while a plane has at most 2^20 values every partial sum is
  // exact in double, and four interleaved sums of table lookups give the
  // same bits. Larger planes keep the simulation's order.
  template <typename T>
  void loop(const T* x, T* y, int64_t planes, int64_t size) const {
    for (int64_t p = 0; p < planes; ++p) {
      const auto* xp = reinterpret_cast<const uint8_t*>(x + p * size);
      double sum = 0;
      int64_t i = 0;
      if (size <= (int64_t{1} << 20)) {
        double s1 = 0, s2 = 0, s3 = 0;
        for (; i + 4 <= size; i += 4) {
          sum += table_[xp[i]];
          s1 += table_[xp[i + 1]];
          s2 += table_[xp[i + 2]];
          s3 += table_[xp[i + 3]];
        }
        sum += s1 + s2 + s3;
      }
      for (; i < size; ++i) sum += table_[xp[i]];
      y[p] = static_cast<T>(qz(static_cast<float>(sum / static_cast<double>(size)), y_));
    }
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch, ThreadPool*) override {
    if (nhwc_) {
      // Exact in any order while a plane has at most 2^20 values (above);
      // larger ones are summed in the same pixel order as the simulation.
      const int64_t pixels = in[0]->dim(1) * in[0]->dim(2), channels = in[0]->dim(3);
      auto* sums = reinterpret_cast<double*>(scratch);
      if (x_.is_signed) {
        loop_nhwc(in[0]->data<int8_t>(), out[0]->data<int8_t>(), in[0]->dim(0), pixels, channels, sums);
      } else {
        loop_nhwc(in[0]->data<uint8_t>(), out[0]->data<uint8_t>(), in[0]->dim(0), pixels, channels, sums);
      }
      return;
    }
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
  bool nhwc_;
  const GapU8Kernel* sums_;
  double table_[256];   // DQ value of each raw byte
  float table_f_[256];  // the same values as floats (exact)
};

}  // namespace

std::unique_ptr<Step> make_lookup_step(const std::vector<int32_t>& table, bool x_signed, bool y_signed,
                                       std::string what, Isa isa) {
  return std::make_unique<LookupStep>(table, x_signed, y_signed, std::move(what), isa);
}
std::unique_ptr<Step> make_qadd_step(const QuantScalar& a, const QuantScalar& b, const QuantScalar& y,
                                     const FloatClamp& clamp, Isa isa, bool multiply) {
  return std::make_unique<QAddStep>(a, b, y, clamp, isa, multiply);
}
std::unique_ptr<Step> make_qmaxpool_step(const Node& node, int64_t opset, bool is_signed, bool nhwc) {
  return std::make_unique<QMaxPoolStep>(node, opset, is_signed, false, nhwc);
}
std::unique_ptr<Step> make_maxpool_f32_step(const Node& node, int64_t opset) {
  return std::make_unique<QMaxPoolStep>(node, opset, false, true);
}
std::unique_ptr<Step> make_qglobal_avgpool_step(const QuantScalar& x, const QuantScalar& y, bool nhwc, Isa isa) {
  return std::make_unique<QGlobalAvgPoolStep>(x, y, nhwc, isa);
}

}  // namespace kvant
