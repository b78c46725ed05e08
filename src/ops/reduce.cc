// Reductions over a set of axes, and ArgMax/ArgMin along one axis.
//
//   ReduceSum  Σx          ReduceMean  Σx / n       ReduceProd  Πx
//   ReduceMax  max x       ReduceMin   min x        ReduceL1    Σ|x|
//   ReduceL2   sqrt(Σx²)   ReduceSumSquare  Σx²     ReduceLogSum  log Σx
//   ReduceLogSumExp  m + log Σexp(x - m), m = max x (for stability)
//
// Axes: attribute before opset 18 (ReduceSum: before 13), optional input
// from then on. No axes = reduce all, unless noop_with_empty_axes (which comes
// with the axes input), then the output is the input (ReduceSumSquare: x², as
// the ONNX reference does). keepdims (default 1) keeps reduced axes as 1.
// Over an empty set the result is the identity of the reduction: 0 for sums,
// 1 for Prod, -inf/+inf (or the type's limits) for Max/Min, NaN for Mean.
// Max/Min propagate NaN. Accumulation is in double for floats and 64-bit
// integers for integer types.
//
// ArgMax/ArgMin: int64 index of the first (select_last_index: last) extreme
// along `axis`; NaN counts as the extreme, as in numpy.
#include <cmath>
#include <limits>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

enum class ReduceKind { kSum, kMean, kProd, kMax, kMin, kL1, kL2, kSumSquare, kLogSum, kLogSumExp };

// Accumulator: double for floats, 64-bit integers otherwise (bool as int64).
template <typename T>
using acc_t =
    std::conditional_t<std::is_floating_point_v<compute_t<T>>, double,
                       std::conditional_t<std::is_unsigned_v<T> && !std::is_same_v<T, bool>, uint64_t, int64_t>>;

// double -> T, saturating non-finite values for integer types.
template <typename T>
T to_output(double v) {
  if constexpr (std::is_floating_point_v<compute_t<T>>) {
    return from_compute<T>(static_cast<compute_t<T>>(v));
  } else if constexpr (std::is_same_v<T, bool>) {
    return v != 0;
  } else {
    if (std::isnan(v)) return T(0);
    if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
    if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
    return static_cast<T>(v);
  }
}

template <typename A>
A lowest_value() {
  return std::numeric_limits<A>::has_infinity ? -std::numeric_limits<A>::infinity() : std::numeric_limits<A>::lowest();
}
template <typename A>
A highest_value() {
  return std::numeric_limits<A>::has_infinity ? std::numeric_limits<A>::infinity() : std::numeric_limits<A>::max();
}

template <typename A>
bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>) return std::isnan(v);
  return false;
}

// Which axes a reduction node reduces; empty `reduced` + noop = identity.
struct ReducePlan {
  std::vector<bool> reduced;  // per input dim
  Shape out_shape;            // with keepdims applied
  bool noop = false;
};

ReducePlan plan_reduction(const KernelContext& ctx, const Tensor& x, int64_t axes_input_opset) {
  std::vector<int64_t> axes;
  bool noop_allowed = false;
  if (ctx.opset >= axes_input_opset) {
    if (ctx.has_input(1)) axes = ctx.input(1).to_int64_vector();
    noop_allowed = ctx.node.attr_int("noop_with_empty_axes", 0) != 0;
  } else {
    axes = ctx.node.attr_ints("axes");
  }
  const bool keepdims = ctx.node.attr_int("keepdims", 1) != 0;
  ReducePlan plan;
  const auto rank = static_cast<size_t>(x.rank());
  plan.reduced.assign(rank, axes.empty());
  if (axes.empty() && noop_allowed) {
    plan.noop = true;
    plan.out_shape = x.shape();
    return plan;
  }
  for (int64_t a : axes) {
    const int64_t d = normalize_axis(ctx, a, x.rank());
    if (rank == 0) continue;  // axis 0/-1 of a scalar: nothing to mark
    if (plan.reduced[static_cast<size_t>(d)]) ctx.fail("axis " + std::to_string(a) + " is listed twice");
    plan.reduced[static_cast<size_t>(d)] = true;
  }
  for (size_t d = 0; d < rank; ++d) {
    if (!plan.reduced[d]) {
      plan.out_shape.push_back(x.shape()[d]);
    } else if (keepdims) {
      plan.out_shape.push_back(1);
    }
  }
  return plan;
}

