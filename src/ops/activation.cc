// Activation functions (ONNX opsets 7..21), elementwise, output type and shape
// of the input, the 16-bit floats computed in float. Defaults in brackets.
//
//   Relu             max(0, x)                      float and signed integers
//   LeakyRelu        x < 0 ? alpha * x : x          alpha [0.01]
//   PRelu(x, slope)  x < 0 ? slope * x : x          slope broadcasts to x's shape
//                    (before opset 7 a [C] slope applies per channel, axis 1)
//   Clip             min(max(x, lo), hi)            lo, hi: attributes min/max before
//                    opset 11, optional scalar inputs 1 and 2 from 11; omitted
//                    bounds are the type's lowest/highest; lo > hi gives hi
//   Sigmoid          1 / (1 + e^-x)                 (e^x / (1 + e^x) for x < 0)
//   HardSigmoid      max(0, min(1, alpha * x + beta))   alpha [0.2], beta [0.5]
//   HardSwish        x * HardSigmoid(x) with alpha = 1/6, beta = 0.5
//   Tanh             tanh(x)
//   Gelu             x/2 * (1 + erf(x / sqrt 2));  approximate = "tanh":
//                    x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
//   Elu              x < 0 ? alpha * (e^x - 1) : x  alpha [1]
//   Selu             gamma * (x <= 0 ? alpha * e^x - alpha : x)
//                    alpha [1.67326319...], gamma [1.05070102...]
//   Celu             max(0, x) + min(0, alpha * (e^(x/alpha) - 1))   alpha [1]
//   Softplus         ln(1 + e^x), as x + log1p(e^-x) for x > 0 (no overflow)
//   Softsign         x / (1 + |x|)
//   Mish             x * tanh(Softplus(x))
//   ThresholdedRelu  x > alpha ? x : 0              alpha [1]
//   Shrink           x < -lambd ? x + bias : x > lambd ? x - bias : 0   lambd [0.5], bias [0]
#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

void run_relu(KernelContext& ctx) {
  map_unary<NumericTypes>(ctx, [](auto v) {
    using C = decltype(v);
    if constexpr (std::is_unsigned_v<C>) {
      return v;
    } else {
      return v < C{0} ? C{0} : v;
    }
  });
}

void run_leaky_relu(KernelContext& ctx) {
  const float alpha = ctx.node.attr_float("alpha", 0.01f);
  map_unary<FloatTypes>(ctx, [alpha](auto v) { return v < 0 ? static_cast<decltype(v)>(alpha) * v : v; });
}

void run_prelu(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  Tensor slope = ctx.input(1);
  if (ctx.opset < 7 && slope.rank() == 1 && x.rank() >= 2 && slope.dim(0) == x.dim(1) && slope.dim(0) != 1) {
    // Opset 6 and older: a [C] slope is per channel (axis 1) of an [N, C, ...] input.
    Shape per_channel(static_cast<size_t>(x.rank() - 1), 1);
    per_channel[0] = slope.dim(0);
    slope = slope.reshaped(per_channel);
  }
  if (x.dtype() != slope.dtype()) {
    ctx.fail(std::string("slope has type ") + dtype_name(slope.dtype()) + ", input has " + dtype_name(x.dtype()));
  }
  if (broadcast_shapes(ctx, x.shape(), slope.shape()) != x.shape()) {
    ctx.fail("slope shape " + shape_to_string(slope.shape()) + " does not broadcast to input shape " +
             shape_to_string(x.shape()));
  }
  dispatch<NumericTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    ctx.set_output(0, broadcast_binary<T, T, T>(ctx, x, slope, [](T xv, T sv) {
                     if constexpr (std::is_unsigned_v<C>) {
                       (void)sv;
                       return xv;  // never negative
                     } else {
                       const C v = to_compute(xv);
                       return v < C{0} ? from_compute<T>(static_cast<C>(to_compute(sv) * v)) : xv;
                     }
                   }));
  });
}

// Clip's bound from an optional one-element input of x's type.
template <typename C, typename T>
C clip_bound(const KernelContext& ctx, size_t index, const Tensor& x, C fallback) {
  if (!ctx.has_input(index)) return fallback;
  const Tensor& bound = ctx.input(index);
  if (bound.dtype() != x.dtype()) {
    ctx.fail(std::string(index == 1 ? "min" : "max") + " has type " + dtype_name(bound.dtype()) + ", input has " +
             dtype_name(x.dtype()));
  }
  if (bound.numel() != 1) {
    ctx.fail(std::string(index == 1 ? "min" : "max") + " must be a scalar, got shape " +
             shape_to_string(bound.shape()));
  }
  return to_compute(bound.data<T>()[0]);
}

void run_clip(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  dispatch<NumericTypes>(x.dtype(), ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using C = compute_t<T>;
    C lo = std::numeric_limits<C>::lowest();
    C hi = std::numeric_limits<C>::max();
    if (ctx.opset < 11) {
      lo = static_cast<C>(ctx.node.attr_float("min", std::numeric_limits<float>::lowest()));
      hi = static_cast<C>(ctx.node.attr_float("max", std::numeric_limits<float>::max()));
    } else {
      lo = clip_bound<C, T>(ctx, 1, x, lo);
      hi = clip_bound<C, T>(ctx, 2, x, hi);
    }
    Tensor out(x.dtype(), x.shape());
    const T* in = x.data<T>();
    T* o = out.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const C v = to_compute(in[i]);
      const C low = v < lo ? lo : v;  // a NaN passes through both
      o[i] = from_compute<T>(hi < low ? hi : low);
    }
    ctx.set_output(0, std::move(out));
  });
}

