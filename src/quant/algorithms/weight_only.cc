// Weight-only quantization (round to nearest): MatMul/Gemm weights stored as
// int4 (or int8) with one scale per group of `group_size` values along K, the
// reduction axis; activations stay FP32. LLM-style models are bound by weight
// bandwidth at batch 1, so 4-bit weights are where their speed comes from.
//
// Exported as opset-21 blocked DequantizeLinear (the model is upgraded to
// opset 21, onnx/opset_upgrade.h): W_q int4 [K, N] -> DQ(axis 0, block_size) -> W.
// Symmetric: int4 in [-8, 7], zero point 0, scale = max|w| / 7 per group.
// Affine: uint4 in [0, 15] with a zero point per group.
#include <algorithm>

#include "kvant/status.h"
#include "onnx/opset_upgrade.h"
#include "quant/qdq.h"
#include "quant/quantize.h"

namespace kvant {

Model quantize_weight_only(const Model& model, int bits, const QuantizeOptions& options, QuantizeSummary* summary) {
  if (is_quantized_model(model)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the model is already quantized (it has QuantizeLinear/DequantizeLinear or integer operators); "
                "quantize its FP32 original instead");
  }
  if (bits != 4 && bits != 8)
    throw Error(ErrorCode::kInvalidArgument, "--bits must be 4 or 8, got " + std::to_string(bits));
  if (options.group_size < 16 || (options.group_size & (options.group_size - 1)) != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "--group-size must be a power of two >= 16 (32, 64, 128), got " + std::to_string(options.group_size));
  }
  Model out = model;
  upgrade_opset(out, 21);
  Graph& g = out.graph;
  const bool symmetric = options.weight_symmetry == Symmetry::kSymmetric;
  const DType storage =
      bits == 4 ? (symmetric ? DType::kInt4 : DType::kUInt4) : (symmetric ? DType::kInt8 : DType::kUInt8);
  std::vector<std::pair<std::string, int>> weights;  // name, K axis
  for (const Node& n : g.nodes) {
    const bool excluded = std::find(options.exclude.begin(), options.exclude.end(), n.name) != options.exclude.end() ||
                          std::find(options.exclude.begin(), options.exclude.end(), n.op_type) != options.exclude.end();
    if (excluded || (n.op_type != "MatMul" && n.op_type != "Gemm") || n.inputs.size() < 2) continue;
    auto it = g.initializers.find(n.inputs[1]);
    if (it == g.initializers.end() || it->second.dtype() != DType::kFloat32 || it->second.rank() != 2) continue;
    const int k_axis = (n.op_type == "Gemm" && n.attr_int("transB", 0)) ? 1 : 0;
    weights.emplace_back(n.inputs[1], k_axis);
    if (summary) summary->layer_outputs.emplace_back(n.name, n.outputs[0]);
  }
  int64_t done = 0;
  for (const auto& [name, axis] : weights) {
    if (!g.initializers.count(name)) continue;  // shared weight, already quantized
    const Tensor& w = g.initializers.at(name);
    const QuantParams p = blocked_weight_params(w, axis, options.group_size, storage,
                                                symmetric ? Symmetry::kSymmetric : Symmetry::kAffine);
    insert_weight_dq(g, name, p);
    ++done;
  }
  if (done == 0) {
    throw Error(ErrorCode::kInvalidArgument, "nothing to quantize: no MatMul/Gemm with a constant 2-D FP32 weight");
  }
  if (summary) summary->quantized_nodes = done;
  return out;
}

}  // namespace kvant
