// Loss reference kernels, as exported training graphs hold them (opset 12+):
// NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss. Sums run in double.
//
// NegativeLogLikelihoodLoss(input [N, C, d..], target [N, d..] int, weight? [C])
//   loss[n, d..] = -input[n, t, d..] * w[t] with t = target[n, d..] and w = 1
//   without weights; an element whose target equals ignore_index contributes
//   0 and weighs 0. reduction none: the loss tensor [N, d..]; sum: its sum;
//   mean (the default): its sum divided by the sum of the weights w[t] of the
//   elements not ignored.
// SoftmaxCrossEntropyLoss(scores [N, C, d..], labels, weights?)
//   log_prob = log_softmax(scores) over C (the optional second output), then
//   the loss above of log_prob.
#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

enum class Reduction { kNone, kSum, kMean };

Reduction reduction_of(const KernelContext& ctx) {
  const std::string r = ctx.node.attr_string("reduction", "mean");
  if (r == "none") return Reduction::kNone;
  if (r == "sum") return Reduction::kSum;
  if (r != "mean") ctx.fail("reduction must be none, sum or mean, got \"" + r + "\"");
  return Reduction::kMean;
}

// The loss of log-probabilities `logp` (N x C x inner, row-major) against
// `target` (N x inner), written as `dtype`.
Tensor nll(const KernelContext& ctx, DType dtype, const std::vector<double>& logp, const Shape& input_shape,
           const Tensor& target, const Tensor* weight) {
  if (input_shape.size() < 2) ctx.fail("input needs rank >= 2 ([N, C, d..])");
  const int64_t n = input_shape[0], classes = input_shape[1];
  Shape target_shape = {n};
  target_shape.insert(target_shape.end(), input_shape.begin() + 2, input_shape.end());
  if (target.shape() != target_shape || !is_integer(target.dtype())) {
    ctx.fail("target " + target.describe() + " must be integers of shape [N, d..] for an input of " +
             std::to_string(input_shape.size()) + " dims");
  }
  if (weight != nullptr && (weight->rank() != 1 || weight->dim(0) != classes)) {
    ctx.fail("weight " + weight->describe() + " must be [" + std::to_string(classes) + "]");
  }
  const Reduction reduction = reduction_of(ctx);
  const bool has_ignore = ctx.node.has_attr("ignore_index");
  const int64_t ignore = ctx.node.attr_int("ignore_index", 0);
  const int64_t inner = target.numel() / std::max<int64_t>(n, 1);
  std::vector<double> loss(static_cast<size_t>(target.numel()));
  double total = 0, weight_sum = 0;
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t j = 0; j < inner; ++j) {
      const int64_t at = b * inner + j;
      const int64_t t = target.get_as_int64(at);
      if (has_ignore && t == ignore) continue;
      if (t < 0 || t >= classes) {
        ctx.fail("target value " + std::to_string(t) + " is not a class in [0, " + std::to_string(classes) + ")");
      }
      const double w = weight != nullptr ? weight->get_as_double(t) : 1.0;
      loss[static_cast<size_t>(at)] = -logp[static_cast<size_t>((b * classes + t) * inner + j)] * w;
      total += loss[static_cast<size_t>(at)];
      weight_sum += w;
    }
  }
  std::vector<double> values = loss;
  Shape shape = target_shape;
  if (reduction != Reduction::kNone) {
    values = {reduction == Reduction::kSum ? total : total / weight_sum};
    shape = {};
  }
  Tensor y(dtype, shape);
  dispatch<FloatTypes>(dtype, ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* out = y.data<T>();
    for (size_t i = 0; i < values.size(); ++i) out[i] = from_compute<T>(static_cast<compute_t<T>>(values[i]));
  });
  return y;
}

std::vector<double> as_doubles(const KernelContext& ctx, const Tensor& x) {
  if (!is_float(x.dtype())) ctx.fail("input " + x.describe() + " must be floating point");
  std::vector<double> v(static_cast<size_t>(x.numel()));
  for (int64_t i = 0; i < x.numel(); ++i) v[static_cast<size_t>(i)] = x.get_as_double(i);
  return v;
}

void nll_loss(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor* weight = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  ctx.set_output(0, nll(ctx, x.dtype(), as_doubles(ctx, x), x.shape(), ctx.input(1), weight));
}

void softmax_cross_entropy_loss(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.rank() < 2) ctx.fail("scores " + x.describe() + " need rank >= 2 ([N, C, d..])");
  std::vector<double> logp = as_doubles(ctx, x);
  const int64_t n = x.dim(0), classes = x.dim(1), inner = x.numel() / std::max<int64_t>(n * classes, 1);
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t j = 0; j < inner; ++j) {
      auto at = [&](int64_t c) -> double& { return logp[static_cast<size_t>((b * classes + c) * inner + j)]; };
      double max = -INFINITY;
      for (int64_t c = 0; c < classes; ++c) max = std::max(max, at(c));
      double sum = 0;
      for (int64_t c = 0; c < classes; ++c) sum += std::exp(at(c) - max);
      const double log_sum = max + std::log(sum);
      for (int64_t c = 0; c < classes; ++c) at(c) -= log_sum;
    }
  }
  const Tensor* weight = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  ctx.set_output(0, nll(ctx, x.dtype(), logp, x.shape(), ctx.input(1), weight));
  if (ctx.wants_output(1)) {
    Tensor log_prob(x.dtype(), x.shape());
    dispatch<FloatTypes>(x.dtype(), ctx, [&](auto tag) {
      using T = typename decltype(tag)::type;
      T* out = log_prob.data<T>();
      for (size_t i = 0; i < logp.size(); ++i) out[i] = from_compute<T>(static_cast<compute_t<T>>(logp[i]));
    });
    ctx.set_output(1, std::move(log_prob));
  }
}

constexpr OpDef kLossOps[] = {
    {"NegativeLogLikelihoodLoss", "", nll_loss},
    {"SoftmaxCrossEntropyLoss", "", softmax_cross_entropy_loss},
};

}  // namespace

std::span<const OpDef> loss_ops() { return kLossOps; }

}  // namespace kvant
