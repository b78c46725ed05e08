// Quantization parameters and the affine/symmetric schemes that produce them.
//
//   x_q = saturate(round_half_even(x / scale) + zero_point)
//   x   ~ (x_q - zero_point) * scale
//
// scale: one float per tensor, per channel (axis >= 0) or per block
// (block_size > 0, blocks along `axis`), as ONNX QuantizeLinear takes it
// (DESIGN.md §2). Every scheme here makes 0.0 exactly representable: the zero
// point is an integer in the storage range, so zero padding and ReLU outputs
// quantize without error.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "ir/dtype.h"

namespace kvant {

struct QuantParams {
  DType storage = DType::kInt8;     // int8, uint8, int4, uint4 (int16/uint16 too)
  int axis = -1;                    // -1: per tensor, else the channel axis
  int block_size = 0;               // 0: none; 32, 64 or 128 for blocked int4
  std::vector<float> scale;         // per tensor, channel or block
  std::vector<int32_t> zero_point;  // same length as scale
};

struct QuantRange {
  int32_t qmin = 0;
  int32_t qmax = 0;
};

// Integer range of a storage type; reduce_range drops one bit (7-bit int8 /
// uint8 for CPUs without VNNI, whose vpmaddubsw pairs can saturate int16).
QuantRange quant_range(DType storage, bool reduce_range = false);

enum class Symmetry {
  kSymmetric,  // zero point 0 (int) or the midpoint (uint), range [-a, a], a = max(|min|, |max|)
  kAffine,     // range [min, max] widened to include 0
};

// The smallest scale kvant writes: 2^-126 ~ 1.18e-38, the smallest normal
// float. A range so narrow that its scale would be smaller (data near 1e-38,
// or 1e-44 where the scale rounds to 0) gets this scale instead: a zero scale
// divides by zero in every consumer, and subnormal ones lose precision and
// are flushed to zero by many kernels (FTZ/DAZ). ONNX Runtime's quantizer
// likewise refuses scales below numpy.finfo(float32).tiny, the same number
// (it substitutes 1.0). Values in such a range quantize to the zero point or
// next to it, which is what they are worth at float32 precision.
inline constexpr float kMinScale = std::numeric_limits<float>::min();

// Scale and zero point for one real range. A degenerate range (min == max ==
// 0) gives scale 1 so that nothing divides by zero; a scale below kMinScale is
// raised to kMinScale (the return value is then true, for the caller's
// warning). min > max or a non-finite bound throws Error(kInvalidArgument).
bool choose_qparams(float min, float max, DType storage, Symmetry symmetry, bool reduce_range, float* scale,
                    int32_t* zero_point);

// round-half-to-even(x / scale) + zero_point, saturated to [qmin, qmax]; NaN
// (only quantized with --allow-nonfinite) gives the zero point.
int32_t quantize_value(float x, float scale, int32_t zero_point, QuantRange range);

}  // namespace kvant
