// Comparisons, Max / Min and Exp on float32 as arena steps (steps_compare.h).
//
// Binary forms share one loop: the output shape is the numpy broadcast of
// the two operand shapes, walked as plan_broadcast (steps.h) lays it out
// (an innermost run with a stride of 0 or 1 per operand, the outer dims as
// an odometer), so no index is recomputed per element.
#include "runtime/steps_compare.h"

#include <algorithm>
#include <cmath>

#include "runtime/steps.h"

namespace kvant {

namespace {

Shape broadcast_shape(const std::string& step, const Tensor& a, const Tensor& b) {
  const size_t rank = std::max(a.shape().size(), b.shape().size());
  Shape s(rank);
  for (size_t i = 0; i < rank; ++i) {
    const size_t oa = rank - a.shape().size(), ob = rank - b.shape().size();
    const int64_t da = i < oa ? 1 : a.shape()[i - oa], db = i < ob ? 1 : b.shape()[i - ob];
    if (da != db && da != 1 && db != 1) {
      throw Error(ErrorCode::kInvalidArgument,
                  step + ": shapes " + a.describe() + " and " + b.describe() + " do not broadcast");
    }
    s[i] = da == 1 ? db : da;
  }
  return s;
}

// y[i] = f(a[...], b[...]) over the broadcast, Out the output element type.
template <typename Out, typename F>
void broadcast_loop(const Tensor& a, const Tensor& b, Tensor& y, F f) {
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  Out* py = y.data<Out>();
  const int64_t n = y.numel();
  if (n == 0) return;
  if (a.numel() == n && b.numel() == n) {
    for (int64_t i = 0; i < n; ++i) py[i] = f(pa[i], pb[i]);
    return;
  }
  const BroadcastWalk walk = plan_broadcast(y.shape(), a.shape(), b.shape());
  const int64_t inner = walk.dims[0], sa = walk.sa[0], sb = walk.sb[0];
  int64_t idx[8] = {};
  for (int64_t row = 0; row < n / inner; ++row) {
    int64_t oa = 0, ob = 0;
    for (int d = 1; d < walk.rank; ++d) {
      oa += idx[d] * walk.sa[d];
      ob += idx[d] * walk.sb[d];
    }
    Out* yr = py + row * inner;
    for (int64_t i = 0; i < inner; ++i) yr[i] = f(pa[oa + i * sa], pb[ob + i * sb]);
    for (int d = 1; d < walk.rank; ++d) {  // odometer over the outer dims
      if (++idx[d] < walk.dims[d]) break;
      idx[d] = 0;
    }
  }
}

void check_float_operands(const std::string& step, const Tensor& a, const Tensor& b) {
  if (a.dtype() != DType::kFloat32 || b.dtype() != DType::kFloat32) {
    throw Error(ErrorCode::kInvalidArgument,
                step + ": float32 operands expected, got " + a.describe() + " and " + b.describe());
  }
}

class CompareF32Step : public Step {
 public:
  explicit CompareF32Step(CompareOp op) : op_(op) {}
  std::string kernel() const override {
    static const char* const kNames[] = {"equal_f32", "less_f32", "less_equal_f32", "greater_f32", "greater_equal_f32"};
    return kNames[static_cast<int>(op_)];
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_float_operands(name, *in[0], *in[1]);
    out.assign(1, {DType::kBool, broadcast_shape(name, *in[0], *in[1])});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const Tensor& a = *in[0];
    const Tensor& b = *in[1];
    Tensor& y = *out[0];
    switch (op_) {
      case CompareOp::kEqual: broadcast_loop<bool>(a, b, y, [](float x, float z) { return x == z; }); break;
      case CompareOp::kLess: broadcast_loop<bool>(a, b, y, [](float x, float z) { return x < z; }); break;
      case CompareOp::kLessOrEqual: broadcast_loop<bool>(a, b, y, [](float x, float z) { return x <= z; }); break;
      case CompareOp::kGreater: broadcast_loop<bool>(a, b, y, [](float x, float z) { return x > z; }); break;
      case CompareOp::kGreaterOrEqual: broadcast_loop<bool>(a, b, y, [](float x, float z) { return x >= z; }); break;
    }
  }

 private:
  CompareOp op_;
};

class MinMaxF32Step : public Step {
 public:
  explicit MinMaxF32Step(bool max) : max_(max) {}
  std::string kernel() const override { return max_ ? "max_f32" : "min_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_float_operands(name, *in[0], *in[1]);
    out.assign(1, {DType::kFloat32, broadcast_shape(name, *in[0], *in[1])});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    if (max_) {
      broadcast_loop<float>(*in[0], *in[1], *out[0], [](float x, float y) { return x < y ? y : x; });
    } else {
      broadcast_loop<float>(*in[0], *in[1], *out[0], [](float x, float y) { return y < x ? y : x; });
    }
  }

 private:
  bool max_;
};

class ExpF32Step : public Step {
 public:
  std::string kernel() const override { return "exp_f32"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    if (in[0]->dtype() != DType::kFloat32) {
      throw Error(ErrorCode::kInvalidArgument, name + ": float32 input expected, got " + in[0]->describe());
    }
    out.assign(1, {DType::kFloat32, in[0]->shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    const int64_t n = in[0]->numel();
    for (int64_t i = 0; i < n; ++i) y[i] = std::exp(x[i]);
  }
};

}  // namespace

std::unique_ptr<Step> make_compare_f32_step(CompareOp op) { return std::make_unique<CompareF32Step>(op); }
std::unique_ptr<Step> make_minmax_f32_step(bool max) { return std::make_unique<MinMaxF32Step>(max); }
std::unique_ptr<Step> make_exp_f32_step() { return std::make_unique<ExpF32Step>(); }

}  // namespace kvant
