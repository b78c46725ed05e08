// Binary, ternary and variadic elementwise operators with numpy broadcasting
// (ONNX opsets 7..21). Inputs of one operator share one type unless noted.
//
//   Add, Sub, Mul     out = a op b; integers wrap around (two's complement)
//   Div               integers truncate toward zero (C++ and ONNX Runtime);
//                     x / 0 = 0 and INT_MIN / -1 = INT_MIN for integers, so
//                     bad data cannot trap the process
//   Pow               out = a ^ b with the type of a; b may be any numeric type.
//                     Integer a and b: exact repeated squaring (wrapping);
//                     otherwise pow() in double, converted back to a's type
//   Mod               fmod = 1: a - trunc(a / b) * b, sign of a (C fmod, C++ %)
//                     fmod = 0: a - floor(a / b) * b, sign of b (Python %);
//                     integers only, as ONNX requires; x mod 0 = 0 for integers
//   BitShift          unsigned types; direction LEFT | RIGHT; shifting by the
//                     bit width or more gives 0
//   Equal, Less, Greater, LessOrEqual, GreaterOrEqual   -> bool
//   And, Or, Xor      bool;  BitwiseAnd, BitwiseOr, BitwiseXor   integers
//   Where(c, x, y)    c ? x : y, broadcasting all three
//   Max, Min, Sum, Mean   1..N inputs folded left to right, broadcasting at
//                     each step (broadcasting is associative)
// Before opset 7, broadcast = 1 with an axis aligns input 1 at that axis.
#include <cmath>
#include <limits>
#include <type_traits>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

template <typename T>
inline constexpr bool kIsInt = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// Unsigned type wide enough that arithmetic on it never promotes to int.
template <typename T>
using WrapType = std::conditional_t<(sizeof(T) < 4), uint32_t, std::make_unsigned_t<T>>;

struct AddOp {
  template <typename C>
  C operator()(C x, C y) const {
    if constexpr (kIsInt<C>) {
      return static_cast<C>(static_cast<WrapType<C>>(x) + static_cast<WrapType<C>>(y));
    } else {
      return x + y;
    }
  }
};
struct SubOp {
  template <typename C>
  C operator()(C x, C y) const {
    if constexpr (kIsInt<C>) {
      return static_cast<C>(static_cast<WrapType<C>>(x) - static_cast<WrapType<C>>(y));
    } else {
      return x - y;
    }
  }
};
struct MulOp {
  template <typename C>
  C operator()(C x, C y) const {
    if constexpr (kIsInt<C>) {
      return static_cast<C>(static_cast<WrapType<C>>(x) * static_cast<WrapType<C>>(y));
    } else {
      return x * y;
    }
  }
};
struct DivOp {
  template <typename C>
  C operator()(C x, C y) const {
    if constexpr (kIsInt<C>) {
      if (y == 0) return 0;
      if constexpr (std::is_signed_v<C>) {
        if (y == -1) return SubOp{}(C{0}, x);
      }
      return static_cast<C>(x / y);
    } else {
      return x / y;
    }
  }
};
struct MaxOp {
  template <typename C>
  C operator()(C x, C y) const {
    return x < y ? y : x;  // a NaN in x is kept
  }
};
struct MinOp {
  template <typename C>
  C operator()(C x, C y) const {
    return y < x ? y : x;
  }
};

void check_same_type(const KernelContext& ctx, const Tensor& a, const Tensor& b) {
  if (a.dtype() != b.dtype()) {
    ctx.fail(std::string("inputs have different types ") + dtype_name(a.dtype()) + " and " + dtype_name(b.dtype()));
  }
}

// Input 1, reshaped for the opset 1..6 form of broadcasting where the node
// says broadcast = 1: b's dims line up with a's starting at `axis` (default:
// trailing), which numpy rules express by appending 1s to b's shape.
Tensor second_input(const KernelContext& ctx) {
  const Tensor& b = ctx.input(1);
  if (ctx.opset >= 7 || ctx.node.attr_int("broadcast", 0) == 0 || !ctx.node.has_attr("axis")) return b;
  const int64_t rank = ctx.input(0).rank();
  const int64_t axis = normalize_axis(ctx, ctx.node.attr_int("axis", 0), rank);
  if (axis + b.rank() > rank) {
    ctx.fail("input 1 " + shape_to_string(b.shape()) + " does not fit at axis " + std::to_string(axis));
  }
  Shape shape = b.shape();
  shape.resize(static_cast<size_t>(rank - axis), 1);
  return b.reshaped(shape);
}

