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

// Quantizes values of `weights` with `params` (per tensor, per axis or
// blocked), packing int4/uint4 two per byte. Throws Error on a length
// mismatch between params and the tensor.
Tensor quantize_tensor(const Tensor& weights, const QuantParams& params);

// Per-channel (axis >= 0) or per-tensor (axis -1) symmetric/affine params
// for a float weight tensor; reduce_range: one bit less (7-bit int8 weights,
// so that u8 x s7 pair sums fit int16 on CPUs without VNNI).
QuantParams weight_params(const Tensor& weights, int axis, DType storage, Symmetry symmetry, bool reduce_range = false);

// Blocked params along `axis` with `block_size` (opset-21 blocked form).
QuantParams blocked_weight_params(const Tensor& weights, int axis, int block_size, DType storage, Symmetry symmetry);

// Inserts Q -> DQ on activation `tensor` (see the header comment). Returns the
// name readers should use. No-op (returning the right name) when the tensor
// already has QDQ. The scale and zero point are the initializers
// "<params_base>/scale" and "/zero_point" (params_base defaults to the
// tensor), shared with any tensor that passed the same base before.
std::string insert_activation_qdq(Graph& graph, const std::string& tensor, const QuantParams& params,
                                  const std::string& params_base = "");

// Replaces float initializer `name` by its quantized form + a
// DequantizeLinear producing `name`.
void insert_weight_dq(Graph& graph, const std::string& name, const QuantParams& params);

// Quantizes a bias initializer to int32 with scale input_scale * weight_scale[c]
// and zero point 0 (per output channel), as ONNX Runtime and TFLite do.
void insert_bias_dq(Graph& graph, const std::string& name, float input_scale, const std::vector<float>& weight_scale);

}  // namespace kvant
