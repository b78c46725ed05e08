// Helpers shared by the quantization reference kernels (quant.cc, qlinear.cc):
// integer ranges of the quantized storage types, round-half-to-even with
// saturation, and element access that works for the packed 4-bit types.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ir/tensor.h"
#include "ops/op_registry.h"

namespace kvant {

struct QuantRange {
  int64_t lo = 0;
  int64_t hi = 0;
};

// The representable range of an integer storage type; fails for other types.
inline QuantRange quant_range(const KernelContext& ctx, DType dtype) {
  switch (dtype) {
    case DType::kUInt8: return {0, 255};
    case DType::kInt8: return {-128, 127};
    case DType::kUInt16: return {0, 65535};
    case DType::kInt16: return {-32768, 32767};
    case DType::kUInt4: return {0, 15};
    case DType::kInt4: return {-8, 7};
    case DType::kInt32: return {INT32_MIN, INT32_MAX};
    default: break;
  }
  ctx.unsupported(std::string("quantized type ") + dtype_name(dtype) + " is not supported");
}

// round half to even (the default FP rounding mode), then clamp to [lo, hi].
// NaN maps to 0 (as ONNX Runtime does); infinities saturate.
inline int64_t round_saturate(double v, QuantRange range) {
  if (std::isnan(v)) return 0;
  const double r = std::nearbyint(v);
  if (r <= static_cast<double>(range.lo)) return range.lo;
  if (r >= static_cast<double>(range.hi)) return range.hi;
  return static_cast<int64_t>(r);
}

// Writes integer v (already in range) as element i of an integer tensor.
inline void store_int(Tensor& t, int64_t i, int64_t v) {
  void* p = t.raw();
  switch (t.dtype()) {
    case DType::kUInt8: static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v); return;
    case DType::kInt8: static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v); return;
    case DType::kUInt16: static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(v); return;
    case DType::kInt16: static_cast<int16_t*>(p)[i] = static_cast<int16_t>(v); return;
    case DType::kInt32: static_cast<int32_t*>(p)[i] = static_cast<int32_t>(v); return;
    case DType::kInt64: static_cast<int64_t*>(p)[i] = v; return;
    case DType::kUInt4:
    case DType::kInt4: {
      auto* bytes = static_cast<uint8_t*>(p);
      const auto nibble = static_cast<uint8_t>(v & 0x0F);
      uint8_t& b = bytes[i / 2];
      b = (i % 2 == 0) ? static_cast<uint8_t>((b & 0xF0) | nibble) : static_cast<uint8_t>((b & 0x0F) | (nibble << 4));
      return;
    }
    default: throw Error(ErrorCode::kInternal, std::string("store_int: not an integer type ") + dtype_name(t.dtype()));
  }
}

// All elements as int32 (integer tensors of at most 32 bits, incl. 4-bit).
inline std::vector<int32_t> read_int32(const Tensor& t) {
  std::vector<int32_t> v(static_cast<size_t>(t.numel()));
  switch (t.dtype()) {
    case DType::kUInt8: std::copy_n(t.data<uint8_t>(), t.numel(), v.begin()); break;
    case DType::kInt8: std::copy_n(t.data<int8_t>(), t.numel(), v.begin()); break;
    case DType::kInt32: std::copy_n(t.data<int32_t>(), t.numel(), v.begin()); break;
    default:
      for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>(t.get_as_int64(i));
  }
  return v;
}

// All elements as float (float32 fast path; other types via get_as_double).
inline std::vector<float> read_float(const Tensor& t) {
  if (t.dtype() == DType::kFloat32) {
    std::vector<float> v(static_cast<size_t>(t.numel()));
    if (t.numel()) std::memcpy(v.data(), t.raw(), v.size() * sizeof(float));
    return v;
  }
  return t.to_float_vector();
}

}  // namespace kvant