template <typename T>
void run_reduction(const Tensor& x, const ReducePlan& plan, ReduceKind kind, Tensor& y) {
  using A = acc_t<T>;
  const T* in = x.data<T>();
  T* out = y.data<T>();
  const int64_t n_out = y.numel();
  // Input dim -> output element stride (0 along reduced dims).
  Shape kept_shape(x.shape().size());
  for (size_t d = 0; d < kept_shape.size(); ++d) kept_shape[d] = plan.reduced[d] ? 1 : x.shape()[d];
  const std::vector<int64_t> strides[1] = {broadcast_strides(kept_shape, x.shape())};
  const int64_t count = n_out == 0 ? 0 : x.numel() / n_out;
  // Fast path: after dropping size-1 dims and merging neighbours of the same
  // kind, the input is [outer kept, reduced, inner kept] (e.g. LayerNorm's
  // mean over the last axis).
  std::vector<std::pair<bool, int64_t>> groups;  // (reduced, size)
  for (size_t d = 0; d < x.shape().size(); ++d) {
    if (x.shape()[d] == 1) continue;
    if (!groups.empty() && groups.back().first == plan.reduced[d]) {
      groups.back().second *= x.shape()[d];
    } else {
      groups.emplace_back(plan.reduced[d], x.shape()[d]);
    }
  }
  int64_t outer = 1, len = 1, inner = 1;
  bool simple = false;
  if (groups.size() <= 3) {
    size_t g = 0;
    if (g < groups.size() && !groups[g].first) outer = groups[g++].second;
    if (g < groups.size() && groups[g].first) len = groups[g++].second;
    if (g < groups.size() && !groups[g].first) inner = groups[g++].second;
    simple = g == groups.size();
  }

  std::vector<A> acc(static_cast<size_t>(n_out));
  std::vector<A> shift;  // LogSumExp: per-output max
  auto accumulate = [&](auto step) {
    if (simple && inner == 1) {  // reduce contiguous rows, accumulating in a register
      for (int64_t o = 0; o < outer; ++o) {
        const T* row = in + o * len;
        A a = acc[static_cast<size_t>(o)];
        for (int64_t r = 0; r < len; ++r) a = step(a, static_cast<A>(to_compute(row[r])), o);
        acc[static_cast<size_t>(o)] = a;
      }
      return;
    }
    if (simple) {
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t r = 0; r < len; ++r) {
          const T* row = in + (o * len + r) * inner;
          A* a = acc.data() + o * inner;
          for (int64_t j = 0; j < inner; ++j) a[j] = step(a[j], static_cast<A>(to_compute(row[j])), o * inner + j);
        }
      }
      return;
    }
    int64_t i = 0;
    for_each_index(x.shape(), strides, [&](const int64_t* off) {
      A& a = acc[static_cast<size_t>(off[0])];
      a = step(a, static_cast<A>(to_compute(in[i++])), off[0]);
    });
  };
  auto fill = [&](A v) { std::fill(acc.begin(), acc.end(), v); };
  switch (kind) {
    case ReduceKind::kMax:
    case ReduceKind::kMin:
    case ReduceKind::kLogSumExp: {
      const bool max = kind != ReduceKind::kMin;
      fill(max ? lowest_value<A>() : highest_value<A>());
      accumulate([&](A a, A v, int64_t) {
        if (is_nan(a)) return a;
        if (is_nan(v)) return v;
        return max ? std::max(a, v) : std::min(a, v);
      });
      if (kind != ReduceKind::kLogSumExp) break;
      shift = acc;
      for (A& s : shift) {
        if (!std::isfinite(static_cast<double>(s))) s = 0;
      }
      fill(0);
      accumulate([&](A a, A v, int64_t o) {
        return static_cast<A>(static_cast<double>(a) +
                              std::exp(static_cast<double>(v) - static_cast<double>(shift[static_cast<size_t>(o)])));
      });
      break;
    }
    case ReduceKind::kProd:
      fill(1);
      accumulate([](A a, A v, int64_t) { return static_cast<A>(a * v); });
      break;
    case ReduceKind::kL1:
      fill(0);
      accumulate([](A a, A v, int64_t) {
        if constexpr (std::is_unsigned_v<A>) {
          return static_cast<A>(a + v);
        } else {
          return static_cast<A>(a + (v < 0 ? -v : v));
        }
      });
      break;
    case ReduceKind::kL2:
    case ReduceKind::kSumSquare:
      fill(0);
      accumulate([](A a, A v, int64_t) { return static_cast<A>(a + v * v); });
      break;
    default:  // kSum, kMean, kLogSum
      fill(0);
      accumulate([](A a, A v, int64_t) { return static_cast<A>(a + v); });
      break;
  }
  for (int64_t o = 0; o < n_out; ++o) {
    const A a = acc[static_cast<size_t>(o)];
    switch (kind) {
      case ReduceKind::kMean: out[o] = to_output<T>(static_cast<double>(a) / static_cast<double>(count)); break;
      case ReduceKind::kL2: out[o] = to_output<T>(std::sqrt(static_cast<double>(a))); break;
      case ReduceKind::kLogSum: out[o] = to_output<T>(std::log(static_cast<double>(a))); break;
      case ReduceKind::kLogSumExp:
        out[o] = to_output<T>(static_cast<double>(shift[static_cast<size_t>(o)]) + std::log(static_cast<double>(a)));
        break;
      default:
        if constexpr (std::is_floating_point_v<A>) {
          out[o] = to_output<T>(a);
        } else {
          out[o] = static_cast<T>(a);  // integer sums wrap, as in numpy
        }
    }
  }
}

