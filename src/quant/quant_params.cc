#include "quant/quant_params.h"

#include <algorithm>
#include <cmath>

#include "kvant/status.h"

namespace kvant {

QuantRange quant_range(DType storage, bool reduce_range) {
  QuantRange r;
  switch (storage) {
    case DType::kInt8: r = {-128, 127}; break;
    case DType::kUInt8: r = {0, 255}; break;
    case DType::kInt4: r = {-8, 7}; break;
    case DType::kUInt4: r = {0, 15}; break;
    case DType::kInt16: r = {-32768, 32767}; break;
    case DType::kUInt16: r = {0, 65535}; break;
    default: throw Error(ErrorCode::kUnsupported, std::string("cannot quantize to ") + dtype_name(storage));
  }
  if (reduce_range) {
    // One bit less: int8 -> [-64, 63], uint8 -> [0, 127].
    r.qmin = r.qmin / 2;
    r.qmax = r.qmax / 2;
  }
  return r;
}

bool choose_qparams(float min, float max, DType storage, Symmetry symmetry, bool reduce_range, float* scale,
                    int32_t* zero_point) {
  if (!std::isfinite(min) || !std::isfinite(max)) {
    throw Error(ErrorCode::kInvalidArgument, "cannot quantize a range with a non-finite bound [" + std::to_string(min) +
                                                 ", " + std::to_string(max) + "]");
  }
  if (min > max) {
    throw Error(ErrorCode::kInvalidArgument,
                "range minimum " + std::to_string(min) + " exceeds maximum " + std::to_string(max));
  }
  const QuantRange r = quant_range(storage, reduce_range);
  min = std::min(min, 0.0f);
  max = std::max(max, 0.0f);
  if (symmetry == Symmetry::kSymmetric) {
    const float a = std::max(-min, max);
    if (a == 0.0f) {
      *scale = 1.0f;
      *zero_point = r.qmin < 0 ? 0 : (r.qmin + r.qmax + 1) / 2;
      return false;
    }
    if (r.qmin < 0) {
      // Signed: [-a, a] onto [-qmax, qmax] (the most negative code unused, as
      // in ONNX Runtime and TFLite, so negation is exact).
      *scale = a / static_cast<float>(r.qmax);
      *zero_point = 0;
    } else {
      // Unsigned: zero at the midpoint, e.g. 128 for uint8.
      *scale = 2.0f * a / static_cast<float>(r.qmax - r.qmin);
      *zero_point = (r.qmin + r.qmax + 1) / 2;
    }
    if (*scale >= kMinScale) return false;
    *scale = kMinScale;
    return true;
  }
  if (max == min) {  // both zero after widening
    *scale = 1.0f;
    *zero_point = r.qmin < 0 ? 0 : r.qmin;
    return false;
  }
  *scale = (max - min) / static_cast<float>(r.qmax - r.qmin);
  const bool raised = !(*scale >= kMinScale);
  if (raised) *scale = kMinScale;
  // The zero point is the integer nearest to qmin - min / scale, clamped; 0.0
  // is then exactly representable.
  const double zp = static_cast<double>(r.qmin) - static_cast<double>(min) / static_cast<double>(*scale);
  *zero_point =
      static_cast<int32_t>(std::clamp(std::nearbyint(zp), static_cast<double>(r.qmin), static_cast<double>(r.qmax)));
  return raised;
}

int32_t quantize_value(float x, float scale, int32_t zero_point, QuantRange range) {
  if (std::isnan(x)) return std::clamp(zero_point, range.qmin, range.qmax);
  const double q = std::nearbyint(static_cast<double>(x) / static_cast<double>(scale)) + zero_point;
  return static_cast<int32_t>(std::clamp(q, static_cast<double>(range.qmin), static_cast<double>(range.qmax)));
}

}  // namespace kvant
