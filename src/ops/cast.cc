// Cast (to = an ONNX TensorProto type code) and CastLike (the type of input 1),
// opsets 7..21, between bool, all 8..64-bit integers, float16, bfloat16,
// float32 and float64.
//
//   to bool           x != 0 (NaN is true)
//   bool to numeric   0 or 1
//   float to integer  truncate toward zero. Out-of-range values are undefined
//                     in C++; kvant does what ONNX Runtime's static_cast does on
//                     x86: 8..32-bit targets go through int32, wider ones
//                     through int64, then wrap to the target width; NaN and
//                     values outside the intermediate type give its minimum
//                     (so int32 NaN -> INT32_MIN, int8 NaN -> 0)
//   integer to integer  two's-complement wrap (C++20 conversion)
//   to float16/bfloat16 round to nearest even via float32
// Not supported (ctx.unsupported): string, float8 (the saturate attribute only
// concerns float8), int4/uint4.
#include <cmath>
#include <limits>
#include <type_traits>

#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

template <typename T>
inline constexpr bool kIsHalf = std::is_same_v<T, Float16> || std::is_same_v<T, BFloat16>;

// double -> integer To, truncating; see the file comment for out-of-range values.
template <typename To>
To float_to_int(double v) {
  if constexpr (std::is_same_v<To, uint64_t>) {
    if (v >= 9223372036854775808.0 && v < 18446744073709551616.0) return static_cast<uint64_t>(v);
  }
  if constexpr (sizeof(To) < 4 || std::is_same_v<To, int32_t>) {  // x86 converts these through int32
    constexpr double kLimit = 2147483648.0;                       // 2^31
    const int32_t wide = (std::isnan(v) || v >= kLimit || v <= -kLimit - 1.0) ? std::numeric_limits<int32_t>::min()
                                                                              : static_cast<int32_t>(v);
    return static_cast<To>(wide);
  } else {
    constexpr double kLimit = 9223372036854775808.0;  // 2^63
    const int64_t wide =
        (std::isnan(v) || v >= kLimit || v < -kLimit) ? std::numeric_limits<int64_t>::min() : static_cast<int64_t>(v);
    return static_cast<To>(wide);
  }
}

template <typename To, typename From>
To convert(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, bool>) {
    return to_compute(v) != 0;
  } else if constexpr (kIsHalf<To>) {
    return from_compute<To>(static_cast<float>(to_compute(v)));
  } else if constexpr (std::is_floating_point_v<To>) {
    return static_cast<To>(to_compute(v));
  } else if constexpr (std::is_floating_point_v<compute_t<From>>) {
    return float_to_int<To>(static_cast<double>(to_compute(v)));
  } else {
    return static_cast<To>(v);  // integer or bool to integer
  }
}

void cast_to(KernelContext& ctx, const Tensor& x, DType to) {
  if (to == x.dtype()) {
    ctx.set_output(0, x.clone());
    return;
  }
  Tensor out(to, x.shape());
  cast_elements(ctx, x.dtype(), to, x.raw(), out.raw(), x.numel());
  ctx.set_output(0, std::move(out));
}

// Checks the target code of Cast's `to` attribute.
DType target_type(const KernelContext& ctx, int64_t code) {
  if (code >= 17 && code <= 20) ctx.unsupported("Cast to float8 (type code " + std::to_string(code) + ")");
  if (code < 0 || code > std::numeric_limits<int32_t>::max() || !is_known_dtype(static_cast<int32_t>(code)) ||
      code == 0) {
    ctx.fail("attribute to = " + std::to_string(code) + " is not a known ONNX tensor type");
  }
  const auto to = static_cast<DType>(code);
  if (to == DType::kString || to == DType::kInt4 || to == DType::kUInt4) {
    ctx.unsupported(std::string("Cast to ") + dtype_name(to));
  }
  return to;
}

void run_cast(KernelContext& ctx) {
  if (!ctx.node.has_attr("to")) ctx.fail("attribute to is required");
  const DType to = target_type(ctx, ctx.node.attr_int("to", 0));
  cast_to(ctx, ctx.input(0), to);
}

void run_cast_like(KernelContext& ctx) { cast_to(ctx, ctx.input(0), ctx.input(1).dtype()); }

constexpr OpDef kCastOps[] = {
    {"Cast", "", run_cast},
    {"CastLike", "", run_cast_like},
};

}  // namespace

void cast_elements(const KernelContext& ctx, DType from, DType to, const void* src, void* dst, int64_t n) {
  dispatch<AllTypes>(from, ctx, [&](auto from_tag) {
    using From = typename decltype(from_tag)::type;
    dispatch<AllTypes>(to, ctx, [&](auto to_tag) {
      using To = typename decltype(to_tag)::type;
      const From* in = static_cast<const From*>(src);
      To* o = static_cast<To*>(dst);
      for (int64_t i = 0; i < n; ++i) o[i] = convert<To>(in[i]);
    });
  });
}

std::span<const OpDef> cast_ops() { return kCastOps; }

}  // namespace kvant
