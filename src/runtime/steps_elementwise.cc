// Compiled FP32 elementwise steps:
//   binary: y = act(a op b), op in {Add, Sub, Mul, Div}, numpy broadcasting;
//           the innermost output dim is a contiguous loop (operand stride 0 or 1)
//   unary:  y = f(x), f in {Relu, Sigmoid, Tanh}
//   maxpool: float MaxPool (2-D, NCHW), as the quantized one
#include <algorithm>
#include <cmath>

#include "kernels/vmath.h"
#include "ops/op_registry.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

class BinaryStep : public Step {
 public:
  BinaryStep(BinaryOp op, const FloatClamp& clamp) : op_(op), clamp_(clamp) {}
  std::string kernel() const override {
    static const char* const kNames[] = {"add_f32", "sub_f32", "mul_f32", "div_f32"};
    return kNames[static_cast<int>(op_)];
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    if (a.dtype() != DType::kFloat32 || b.dtype() != DType::kFloat32) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": float32 operands expected, got " + a.describe() + " and " + b.describe());
    }
    const size_t rank = static_cast<size_t>(std::max(a.rank(), b.rank()));
    Shape s(rank);
    for (size_t i = 0; i < rank; ++i) {
      const int64_t da = dim(a.shape(), rank, i), db = dim(b.shape(), rank, i);
      if (da != db && da != 1 && db != 1) {
        throw Error(ErrorCode::kInvalidArgument,
                    name + ": shapes " + a.describe() + " and " + b.describe() + " do not broadcast");
      }
      s[i] = da == 1 ? db : da;
    }
    out.assign(1, {DType::kFloat32, s});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    Tensor& y = *out[0];
    const float* pa = a.data<float>();
    const float* pb = b.data<float>();
    float* py = y.data<float>();
    const int64_t n = y.numel();
    if (n == 0) return;
    if (a.numel() == n && b.numel() == n) {
      apply(pa, 1, pb, 1, py, n);
      return;
    }
    const BroadcastWalk walk = plan_broadcast(y.shape(), a.shape(), b.shape());
    const int64_t inner = walk.dims[0];
    int64_t idx[8] = {};
    for (int64_t row = 0; row < n / inner; ++row) {
      int64_t oa = 0, ob = 0;
      for (int d = 1; d < walk.rank; ++d) {
        oa += idx[d] * walk.sa[d];
        ob += idx[d] * walk.sb[d];
      }
      apply(pa + oa, walk.sa[0], pb + ob, walk.sb[0], py + row * inner, inner);
      for (int d = 1; d < walk.rank; ++d) {  // odometer over the outer dims
        if (++idx[d] < walk.dims[d]) break;
        idx[d] = 0;
      }
    }
  }

 private:
  static int64_t dim(const Shape& s, size_t rank, size_t i) {
    const size_t offset = rank - s.size();
    return i < offset ? 1 : s[i - offset];
  }
  void apply(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n) const {
    switch (op_) {
      case BinaryOp::kAdd: loop(a, sa, b, sb, y, n, [](float x, float z) { return x + z; }); break;
      case BinaryOp::kSub: loop(a, sa, b, sb, y, n, [](float x, float z) { return x - z; }); break;
      case BinaryOp::kMul: loop(a, sa, b, sb, y, n, [](float x, float z) { return x * z; }); break;
      case BinaryOp::kDiv: loop(a, sa, b, sb, y, n, [](float x, float z) { return x / z; }); break;
    }
  }
  template <typename F>
  void loop(const float* a, int64_t sa, const float* b, int64_t sb, float* y, int64_t n, F f) const {
    if (clamp_.active()) {
      for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(f(a[i * sa], b[i * sb]), clamp_.lo), clamp_.hi);
    } else if (sa == 1 && sb == 1) {
      for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
    } else if (sa == 1 && sb == 0) {  // e.g. a squeeze-excitation scale
      const float bv = b[0];
      for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], bv);
    } else if (sa == 0 && sb == 1) {
      const float av = a[0];
      for (int64_t i = 0; i < n; ++i) y[i] = f(av, b[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) y[i] = f(a[i * sa], b[i * sb]);
    }
  }

  BinaryOp op_;
  FloatClamp clamp_;
};

