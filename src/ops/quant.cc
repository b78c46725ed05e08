// Quantize / dequantize reference kernels: QuantizeLinear, DequantizeLinear,
// DynamicQuantizeLinear (ONNX opsets 10..21). These define the QDQ simulation
// that every integer kernel is checked against (DESIGN.md §2).
//
//   QuantizeLinear:   y = saturate(round_half_even(x / scale) + zero_point)
//   DequantizeLinear: y = (x - zero_point) * scale
//
// x / scale is computed in float (as ONNX Runtime does), rounded half to
// even, then the integer zero point is added and the result clamped to the
// storage type's range (uint8 0..255, int8 -128..127, uint16, int16, and the
// opset-21 uint4 0..15 / int4 -8..7, packed two per byte, low nibble first).
//
// Where scale / zero_point come from, for x viewed as [outer, D, inner] with D
// the size of `axis` (default 1):
//   per tensor  scale has one element                         -> scale[0]
//   per axis    scale is 1-D of length D (opset 13+)          -> scale[d]
//   blocked     block_size B > 0 (opset 21): scale has x's rank, with
//               D replaced by ceil(D / B)                     -> scale[o, d / B, k]
// zero_point (optional, default 0) has scale's shape; its type is the
// quantized type. Without it, QuantizeLinear writes uint8, or the
// `output_dtype` attribute's type (opset 21).
//
// DynamicQuantizeLinear (uint8 only):
//   lo = min(0, min(x)), hi = max(0, max(x)), scale = (hi - lo) / 255,
//   zero_point = saturate(round(0 - lo / scale)), y = QuantizeLinear(x, scale, zero_point).
// An all-zero x gives scale 0, zero point 0 and y 0.
#include <algorithm>
#include <limits>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/quant_util.h"

namespace kvant {

namespace {

// Maps an element of x to the index of its scale / zero point.
struct ParamLayout {
  enum class Mode { kTensor, kAxis, kBlocked };
  Mode mode = Mode::kTensor;
  int64_t outer = 1;
  int64_t dim = 1;
  int64_t inner = 1;
  int64_t block = 0;
  int64_t num_blocks = 0;

  // Calls fn(element index, parameter index) for every element of x.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    int64_t i = 0;
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t d = 0; d < dim; ++d) {
        const int64_t base = mode == Mode::kTensor ? 0 : mode == Mode::kAxis ? d : (o * num_blocks + d / block) * inner;
        const int64_t step = mode == Mode::kBlocked ? 1 : 0;
        for (int64_t k = 0; k < inner; ++k, ++i) fn(i, base + k * step);
      }
    }
  }
};

// Works out how `scale` (and `zero_point`, if given) apply to `x`, checking
// their shapes against the node's axis / block_size attributes.
ParamLayout param_layout(const KernelContext& ctx, const Tensor& x, const Tensor& scale, const Tensor* zero_point) {
  ParamLayout layout;
  const int64_t block = ctx.opset >= 21 ? ctx.node.attr_int("block_size", 0) : 0;
  if (block < 0) ctx.fail("block_size must be >= 0, got " + std::to_string(block));
  // A one-element zero point may be [] or [1] whatever the scale's rank is.
  const bool both_single = zero_point != nullptr && zero_point->numel() == 1 && scale.numel() == 1;
  if (zero_point != nullptr && !both_single && zero_point->shape() != scale.shape()) {
    ctx.fail("zero point shape " + shape_to_string(zero_point->shape()) + " differs from scale shape " +
             shape_to_string(scale.shape()));
  }
  layout.outer = x.numel();
  if (block == 0 && scale.numel() == 1 && scale.rank() <= 1) return layout;  // per tensor
  if (block == 0 && scale.rank() != 1) {
    ctx.fail("scale must be a scalar or 1-D (per axis), got shape " + shape_to_string(scale.shape()));
  }
  if (block == 0 && ctx.opset < 13) ctx.fail("per-axis scale needs opset 13 or later");
  const int64_t axis = normalize_axis(ctx, ctx.node.attr_int("axis", 1), x.rank());
  layout.outer = 1;
  layout.inner = 1;
  for (int i = 0; i < x.rank(); ++i) {
    if (i < axis) layout.outer *= x.dim(i);
    if (i > axis) layout.inner *= x.dim(i);
  }
  layout.dim = x.dim(static_cast<int>(axis));
  if (block == 0) {
    if (scale.numel() != layout.dim) {
      ctx.fail("per-axis scale has " + std::to_string(scale.numel()) + " elements, axis " + std::to_string(axis) +
               " of " + x.describe() + " has " + std::to_string(layout.dim));
    }
    layout.mode = ParamLayout::Mode::kAxis;
    return layout;
  }
  layout.mode = ParamLayout::Mode::kBlocked;
  layout.block = block;
  layout.num_blocks = (layout.dim + block - 1) / block;
  Shape want = x.shape();
  want[static_cast<size_t>(axis)] = layout.num_blocks;
  if (scale.shape() != want) {
    ctx.fail("blocked scale (block_size " + std::to_string(block) + ", axis " + std::to_string(axis) + ") for " +
             x.describe() + " must have shape " + shape_to_string(want) + ", got " + shape_to_string(scale.shape()));
  }
  return layout;
}

bool is_quantized_type(DType t) {
  switch (t) {
    case DType::kUInt8:
    case DType::kInt8:
    case DType::kUInt16:
    case DType::kInt16:
    case DType::kUInt4:
    case DType::kInt4: return true;
    default: return false;
  }
}

