// Weight-only quantization (round to nearest): MatMul/Gemm weights stored as
// int4 (or int8) with one scale per group of `group_size` values along K, the
// reduction axis; activations stay FP32. LLM-style models are bound by weight
// bandwidth at batch 1, so 4-bit weights are where their speed comes from.
//
// LSTM/GRU/RNN weights likewise, along their input axis. Conv weights [M, C/g, kh, kw] are quantized too (a CNN's
// weights are all in its convolutions): blocked along C/g when C/g >= group_size, else one scale per output channel
// (depthwise and narrow convolutions, where a group would hold a single input channel).
//
// Exported as opset-21 blocked DequantizeLinear (the model is upgraded to
// opset 21, onnx/opset_upgrade.h): W_q int4 [K, N] -> DQ(axis 0, block_size) -> W.
// Symmetric: int4 in [-8, 7], zero point 0, scale = max|w| / 7 per group.
// Affine: uint4 in [0, 15] with a zero point per group. At 4 bits each
// group's range is first clipped to the ratio that minimizes its squared
// error (round to nearest with MSE-optimal clipping, quant/mse_clip.h;
// QuantizeOptions::weight_clip_search, on by default).
//
// With WeightRounding::kGptq, MatMul/Gemm weights whose input is a float
// tensor (Gemm with transA = 0) are rounded by GPTQ instead (gptq.cc), from
// the second moments of those inputs on the calibration data; the file
// format is the same. A weight shared by several layers, and Conv/RNN
// weights, keep round to nearest.
#include <algorithm>

#include "kvant/status.h"
#include "onnx/opset_upgrade.h"
#include "quant/gptq.h"
#include "quant/qdq.h"
#include "quant/quantize.h"

namespace kvant {

Model quantize_weight_only(const Model& model, int bits, const QuantizeOptions& options, QuantizeSummary* summary,
                           SampleSource* calibration) {
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
  const std::set<std::string> excluded =
      resolve_excluded_nodes(g, options.exclude, {"MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN"});
  const bool gptq = options.rounding == WeightRounding::kGptq;
  if (gptq && calibration == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "GPTQ needs calibration data (--calib DATA)");
  }
  struct Target {
    std::string name;
    int axis;  // blocked axis, or the per-channel axis
    bool blocked;
    std::string input = {};  // GPTQ: the layer's float input
  };
  std::vector<Target> weights;
  for (const Node& n : g.nodes) {
    const bool linear = n.op_type == "MatMul" || n.op_type == "Gemm";
    const bool rnn = n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN";
    if (!linear && !rnn && n.op_type != "Conv") continue;
    if (rnn && !excluded.count(n.name)) {
      // W [dirs, gates*H, I] and R [dirs, gates*H, H]: groups along the
      // reduction axis 2, or one scale per gate row when it is short.
      bool any = false;
      for (size_t k : {1, 2}) {
        if (k >= n.inputs.size() || !g.initializers.count(n.inputs[k])) continue;
        const Tensor& w = g.initializers.at(n.inputs[k]);
        if (w.dtype() != DType::kFloat32 || w.rank() != 3) continue;
        const bool blocked = w.dim(2) >= options.group_size;
        weights.push_back({n.inputs[k], blocked ? 2 : 1, blocked});
        any = true;
      }
      if (any && summary && !n.outputs.empty() && !n.outputs[0].empty())
        summary->layer_outputs.emplace_back(n.name, n.outputs[0]);
      continue;
    }
    if (excluded.count(n.name)) {
      if (summary) summary->kept_fp32.push_back(n.name);
      continue;
    }
    if (n.inputs.size() < 2) continue;
    auto it = g.initializers.find(n.inputs[1]);
    if (it == g.initializers.end() || it->second.dtype() != DType::kFloat32) continue;
    const Tensor& w = it->second;
    if (linear && w.rank() == 2) {
      const bool plain_a = n.op_type == "MatMul" || n.attr_int("transA", 0) == 0;
      weights.push_back({n.inputs[1], (n.op_type == "Gemm" && n.attr_int("transB", 0)) ? 1 : 0, true,
                         gptq && plain_a ? n.inputs[0] : std::string()});
    } else if (n.op_type == "Conv" && w.rank() >= 3) {
      const bool blocked = w.dim(1) >= options.group_size;
      weights.push_back({n.inputs[1], blocked ? 1 : 0, blocked});
    } else {
      continue;
    }
    if (summary) summary->layer_outputs.emplace_back(n.name, n.outputs[0]);
  }
  // GPTQ: one moment per distinct layer input; a weight read by two layers
  // keeps round to nearest.
  std::map<std::string, int> weight_uses;
  for (const auto& t : weights) ++weight_uses[t.name];
  std::set<std::string> gptq_inputs;
  for (auto& t : weights) {
    if (weight_uses[t.name] > 1) t.input.clear();
    if (!t.input.empty()) gptq_inputs.insert(t.input);
  }
  std::map<std::string, InputMoment> moments;
  if (!gptq_inputs.empty()) moments = collect_input_moments(model, *calibration, gptq_inputs, options);
  if (summary && gptq)
    summary->notes.push_back("GPTQ rounding for " + std::to_string(gptq_inputs.size()) + " layer inputs' weights");
  int64_t done = 0;
  const Symmetry symmetry = symmetric ? Symmetry::kSymmetric : Symmetry::kAffine;
  for (const auto& t : weights) {
    if (!g.initializers.count(t.name)) continue;  // shared weight, already quantized
    const Tensor& w = g.initializers.at(t.name);
    check_finite_weight(w, t.name, options.allow_nonfinite);
    // A per-channel group of fewer than 16 values (a depthwise 3x3 filter has
    // 9) stays 8-bit: at 4 bits its one scale would cost as much as the
    // halved values save, and such filters are the most sensitive ones.
    const int64_t per_scale = t.blocked ? options.group_size : w.numel() / std::max<int64_t>(1, w.dim(t.axis));
    const DType s = (bits == 4 && per_scale < 16) ? (symmetric ? DType::kInt8 : DType::kUInt8) : storage;
    const bool clip = options.weight_clip_search && (s == DType::kInt4 || s == DType::kUInt4);
    if (!t.input.empty()) {
      Tensor rounded = w.clone();
      const QuantParams p =
          gptq_quantize(rounded, t.axis, moments.at(t.input), options.group_size, s, symmetry, clip, options.gptq_damp);
      g.initializers[t.name] = std::move(rounded);
      insert_weight_dq(g, t.name, p);
      ++done;
      continue;
    }
    const QuantParams p = t.blocked ? blocked_weight_params(w, t.axis, options.group_size, s, symmetry, clip)
                                    : weight_params(w, t.axis, s, symmetry);
    insert_weight_dq(g, t.name, p);
    ++done;
  }
  if (done == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "nothing to quantize: no MatMul/Gemm/Conv/LSTM/GRU/RNN with a constant FP32 weight");
  }
  if (summary) {
    summary->quantized_nodes = done;
    for (auto& w : minimum_scale_warnings(g)) summary->warnings.push_back(std::move(w));
  }
  return out;
}

}  // namespace kvant
