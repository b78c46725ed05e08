// Editing a graph into QDQ form (DESIGN.md §2): quantization is expressed only
// as QuantizeLinear/DequantizeLinear pairs on edges and DequantizeLinear nodes
// in front of integer weights. Names are kept stable so that a quantized
// model's tensors can be compared one by one with the FP32 model's:
//
//   activation t produced by a node:   node -> "t/float" -> Q -> "t/q" -> DQ -> "t"
//   graph input x:                     x -> Q -> "x/q" -> DQ -> "x/dq" (readers re-pointed)
//   weight W (float initializer):      "W/q" (int8) -> DQ(axis) -> "W"
//
// so every reader of t or W, including graph outputs, now sees the value the
// integer model computes, under the FP32 name.
#pragma once

#include <string>

#include "ir/graph.h"
#include "quant/quant_params.h"

namespace kvant {

// Throws Error naming initializer `name` when a float weight holds NaN or
// Inf, unless `allow_nonfinite` (then NaN quantizes to the zero point and
// +-Inf to the ends of the range of the finite values).
void check_finite_weight(const Tensor& weights, const std::string& name, bool allow_nonfinite);

// Quantizes values of `weights` with `params` (per tensor, per axis or
// blocked), packing int4/uint4 two per byte. Throws Error on a length
// mismatch between params and the tensor.
Tensor quantize_tensor(const Tensor& weights, const QuantParams& params);

// Per-channel (axis >= 0) or per-tensor (axis -1) symmetric/affine params
// for a float weight tensor; reduce_range: one bit less (7-bit int8 weights,
// so that u8 x s7 pair sums fit int16 on CPUs without VNNI). 4-bit storage
// (static W4A8) clips each channel's range to its least squared error
// (quant/mse_clip.h); 8-bit ranges are the channel's min/max.
QuantParams weight_params(const Tensor& weights, int axis, DType storage, Symmetry symmetry, bool reduce_range = false);

// Blocked params along `axis` with `block_size` (opset-21 blocked form);
// mse_clip: each block's range clipped to its least-squared-error ratio
// (quant/mse_clip.h), else its min/max.
QuantParams blocked_weight_params(const Tensor& weights, int axis, int block_size, DType storage, Symmetry symmetry,
                                  bool mse_clip = false);

// One warning per quantized tensor whose scale was raised to kMinScale (its
// range was too narrow for a normal float scale), naming the tensor: scales
// of QuantizeLinear/DequantizeLinear and MatMulNBits equal to kMinScale.
std::vector<std::string> minimum_scale_warnings(const Graph& graph);

// Inserts Q -> DQ on activation `tensor` (see the header comment). Returns the
// name readers should use. No-op (returning the right name) when the tensor
// already has QDQ. The scale and zero point are the initializers
// "<params_base>/scale" and "/zero_point" (params_base defaults to the
// tensor), shared with any tensor that passed the same base before.
std::string insert_activation_qdq(Graph& graph, const std::string& tensor, const QuantParams& params,
                                  const std::string& params_base = "");

// Replaces float initializer `name` by its quantized form + a
// DequantizeLinear producing `name`. An all-zero zero point of a signed type
// is left out unless `explicit_zero_point` (static files write it: ONNX
// Runtime fuses DQ -> Gemm into QGemm only when the weight's DQ has one).
void insert_weight_dq(Graph& graph, const std::string& name, const QuantParams& params,
                      bool explicit_zero_point = false);

// Quantizes a bias initializer to int32 with scale input_scale * weight_scale[c]
// and zero point 0, as ONNX Runtime and TFLite do: per output channel (axis 0)
// when there are several weight scales, else one scalar scale (valid at every
// opset; per-axis DequantizeLinear needs opset 13). Returns false, leaving the
// bias in FP32, when a product scale is below kMinScale (it would be a zero or
// subnormal scale, and the bias would not fit int32 at it).
bool insert_bias_dq(Graph& graph, const std::string& name, float input_scale, const std::vector<float>& weight_scale);

}  // namespace kvant
