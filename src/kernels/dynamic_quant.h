// The float ends of the integer GEMM steps: per-tensor dynamic quantization
// of float activations (ONNX DynamicQuantizeLinear, bit for bit) and the
// dequantizing epilogue of int32 accumulators. Small kernel tables
// (kernel_table.h), picked once per step; the reference entries define the
// results:
//
//   range:     lo = min(0, min x), hi = max(0, max x); NaN reported
//   quantize:  q = clamp(nearbyint(x / scale) + zp, 0, 255)        (x / scale in float)
//   dequant:   y = clamp(float(acc + ibias[j]) * mult[j] + fbias[j], lo, hi)
//              (ibias / fbias omitted when null; multiply, then add: no FMA)
//   dequant_t: the same with each row stored as a column, out[j * out_stride + r]
//              (an NHWC block of accumulators into NCHW planes); with `range`
//              non-null it also widens range = {lo, hi, nan} by the values it
//              stores (lo = min, hi = max; nan set to 1 when one is NaN)
//   quantize_centered: out = float(q - zp) for q as quantize computes it (the
//              codes as small exact integers, for float kernels that must
//              sum them exactly)
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"

namespace kvant {

struct DequantRowsArgs {
  const int32_t* acc;
  int64_t acc_stride;
  int rows, n;
  const int32_t* ibias;  // n values or null
  const float* mult;     // n values
  const float* fbias;    // n values or null
  float lo, hi;          // clamp (+-inf: none)
  float* out;
  int64_t out_stride;
};

struct FloatQuantKernel {
  Isa isa;
  const char* name;
  // False when x holds a NaN (lo/hi then undefined).
  bool (*range)(const float* x, int64_t n, float* lo, float* hi);
  void (*quantize)(const float* x, int64_t n, float scale, int32_t zp, uint8_t* q);
  void (*dequant)(const DequantRowsArgs& args);
  void (*dequant_t)(const DequantRowsArgs& args, float* range);
  void (*quantize_centered)(const float* x, int64_t n, float scale, int32_t zp, float* out);
};

std::span<const FloatQuantKernel> float_quant_kernels();
const FloatQuantKernel& pick_float_quant(Isa allowed);

bool range_f32_avx2(const float* x, int64_t n, float* lo, float* hi);
void quantize_u8_avx2(const float* x, int64_t n, float scale, int32_t zp, uint8_t* q);
void dequant_rows_avx2(const DequantRowsArgs& args);
void dequant_t_avx2(const DequantRowsArgs& args, float* range);
void quantize_centered_avx2(const float* x, int64_t n, float scale, int32_t zp, float* out);
bool range_f32_avx512(const float* x, int64_t n, float* lo, float* hi);
void quantize_u8_avx512(const float* x, int64_t n, float scale, int32_t zp, uint8_t* q);
void dequant_rows_avx512(const DequantRowsArgs& args);

}  // namespace kvant