void check_scale_type(const KernelContext& ctx, const Tensor& scale) {
  if (!is_float(scale.dtype())) ctx.fail("scale must be a float tensor, got " + scale.describe());
}

// A float tensor of `dtype` (float32/float64/float16/bfloat16) from values.
Tensor make_float_tensor(const KernelContext& ctx, DType dtype, const Shape& shape, const std::vector<float>& values) {
  Tensor out(dtype, shape);
  dispatch<FloatTypes>(dtype, ctx, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* y = out.data<T>();
    for (size_t i = 0; i < values.size(); ++i) y[i] = from_compute<T>(static_cast<compute_t<T>>(values[i]));
  });
  return out;
}

void quantize_linear(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* zero_point = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  check_scale_type(ctx, scale);
  if (!is_float(x.dtype()) && x.dtype() != DType::kInt32) {
    ctx.fail("x must be float or int32, got " + x.describe());
  }
  DType out_type = DType::kUInt8;
  if (zero_point != nullptr) {
    out_type = zero_point->dtype();
  } else if (ctx.opset >= 21 && ctx.node.attr_int("output_dtype", 0) != 0) {
    const int64_t code = ctx.node.attr_int("output_dtype", 0);
    if (!is_known_dtype(static_cast<int32_t>(code))) ctx.unsupported("output_dtype " + std::to_string(code));
    out_type = static_cast<DType>(code);
  }
  if (!is_quantized_type(out_type)) {
    ctx.unsupported(std::string("quantizing to ") + dtype_name(out_type) + " is not supported");
  }
  const ParamLayout layout = param_layout(ctx, x, scale, zero_point);
  const QuantRange range = quant_range(ctx, out_type);
  const std::vector<float> xs = read_float(x);
  const std::vector<float> scales = read_float(scale);
  const std::vector<int32_t> zps = zero_point ? read_int32(*zero_point) : std::vector<int32_t>(scales.size(), 0);
  Tensor y(out_type, x.shape());
  layout.for_each([&](int64_t i, int64_t p) {
    const float q = xs[static_cast<size_t>(i)] / scales[static_cast<size_t>(p)];
    const double shifted = std::isnan(q) ? 0.0 : std::nearbyint(static_cast<double>(q)) + zps[static_cast<size_t>(p)];
    store_int(y, i, round_saturate(shifted, range));
  });
  ctx.set_output(0, std::move(y));
}

void dequantize_linear(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  const Tensor& scale = ctx.input(1);
  const Tensor* zero_point = ctx.has_input(2) ? &ctx.input(2) : nullptr;
  check_scale_type(ctx, scale);
  if (!is_quantized_type(x.dtype()) && x.dtype() != DType::kInt32) {
    ctx.unsupported(std::string("dequantizing ") + dtype_name(x.dtype()) + " is not supported");
  }
  if (zero_point != nullptr && zero_point->dtype() != x.dtype()) {
    ctx.fail("zero point type " + std::string(dtype_name(zero_point->dtype())) + " differs from x type " +
             dtype_name(x.dtype()));
  }
  const ParamLayout layout = param_layout(ctx, x, scale, zero_point);
  const std::vector<int32_t> xs = read_int32(x);
  const std::vector<float> scales = read_float(scale);
  const std::vector<int32_t> zps = zero_point ? read_int32(*zero_point) : std::vector<int32_t>(scales.size(), 0);
  std::vector<float> ys(xs.size());
  layout.for_each([&](int64_t i, int64_t p) {
    const int64_t diff = int64_t{xs[static_cast<size_t>(i)]} - zps[static_cast<size_t>(p)];
    ys[static_cast<size_t>(i)] = static_cast<float>(diff) * scales[static_cast<size_t>(p)];
  });
  ctx.set_output(0, make_float_tensor(ctx, scale.dtype(), x.shape(), ys));
}

void dynamic_quantize_linear(KernelContext& ctx) {
  const Tensor& x = ctx.input(0);
  if (x.dtype() != DType::kFloat32) ctx.unsupported("x of type " + std::string(dtype_name(x.dtype())));
  const float* xs = x.data<float>();
  float lo = 0.0f;
  float hi = 0.0f;
  for (int64_t i = 0; i < x.numel(); ++i) {
    if (std::isnan(xs[i])) ctx.fail("x contains NaN");
    lo = std::min(lo, xs[i]);
    hi = std::max(hi, xs[i]);
  }
  constexpr QuantRange kRange{0, 255};
  const float scale = (hi - lo) / 255.0f;
  int64_t zero_point = 0;
  Tensor y(DType::kUInt8, x.shape());
  if (scale > 0.0f && std::isfinite(scale)) {
    zero_point = round_saturate(static_cast<double>(0.0f - lo / scale), kRange);
    uint8_t* out = y.data<uint8_t>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double shifted = std::nearbyint(static_cast<double>(xs[i] / scale)) + static_cast<double>(zero_point);
      out[i] = static_cast<uint8_t>(round_saturate(shifted, kRange));
    }
  } else if (!std::isfinite(scale)) {
    ctx.fail("x contains infinite values");
  }
  ctx.set_output(0, std::move(y));
  ctx.set_output(1, Tensor::scalar<float>(scale));
  ctx.set_output(2, Tensor::scalar<uint8_t>(static_cast<uint8_t>(zero_point)));
}

constexpr OpDef kQuantOps[] = {
    {"QuantizeLinear", "", quantize_linear},
    {"DequantizeLinear", "", dequantize_linear},
    {"DynamicQuantizeLinear", "", dynamic_quantize_linear},
};

}  // namespace

std::span<const OpDef> quant_ops() { return kQuantOps; }

}  // namespace kvant