template <ReduceKind kKind>
void reduce(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const int64_t axes_input_opset = kKind == ReduceKind::kSum ? 13 : 18;
  const ReducePlan plan = plan_reduction(ctx, x, axes_input_opset);
  if (plan.noop && kKind != ReduceKind::kSumSquare) {
    ctx.set_output(0, x);
    return;
  }
  Tensor y(x.dtype(), plan.out_shape);
  auto body = [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (plan.noop) {  // ReduceSumSquare with noop: x²
      const T* in = x.data<T>();
      T* out = y.data<T>();
      for (int64_t i = 0; i < x.numel(); ++i) {
        const compute_t<T> v = to_compute(in[i]);
        out[i] = from_compute<T>(static_cast<compute_t<T>>(v * v));
      }
    } else {
      run_reduction<T>(x, plan, kKind, y);
    }
  };
  if constexpr (kKind == ReduceKind::kMax || kKind == ReduceKind::kMin) {
    dispatch<AllTypes>(x.dtype(), ctx, body);  // bool since opset 20
  } else {
    dispatch<NumericTypes>(x.dtype(), ctx, body);
  }
  ctx.set_output(0, std::move(y));
}

template <bool kMax>
void arg_extreme(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.rank() == 0) ctx.fail("input must have rank >= 1, got " + x.describe());
  const auto axis = static_cast<size_t>(normalize_axis(ctx, ctx.node.attr_int("axis", 0), x.rank()));
  const bool keepdims = ctx.node.attr_int("keepdims", 1) != 0;
  const bool last = ctx.opset >= 12 && ctx.node.attr_int("select_last_index", 0) != 0;
  const int64_t dim = x.shape()[axis];
  if (dim == 0) ctx.fail("cannot take the arg extreme of an empty axis in " + x.describe());
  Shape out_shape = x.shape();
  if (keepdims) {
    out_shape[axis] = 1;
  } else {
    out_shape.erase(out_shape.begin() + static_cast<std::ptrdiff_t>(axis));
  }
  Tensor y(DType::kInt64, out_shape);
  int64_t outer = 1, inner = 1;
  for (size_t d = 0; d < axis; ++d) outer *= x.shape()[d];
  for (size_t d = axis + 1; d < x.shape().size(); ++d) inner *= x.shape()[d];
  dispatch<NumericTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    const T* in = x.data<T>();
    int64_t* out = y.data<int64_t>();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t j = 0; j < inner; ++j) {
        const T* p = in + o * dim * inner + j;
        C best = to_compute(p[0]);
        int64_t best_i = 0;
        for (int64_t i = 1; i < dim; ++i) {
          const C v = to_compute(p[i * inner]);
          if (is_nan(best)) break;  // the first NaN wins
          const bool better = is_nan(v) || (kMax ? v > best : v < best) || (last && v == best);
          if (better) {
            best = v;
            best_i = i;
          }
        }
        out[o * inner + j] = best_i;
      }
    }
  });
  ctx.set_output(0, std::move(y));
}

constexpr OpDef kReduceOps[] = {
    {"ReduceSum", "", reduce<ReduceKind::kSum>},
    {"ReduceMean", "", reduce<ReduceKind::kMean>},
    {"ReduceProd", "", reduce<ReduceKind::kProd>},
    {"ReduceMax", "", reduce<ReduceKind::kMax>},
    {"ReduceMin", "", reduce<ReduceKind::kMin>},
    {"ReduceL1", "", reduce<ReduceKind::kL1>},
    {"ReduceL2", "", reduce<ReduceKind::kL2>},
    {"ReduceSumSquare", "", reduce<ReduceKind::kSumSquare>},
    {"ReduceLogSum", "", reduce<ReduceKind::kLogSum>},
    {"ReduceLogSumExp", "", reduce<ReduceKind::kLogSumExp>},
    {"ArgMax", "", arg_extreme<true>},
    {"ArgMin", "", arg_extreme<false>},
};

}  // namespace

std::span<const OpDef> reduce_ops() { return kReduceOps; }

}  // namespace kvant