// Output of a's type, computed in compute_t<T> by op.
template <typename Set, typename Op>
void arithmetic(KernelContext& ctx, Op op) {
  const Tensor& a = ctx.input(0);
  const Tensor b = second_input(ctx);
  check_same_type(ctx, a, b);
  dispatch<Set>(a.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) {
      ctx.set_output(0, broadcast_binary<T, T, T>(
                            ctx, a, b, [op](T x, T y) { return from_compute<T>(op(to_compute(x), to_compute(y))); }));
    }
  });
}

void run_add(KernelContext& ctx) { arithmetic<NumericTypes>(ctx, AddOp{}); }
void run_sub(KernelContext& ctx) { arithmetic<NumericTypes>(ctx, SubOp{}); }
void run_mul(KernelContext& ctx) { arithmetic<NumericTypes>(ctx, MulOp{}); }
void run_div(KernelContext& ctx) { arithmetic<NumericTypes>(ctx, DivOp{}); }

void run_mod(KernelContext& ctx) {
  const int64_t fmod = ctx.node.attr_int("fmod", 0);
  if (fmod != 0 && fmod != 1) ctx.fail("attribute fmod must be 0 or 1, got " + std::to_string(fmod));
  if (fmod == 0 && is_float(ctx.input(0).dtype())) {
    ctx.fail("fmod = 0 is not valid for floating-point inputs (ONNX requires fmod = 1)");
  }
  arithmetic<NumericTypes>(ctx, [fmod](auto x, auto y) {
    using C = decltype(x);
    if constexpr (kIsInt<C>) {
      if (y == 0) return C{0};
      if constexpr (std::is_signed_v<C>) {
        if (y == -1) return C{0};  // also avoids INT_MIN % -1
        C r = static_cast<C>(x % y);
        if (fmod == 0 && r != 0 && ((r < 0) != (y < 0))) r = static_cast<C>(r + y);
        return r;
      } else {
        return static_cast<C>(x % y);
      }
    } else {
      return static_cast<C>(std::fmod(x, y));
    }
  });
}

// double -> integer T: truncates; NaN gives 0, out-of-range values saturate.
template <typename T>
T saturate_to_int(double v) {
  if (std::isnan(v)) return 0;
  if (v <= static_cast<double>(std::numeric_limits<T>::lowest())) return std::numeric_limits<T>::lowest();
  if (v >= static_cast<double>(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return static_cast<T>(v);
}

// x ^ e for integers by repeated squaring, wrapping like Mul.
template <typename T>
T int_pow(T x, int64_t e) {
  if (e < 0) {  // 1/x^|e| truncated: nonzero only for x = 1 and x = -1
    if (x == 1) return 1;
    if constexpr (std::is_signed_v<T>) {
      if (x == -1) return (e % 2 == 0) ? T{1} : T{-1};
    }
    return 0;
  }
  T result = 1;
  while (e > 0) {
    if (e & 1) result = MulOp{}(result, x);
    x = MulOp{}(x, x);
    e >>= 1;
  }
  return result;
}

void run_pow(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor b = second_input(ctx);
  dispatch<NumericTypes>(b.dtype(), ctx, [](auto) {});  // names an unsupported exponent type
  // The exponent is read as int64 (integer types) or double (float types),
  // so each base type needs two loops, not one per exponent type.
  const bool int_exponent = is_integer(b.dtype());
  Tensor exponent(int_exponent ? DType::kInt64 : DType::kFloat64, b.shape());
  for (int64_t i = 0; i < b.numel(); ++i) {
    if (int_exponent) {
      exponent.data<int64_t>()[i] = b.get_as_int64(i);
    } else {
      exponent.data<double>()[i] = b.get_as_double(i);
    }
  }
  dispatch<NumericTypes>(a.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    auto convert = [](double v) {
      if constexpr (kIsInt<T>) {
        return saturate_to_int<T>(v);
      } else {
        return from_compute<T>(static_cast<C>(v));
      }
    };
    if (int_exponent) {
      ctx.set_output(0, broadcast_binary<T, int64_t, T>(ctx, a, exponent, [&](T x, int64_t e) {
                       if constexpr (kIsInt<T>) {
                         return int_pow<T>(x, e);
                       } else {
                         return convert(std::pow(static_cast<double>(to_compute(x)), static_cast<double>(e)));
                       }
                     }));
    } else {
      ctx.set_output(0, broadcast_binary<T, double, T>(ctx, a, exponent, [convert](T x, double e) {
                       const double v = static_cast<double>(to_compute(x));
                       return convert(e == 2.0 ? v * v : std::pow(v, e));  // x^2: LayerNorm graphs
                     }));
    }
  });
}

void run_bit_shift(KernelContext& ctx) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  check_same_type(ctx, a, b);
  const std::string direction = ctx.node.attr_string("direction", "");
  if (direction != "LEFT" && direction != "RIGHT") {
    ctx.fail("attribute direction must be \"LEFT\" or \"RIGHT\", got \"" + direction + "\"");
  }
  const bool left = direction == "LEFT";
  dispatch<NumericTypes>(a.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (kIsInt<T> && std::is_unsigned_v<T>) {
      ctx.set_output(0, broadcast_binary<T, T, T>(ctx, a, b, [left](T x, T s) {
                       if (s >= sizeof(T) * 8) return T{0};
                       return left ? static_cast<T>(static_cast<WrapType<T>>(x) << s) : static_cast<T>(x >> s);
                     }));
    } else {
      ctx.unsupported(std::string("BitShift of ") + dtype_name(a.dtype()) + " (only unsigned integers)");
    }
  });
}

