// Model statistics for `kvant inspect` and reports: parameter counts and
// multiply-accumulates (MACs) per layer.
//
// Parameters: the elements of floating-point initializers (float32, float16,
// bfloat16, float64), recursively through subgraphs. Integer initializers
// (shape constants, quantized weights) are listed per dtype but not counted
// as parameters.
//
// MACs, one multiply-accumulate = one multiply and one add, counted for the
// main graph's compute-heavy nodes from their tensor shapes:
//   Conv, ConvInteger, QLinearConv   numel(Y) * (InC/group) * kH * kW
//                                    = N*OutC*OutH*OutW*(InC/group)*kH*kW
//                                    (W is [OutC, InC/group, k...]: numel(Y) * prod(W.shape[1:]))
//   ConvTranspose                    numel(X) * (OutC/group) * kH * kW
//   Gemm                             M * N * K
//   MatMul, MatMulInteger,           batch * M * N * K (numpy broadcasting of the batch dims)
//   QLinearMatMul
//   com.microsoft MatMulNBits        numel(A) * N
//   Einsum (two operands, no "...")  product of the sizes of all distinct letters
//   LSTM, GRU, RNN                   seq * batch * (numel(W) + numel(R))
//                                    (W is [dirs, gates*hidden, input], R is [dirs, gates*hidden, hidden])
// Shapes come from initializers, graph inputs and outputs, and
// Graph::value_info (filled by shape inference at load time). A Conv whose
// output shape is missing has it computed from X, W and the attributes. A
// layer whose shapes are not all known is reported as unknown, with the
// reason; elementwise ops, pooling and normalisation are not counted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kvant {

struct ParamGroup {
  DType dtype = DType::kUndefined;
  int64_t tensors = 0;
  int64_t elements = 0;
  int64_t bytes = 0;
};

struct ParamStats {
  int64_t parameters = 0;            // elements of floating-point initializers
  int64_t parameter_bytes = 0;       // their bytes
  int64_t total_bytes = 0;           // bytes of all initializers
  std::vector<ParamGroup> by_dtype;  // every initializer dtype, most elements first
};

ParamStats count_parameters(const Graph& graph);

struct LayerMacs {
  const Node* node = nullptr;
  std::optional<int64_t> macs;  // nullopt: not all shapes are known
  std::string reason;           // why unknown (names the value whose shape is missing)
};

struct MacStats {
  std::vector<LayerMacs> layers;  // counted op types only, in graph order
  int64_t total = 0;              // sum over layers with known MACs
  int64_t unknown = 0;            // layers whose MACs are unknown
};

// True for the op types whose MACs are counted (see the table above).
bool counts_macs(const Node& node);

MacStats count_macs(const Graph& graph);

// The fully known shape of a value from initializers, graph inputs/outputs or
// value_info; nullopt when its rank or any dim is unknown or symbolic.
std::optional<Shape> known_shape(const Graph& graph, const std::string& value);

}  // namespace kvant