class UnaryStep : public Step {
 public:
  UnaryStep(std::string op, const FloatClamp& clamp) : op_(std::move(op)), clamp_(clamp) {}
  std::string kernel() const override {
    if (op_ == "Clamp" || op_ == "Neg" || op_ == "Abs" || op_ == "Sqrt" || op_ == "Reciprocal" || op_ == "Pow") {
      return (op_ == "Clamp" ? std::string("clamp") : op_) + "_f32";
    }
    return op_ + "_f32/" + vmath_name(vmath_default());
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32) throw Error(ErrorCode::kInvalidArgument, name + ": float32 input expected");
    out.assign(1, {DType::kFloat32, in[0]->shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    const int64_t n = in[0]->numel();
    if (op_ == "Clamp") {
      for (int64_t i = 0; i < n; ++i) y[i] = std::min(std::max(x[i], clamp_.lo), clamp_.hi);
    } else if (op_ == "Sigmoid") {
      sigmoid_f32(x, y, n);
    } else if (op_ == "Erf") {
      erf_f32(x, y, n);
    } else if (op_ == "Neg") {
      for (int64_t i = 0; i < n; ++i) y[i] = -x[i];
    } else if (op_ == "Abs") {  // the reference's expression: Abs(-0) = -0
      for (int64_t i = 0; i < n; ++i) y[i] = x[i] < 0.0f ? -x[i] : x[i];
    } else if (op_ == "Sqrt") {
      for (int64_t i = 0; i < n; ++i) y[i] = std::sqrt(x[i]);
    } else if (op_ == "Reciprocal") {
      for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / x[i];
    } else if (op_ == "Pow") {  // the reference's: pow in double, rounded once
      const double e = clamp_.hi;
      if (e == 2.0) {  // the exact product rounded once, as pow(double) gives
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * x[i];
      } else {
        for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(std::pow(static_cast<double>(x[i]), e));
      }
    } else {
      tanh_f32(x, y, n);
    }
  }

 private:
  std::string op_;
  FloatClamp clamp_;
};

// Softmax over the last axis: y = exp(x - max) / sum. Other axes run the
// reference op and copy its result into place.
class SoftmaxStep : public Step {
 public:
  SoftmaxStep(const Node& node, int64_t opset) : node_(node), opset_(opset) {}
  std::string kernel() const override {
    return use_reference_ ? "softmax (reference, copied)" : std::string("softmax_f32/") + vmath_name(vmath_default());
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    int64_t axis = node_.attr_int("axis", opset_ >= 13 ? -1 : 1);
    if (axis < 0) axis += x.rank();
    use_reference_ = x.dtype() != DType::kFloat32 || x.rank() == 0 || axis != x.rank() - 1;
    out.assign(1, {x.dtype(), x.shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    if (use_reference_) {
      KernelContext ctx{node_, opset_, {in[0]}, {}, nullptr};
      ctx.outputs.resize(1);
      find_op("", "Softmax")->run(ctx);
      std::copy_n(static_cast<const std::byte*>(ctx.outputs[0].raw()), ctx.outputs[0].nbytes(),
                  static_cast<std::byte*>(out[0]->raw()));
      return;
    }
    const int64_t cols = in[0]->shape().back();
    const int64_t rows = cols == 0 ? 0 : in[0]->numel() / cols;
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    parallel_for(pool, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < cols; ++i) mx = std::max(mx, xr[i]);
        const float sum = exp_shifted_sum_f32(xr, mx, yr, cols);
        const float inv = 1.0f / sum;
        for (int64_t i = 0; i < cols; ++i) yr[i] *= inv;
      }
    });
  }

 private:
  Node node_;
  int64_t opset_;
  mutable bool use_reference_ = false;
};

// GlobalAveragePool on float32: the mean of each plane, summed in double as
// the reference does (in four interleaved parts).
class GlobalAvgPoolStep : public Step {
 public:
  std::string kernel() const override { return "global_avgpool_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32 || in[0]->rank() < 3) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": float32 input of rank >= 3 expected, got " + in[0]->describe());
    }
    Shape s = in[0]->shape();
    for (size_t i = 2; i < s.size(); ++i) s[i] = 1;
    out.assign(1, {DType::kFloat32, s});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const int64_t planes = in[0]->dim(0) * in[0]->dim(1);
    const int64_t size = planes == 0 ? 0 : in[0]->numel() / planes;
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    for (int64_t p = 0; p < planes; ++p) {
      // Four interleaved double sums (the reference sums in order; the
      // difference is far below float rounding), so the adds overlap.
      const float* xp = x + p * size;
      double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      int64_t i = 0;
      for (; i + 4 <= size; i += 4) {
        s0 += xp[i];
        s1 += xp[i + 1];
        s2 += xp[i + 2];
        s3 += xp[i + 3];
      }
      for (; i < size; ++i) s0 += xp[i];
      const double sum = (s0 + s1) + (s2 + s3);
      y[p] = static_cast<float>(sum / static_cast<double>(size));
    }
  }
};