template <typename Cmp>
void compare(KernelContext& ctx, Cmp cmp) {
  const Tensor& a = ctx.input(0);
  const Tensor b = second_input(ctx);
  check_same_type(ctx, a, b);
  dispatch<AllTypes>(a.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ctx.set_output(0, broadcast_binary<T, T, bool>(
                          ctx, a, b, [cmp](T x, T y) { return static_cast<bool>(cmp(to_compute(x), to_compute(y))); }));
  });
}

void run_equal(KernelContext& ctx) {
  compare(ctx, [](auto x, auto y) { return x == y; });
}
void run_less(KernelContext& ctx) {
  compare(ctx, [](auto x, auto y) { return x < y; });
}
void run_greater(KernelContext& ctx) {
  compare(ctx, [](auto x, auto y) { return x > y; });
}
void run_less_equal(KernelContext& ctx) {
  compare(ctx, [](auto x, auto y) { return x <= y; });
}
void run_greater_equal(KernelContext& ctx) {
  compare(ctx, [](auto x, auto y) { return x >= y; });
}

template <typename Op>
void logical(KernelContext& ctx, Op op) {
  const Tensor& a = ctx.input(0);
  const Tensor b = second_input(ctx);
  if (a.dtype() != DType::kBool || b.dtype() != DType::kBool) {
    ctx.fail(std::string("inputs must be bool, got ") + dtype_name(a.dtype()) + " and " + dtype_name(b.dtype()));
  }
  ctx.set_output(0, broadcast_binary<bool, bool, bool>(ctx, a, b, op));
}

void run_and(KernelContext& ctx) {
  logical(ctx, [](bool x, bool y) { return x && y; });
}
void run_or(KernelContext& ctx) {
  logical(ctx, [](bool x, bool y) { return x || y; });
}
void run_xor(KernelContext& ctx) {
  logical(ctx, [](bool x, bool y) { return x != y; });
}

template <typename Op>
void bitwise(KernelContext& ctx, Op op) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  check_same_type(ctx, a, b);
  if (!is_integer(a.dtype())) ctx.fail(std::string("inputs must be integers, got ") + dtype_name(a.dtype()));
  dispatch<NumericTypes>(a.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (kIsInt<T>) {
      ctx.set_output(0, broadcast_binary<T, T, T>(ctx, a, b, [op](T x, T y) { return static_cast<T>(op(x, y)); }));
    }
  });
}