void run_sigmoid(KernelContext& ctx) {
  map_unary<FloatTypes>(ctx, [](auto v) {
    using C = decltype(v);
    if (v >= 0) return C{1} / (C{1} + std::exp(-v));
    const C e = std::exp(v);
    return e / (C{1} + e);
  });
}

void run_hard_sigmoid(KernelContext& ctx) {
  const float alpha = ctx.node.attr_float("alpha", 0.2f);
  const float beta = ctx.node.attr_float("beta", 0.5f);
  map_unary<FloatTypes>(ctx, [alpha, beta](auto v) {
    using C = decltype(v);
    return std::max(C{0}, std::min(C{1}, static_cast<C>(alpha) * v + static_cast<C>(beta)));
  });
}

void run_hard_swish(KernelContext& ctx) {
  map_unary<FloatTypes>(ctx, [](auto v) {
    using C = decltype(v);
    return v * std::max(C{0}, std::min(C{1}, v / C{6} + C(0.5)));
  });
}

void run_tanh(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return std::tanh(v); }); }

void run_gelu(KernelContext& ctx) {
  const std::string approximate = ctx.node.attr_string("approximate", "none");
  if (approximate == "none") {
    map_unary<FloatTypes>(ctx, [](auto v) {
      using C = decltype(v);
      return C(0.5) * v * (C{1} + std::erf(v * C(0.70710678118654752440)));
    });
  } else if (approximate == "tanh") {
    map_unary<FloatTypes>(ctx, [](auto v) {
      using C = decltype(v);
      return C(0.5) * v * (C{1} + std::tanh(C(0.79788456080286535588) * (v + C(0.044715) * v * v * v)));
    });
  } else {
    ctx.fail("attribute approximate must be \"none\" or \"tanh\", got \"" + approximate + "\"");
  }
}

void run_elu(KernelContext& ctx) {
  const float alpha = ctx.node.attr_float("alpha", 1.0f);
  map_unary<FloatTypes>(ctx, [alpha](auto v) {
    using C = decltype(v);
    return v < 0 ? static_cast<C>(alpha) * (std::exp(v) - C{1}) : v;
  });
}

void run_selu(KernelContext& ctx) {
  const float alpha = ctx.node.attr_float("alpha", 1.67326319217681884765625f);
  const float gamma = ctx.node.attr_float("gamma", 1.05070102214813232421875f);
  map_unary<FloatTypes>(ctx, [alpha, gamma](auto v) {
    using C = decltype(v);
    const C a = static_cast<C>(alpha), g = static_cast<C>(gamma);
    return v > 0 ? g * v : g * (a * std::exp(v) - a);
  });
}

void run_celu(KernelContext& ctx) {
  const float alpha = ctx.node.attr_float("alpha", 1.0f);
  if (alpha == 0.0f) ctx.fail("attribute alpha must not be 0");
  map_unary<FloatTypes>(ctx, [alpha](auto v) {
    using C = decltype(v);
    const C a = static_cast<C>(alpha);
    return std::max(C{0}, v) + std::min(C{0}, a * (std::exp(v / a) - C{1}));
  });
}

template <typename C>
C softplus(C v) {
  return v > 0 ? v + std::log1p(std::exp(-v)) : std::log1p(std::exp(v));
}

void run_softplus(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return softplus(v); }); }
void run_softsign(KernelContext& ctx) {
  map_unary<FloatTypes>(ctx, [](auto v) { return v / (decltype(v){1} + std::fabs(v)); });
}
void run_mish(KernelContext& ctx) { map_unary<FloatTypes>(ctx, [](auto v) { return v * std::tanh(softplus(v)); }); }

void run_thresholded_relu(KernelContext& ctx) {
  const float alpha = ctx.node.attr_float("alpha", 1.0f);
  map_unary<FloatTypes>(ctx, [alpha](auto v) { return v > static_cast<decltype(v)>(alpha) ? v : decltype(v){0}; });
}

void run_shrink(KernelContext& ctx) {
  const double bias = ctx.node.attr_float("bias", 0.0f);
  const double lambd = ctx.node.attr_float("lambd", 0.5f);
  map_unary<NumericTypes>(ctx, [bias, lambd](auto v) {
    const double d = static_cast<double>(v);
    return d < -lambd ? d + bias : (d > lambd ? d - bias : 0.0);
  });
}

constexpr OpDef kActivationOps[] = {
    {"Relu", "", run_relu},
    {"LeakyRelu", "", run_leaky_relu},
    {"PRelu", "", run_prelu},
    {"Clip", "", run_clip},
    {"Sigmoid", "", run_sigmoid},
    {"HardSigmoid", "", run_hard_sigmoid},
    {"HardSwish", "", run_hard_swish},
    {"Tanh", "", run_tanh},
    {"Gelu", "", run_gelu},
    {"Elu", "", run_elu},
    {"Selu", "", run_selu},
    {"Celu", "", run_celu},
    {"Softplus", "", run_softplus},
    {"Softsign", "", run_softsign},
    {"Mish", "", run_mish},
    {"ThresholdedRelu", "", run_thresholded_relu},
    {"Shrink", "", run_shrink},
};

}  // namespace

std::span<const OpDef> activation_ops() { return kActivationOps; }

}  // namespace kvant
