// Unary elementwise math (ONNX opsets 7..21): out[i] = f(x[i]), same type and
// shape as x, the 16-bit floats computed in float.
//
//   Sqrt Exp Log Erf Reciprocal Floor Ceil Sin Cos Tan Asin Acos Atan Sinh Cosh
//   Asinh Acosh Atanh   floating point; IEEE results outside the domain (NaN, inf)
//   Round               half to even, independent of the FPU rounding mode
//   Neg Abs Sign        floating point and integers; integer Neg/Abs wrap
//                       (-INT_MIN = INT_MIN); Sign(NaN) = NaN
//   Not                 bool;  BitwiseNot  integers
//   IsNaN               -> bool
//   IsInf               -> bool, detect_negative / detect_positive (default 1)
#include <cmath>
#include <type_traits>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

template <typename C>
inline constexpr bool kIsInt = std::is_integral_v<C> && !std::is_same_v<C, bool>;

template <typename C>
C negate(C v) {
  if constexpr (kIsInt<C>) {
    using W = std::conditional_t<(sizeof(C) < 4), uint32_t, std::make_unsigned_t<C>>;
    return static_cast<C>(W{0} - static_cast<W>(v));
  } else {
    return -v;
  }
}

void run_sqrt(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::sqrt(v); }); }
void run_exp(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::exp(v); }); }
void run_log(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::log(v); }); }
void run_erf(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::erf(v); }); }
void run_reciprocal(KernelContext& ctx) {
  map_unary<FloatTypes>(ctx, [](auto v) { return decltype(v){1} / v; });
}
void run_floor(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::floor(v); }); }
void run_ceil(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::ceil(v); }); }
void run_round(KernelContext& ctx) {
  map_unary<FloatTypes>(ctx, [](auto v) {
    using C = decltype(v);
    C r = std::floor(v);
    const C diff = v - r;  // NaN for +-inf and NaN, which then pass through
    if (diff > C(0.5) || (diff == C(0.5) && std::fmod(r, C(2)) != 0)) r += 1;
    return r;
  });
}
void run_sin(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::sin(v); }); }
void run_cos(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::cos(v); }); }
void run_tan(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::tan(v); }); }
void run_asin(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::asin(v); }); }
void run_acos(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::acos(v); }); }
void run_atan(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::atan(v); }); }
void run_sinh(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::sinh(v); }); }
void run_cosh(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::cosh(v); }); }
void run_asinh(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::asinh(v); }); }
void run_acosh(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::acosh(v); }); }
void run_atanh(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::atanh(v); }); }

void run_neg(KernelContext& ctx) {
  map_unary<NumericTypes>(ctx, [](auto v) { return negate(v); });
}
void run_abs(KernelContext& ctx) {
  map_unary<NumericTypes>(ctx, [](auto v) {
    using C = decltype(v);
    if constexpr (std::is_unsigned_v<C>) {
      return v;
    } else {
      return v < C{0} ? negate(v) : v;
    }
  });
}
void run_sign(KernelContext& ctx) {
  map_unary<NumericTypes>(ctx, [](auto v) {
    using C = decltype(v);
    if constexpr (std::is_unsigned_v<C>) {
      return static_cast<C>(v != 0 ? 1 : 0);
    } else {
      if constexpr (!kIsInt<C>) {
        if (std::isnan(v)) return v;
      }
      return static_cast<C>(C{0} < v ? 1 : (v < C{0} ? -1 : 0));
    }
  });
}

void run_not(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.dtype() != DType::kBool) ctx.fail(std::string("input must be bool, got ") + dtype_name(x.dtype()));
  map_unary<AllTypes>(ctx, [](auto v) { return !v; });
}

void run_bitwise_not(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (!is_integer(x.dtype())) ctx.fail(std::string("input must be an integer, got ") + dtype_name(x.dtype()));
  map_unary<NumericTypes>(ctx, [](auto v) {
    using C = decltype(v);
    if constexpr (kIsInt<C>) {
      return static_cast<C>(~v);
    } else {
      return v;  // not reached: checked above
    }
  });
}

// out[i] = pred(x[i]) as bool, for floating-point x.
template <typename Pred>
void float_predicate(KernelContext& ctx, Pred pred) {
  const Tensor& x = ctx.input(0);
  dispatch<FloatTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor out(DType::kBool, x.shape());
    const T* in = x.data<T>();
    bool* o = out.data<bool>();
    for (int64_t i = 0; i < x.numel(); ++i) o[i] = pred(to_compute(in[i]));
    ctx.set_output(0, std::move(out));
  });
}

void run_is_nan(KernelContext& ctx) {
  float_predicate(ctx, [](auto v) { return std::isnan(v); });
}

void run_is_inf(KernelContext& ctx) {
  const bool negative = ctx.node.attr_int("detect_negative", 1) != 0;
  const bool positive = ctx.node.attr_int("detect_positive", 1) != 0;
  float_predicate(ctx, [negative, positive](auto v) {
    return std::isinf(v) && (v < 0 ? negative : positive);
  });
}

constexpr OpDef kUnaryOps[] = {
    {"Sqrt", "", run_sqrt},
    {"Exp", "", run_exp},
    {"Log", "", run_log},
    {"Erf", "", run_erf},
    {"Reciprocal", "", run_reciprocal},
    {"Floor", "", run_floor},
    {"Ceil", "", run_ceil},
    {"Round", "", run_round},
    {"Sin", "", run_sin},
    {"Cos", "", run_cos},
    {"Tan", "", run_tan},
    {"Asin", "", run_asin},
    {"Acos", "", run_acos},
    {"Atan", "", run_atan},
    {"Sinh", "", run_sinh},
    {"Cosh", "", run_cosh},
    {"Asinh", "", run_asinh},
    {"Acosh", "", run_acosh},
    {"Atanh", "", run_atanh},
    {"Neg", "", run_neg},
    {"Abs", "", run_abs},
    {"Sign", "", run_sign},
    {"Not", "", run_not},
    {"BitwiseNot", "", run_bitwise_not},
    {"IsNaN", "", run_is_nan},
    {"IsInf", "", run_is_inf},
};

}  // namespace

std::span<const OpDef> unary_ops() { return kUnaryOps; }

}  // namespace kvant