void run_bitwise_and(KernelContext& ctx) {
  bitwise(ctx, [](auto x, auto y) { return x & y; });
}
void run_bitwise_or(KernelContext& ctx) {
  bitwise(ctx, [](auto x, auto y) { return x | y; });
}
void run_bitwise_xor(KernelContext& ctx) {
  bitwise(ctx, [](auto x, auto y) { return x ^ y; });
}

void run_where(KernelContext& ctx) {
  const Tensor& cond = ctx.input(0);
  const Tensor& x = ctx.input(1);
  const Tensor& y = ctx.input(2);
  if (cond.dtype() != DType::kBool) ctx.fail(std::string("condition must be bool, got ") + dtype_name(cond.dtype()));
  check_same_type(ctx, x, y);
  const Shape shape = broadcast_shapes(ctx, broadcast_shapes(ctx, cond.shape(), x.shape()), y.shape());
  dispatch<AllTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    Tensor out(x.dtype(), shape);
    const bool* pc = cond.data<bool>();
    const T* px = x.data<T>();
    const T* py = y.data<T>();
    T* po = out.data<T>();
    const BroadcastPlan plan = make_broadcast_plan(shape, {cond.shape(), x.shape(), y.shape()});
    for_each_run<4>(plan, [&](const int64_t* off, int64_t inner, const int64_t* step) {
      for (int64_t i = 0; i < inner; ++i) {
        po[off[0] + i] = pc[off[1] + i * step[1]] ? px[off[2] + i * step[2]] : py[off[3] + i * step[3]];
      }
    });
    ctx.set_output(0, std::move(out));
  });
}

// Folds inputs left to right with op; Mean divides the sum by the count.
template <typename Set, typename Op>
void variadic(KernelContext& ctx, Op op, bool mean) {
  if (ctx.num_inputs() == 0) ctx.fail("needs at least one input");
  const Tensor& first = ctx.input(0);
  for (size_t i = 1; i < ctx.num_inputs(); ++i) check_same_type(ctx, first, ctx.input(i));
  dispatch<Set>(first.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!std::is_same_v<T, bool>) {
      auto fn = [op](T x, T y) { return from_compute<T>(op(to_compute(x), to_compute(y))); };
      Tensor acc = ctx.num_inputs() == 1 ? first.clone() : broadcast_binary<T, T, T>(ctx, first, ctx.input(1), fn);
      for (size_t i = 2; i < ctx.num_inputs(); ++i) acc = broadcast_binary<T, T, T>(ctx, acc, ctx.input(i), fn);
      if (mean) {
        const auto count = static_cast<compute_t<T>>(ctx.num_inputs());
        T* p = acc.data<T>();
        for (int64_t i = 0; i < acc.numel(); ++i) p[i] = from_compute<T>(to_compute(p[i]) / count);
      }
      ctx.set_output(0, std::move(acc));
    }
  });
}

void run_max(KernelContext& ctx) { variadic<NumericTypes>(ctx, MaxOp{}, false); }
void run_min(KernelContext& ctx) { variadic<NumericTypes>(ctx, MinOp{}, false); }
void run_sum(KernelContext& ctx) { variadic<NumericTypes>(ctx, AddOp{}, false); }
void run_mean(KernelContext& ctx) { variadic<FloatTypes>(ctx, AddOp{}, true); }

constexpr OpDef kBinaryOps[] = {
    {"Add", "", run_add},
    {"Sub", "", run_sub},
    {"Mul", "", run_mul},
    {"Div", "", run_div},
    {"Pow", "", run_pow},
    {"Mod", "", run_mod},
    {"BitShift", "", run_bit_shift},
    {"Equal", "", run_equal},
    {"Less", "", run_less},
    {"Greater", "", run_greater},
    {"LessOrEqual", "", run_less_equal},
    {"GreaterOrEqual", "", run_greater_equal},
    {"And", "", run_and},
    {"Or", "", run_or},
    {"Xor", "", run_xor},
    {"BitwiseAnd", "", run_bitwise_and},
    {"BitwiseOr", "", run_bitwise_or},
    {"BitwiseXor", "", run_bitwise_xor},
    {"Where", "", run_where},
    {"Max", "", run_max},
    {"Min", "", run_min},
    {"Sum", "", run_sum},
    {"Mean", "", run_mean},
};

}  // namespace

std::span<const OpDef> binary_ops() { return kBinaryOps; }

}  // namespace kvant
