// One validation of a model's static facts, run first by both executors
// (ReferenceExecutor's and CompiledModel's constructors), so that the compiled
// runtime never accepts what the reference rejects, and both give the same
// message (issue 15, defect 10). Checked for every node, in every subgraph,
// against constant inputs (initializers in scope) and attributes:
//
//   Conv, ConvTranspose, ConvInteger, QLinearConv
//       W has rank >= 3; kernel_shape, if given, equals W's spatial dims;
//   Conv-like ops and pools (MaxPool, AveragePool, LpPool)
//       kernel_shape, strides, dilations >= 1 and pads >= 0, each at most
//       kMaxWindowValue (2^31 - 1: a stride of 2^62 is no model's);
//   LSTM, GRU, RNN
//       hidden_size, if given, is positive and matches W [dirs, gates *
//       hidden, input] and R [dirs, gates * hidden, hidden];
//   QuantizeLinear, DequantizeLinear, QLinear*
//       constant scales finite, positive, at least the smallest normal
//       float (zero divides by zero; see onnx/export_check.h);
//       scale of rank 0 or 1 (rank > 1 only with block_size, then the
//       input's rank); zero point of the scale's shape; a per-axis scale's
//       length is the input's dim along `axis`.
// Values known only at run time are checked by the kernels, as before.
#pragma once

#include "ir/graph.h"

namespace kvant {

inline constexpr int64_t kMaxWindowValue = (int64_t{1} << 31) - 1;

// Throws Error(kInvalidArgument) naming the node and what is wrong.
void validate_model(const Model& model);

}  // namespace kvant
