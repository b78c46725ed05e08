// The check every model passes before kvant writes it (save_onnx): what a
// rewrite of kvant's could get wrong, against the opsets the model declares.
// A model that fails is an error naming the node; no file is written.
//
//   1. Every node against its ONNX operator schema at the model's opset
//      (input/output counts, attributes known and of the right type), where
//      the linked ONNX library knows that opset (libonnx 1.12: up to 17).
//   2. QuantizeLinear / DequantizeLinear, at any opset:
//        opset < 10   the operators do not exist;
//        opset < 13   per tensor only: no `axis`, a scale of one element;
//        opset < 21   no `block_size`, no int4/uint4/int16/uint16 data;
//        scale        rank 0 or 1 (per tensor, per axis: one per channel),
//                     or the input's rank with `block_size` (blocked);
//        zero point   the scale's shape, and the quantized type.
//   3. Every constant scale (Q/DQ, QLinear*, MatMulNBits)
//      is finite and at least the smallest normal float (quant_params.h's
//      kMinScale): zero divides by zero in every consumer, subnormal scales
//      are flushed to zero by many kernels.
//   4. Every domain a node uses is imported (com.microsoft for MatMulNBits).
#pragma once

#include <onnx/onnx_pb.h>

#include "ir/graph.h"

namespace kvant {

// Throws Error(kInvalidArgument) naming the first node that breaks a rule.
// `proto` is `model` as it will be written (for the schema check).
void check_for_export(const Model& model, const onnx::ModelProto& proto);

}  // namespace kvant