// The NhwcGlobalAveragePool twin on float32 (an FP32 NHWC chain, layout
// pass): x [N, H, W, C] -> y [N, 1, 1, C], one double sum per channel in
// pixel order (the reference's order), C doubles of scratch.
class GlobalAvgPoolNhwcStep : public Step {
 public:
  std::string kernel() const override { return "global_avgpool_nhwc_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32 || in[0]->rank() != 4) {
      throw Error(ErrorCode::kInvalidArgument,
                  name + ": float32 [N, H, W, C] input expected, got " + in[0]->describe());
    }
    const Shape& s = in[0]->shape();
    out.assign(1, {DType::kFloat32, Shape{s[0], 1, 1, s[3]}});
  }
  size_t scratch_bytes(std::span<const Tensor* const> in) const override {
    return static_cast<size_t>(std::max<int64_t>(in[0]->dim(3), 1)) * sizeof(double);
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch, ThreadPool*) override {
    const int64_t n = in[0]->dim(0), pixels = in[0]->dim(1) * in[0]->dim(2), c = in[0]->dim(3);
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    double* acc = reinterpret_cast<double*>(scratch);
    for (int64_t b = 0; b < n; ++b) {
      std::fill(acc, acc + c, 0.0);
      const float* xb = x + b * pixels * c;
      for (int64_t p = 0; p < pixels; ++p) {
        const float* px = xb + p * c;
        for (int64_t ch = 0; ch < c; ++ch) acc[ch] += px[ch];
      }
      for (int64_t ch = 0; ch < c; ++ch) y[b * c + ch] = static_cast<float>(acc[ch] / static_cast<double>(pixels));
    }
  }
};

}  // namespace

std::unique_ptr<Step> make_global_avgpool_f32_step() { return std::make_unique<GlobalAvgPoolStep>(); }
std::unique_ptr<Step> make_global_avgpool_nhwc_f32_step() { return std::make_unique<GlobalAvgPoolNhwcStep>(); }

BroadcastWalk plan_broadcast(const Shape& y, const Shape& a, const Shape& b) {
  const int rank = static_cast<int>(y.size());
  if (rank > 8) throw Error(ErrorCode::kUnsupported, "broadcast of rank above 8");
  BroadcastWalk w;
  int64_t acc_a = 1, acc_b = 1;
  const int oa = rank - static_cast<int>(a.size()), ob = rank - static_cast<int>(b.size());
  for (int i = rank; i-- > 0;) {  // innermost first
    const int64_t dy = y[static_cast<size_t>(i)];
    const int64_t da = i < oa ? 1 : a[static_cast<size_t>(i - oa)];
    const int64_t db = i < ob ? 1 : b[static_cast<size_t>(i - ob)];
    const int64_t step_a = da == 1 ? 0 : acc_a, step_b = db == 1 ? 0 : acc_b;
    acc_a *= da;
    acc_b *= db;
    if (dy == 1) continue;
    const int m = w.rank - 1;
    if (m >= 0 && (w.sa[m] == 0) == (step_a == 0) && (w.sb[m] == 0) == (step_b == 0) &&
        (step_a == 0 || step_a == w.sa[m] * w.dims[m]) && (step_b == 0 || step_b == w.sb[m] * w.dims[m])) {
      w.dims[m] *= dy;
      continue;
    }
    w.dims[w.rank] = dy;
    w.sa[w.rank] = step_a;
    w.sb[w.rank] = step_b;
    ++w.rank;
  }
  if (w.rank == 0) {  // a single element
    w.dims[0] = 1;
    w.rank = 1;
  }
  return w;
}

std::unique_ptr<Step> make_softmax_step(const Node& node, int64_t opset) {
  return std::make_unique<SoftmaxStep>(node, opset);
}

std::unique_ptr<Step> make_binary_step(BinaryOp op, const FloatClamp& clamp) {
  return std::make_unique<BinaryStep>(op, clamp);
}
std::unique_ptr<Step> make_unary_step(const std::string& op, const FloatClamp& clamp) {
  return std::make_unique<UnaryStep>(op, clamp);
}

}  // namespace kvant
