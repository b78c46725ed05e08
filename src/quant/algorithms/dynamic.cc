// Dynamic quantization: INT8 weights, activations quantized on every call
// from their own min/max (as torch.quantization.quantize_dynamic does for
// nn.Linear and nn.LSTM). No calibration data.
//
// MatMul(x, W) with W [K, N] constant becomes the standard ONNX pattern that
// ONNX Runtime also runs:
//   x -> DynamicQuantizeLinear -> (x_q uint8, x_scale, x_zero_point)
//   MatMulInteger(x_q, W_q int8 [K, N], x_zero_point, W_zero_point [N]) -> int32
//   Cast(float) * (x_scale * W_scale[N])  (+ bias)  -> y
// Gemm(A, B, C) is the same with B transposed to [K, N] when transB = 1,
// alpha folded into W_scale and beta * C added at the end (transA = 1 stays
// FP32). --reduce-range gives 7-bit weights (activations are always 8-bit
// here), as ONNX Runtime's quantizer does for CPUs without VNNI. LSTM/GRU/RNN weights W and R become int8 per gate row
// (axis 1) in front of a DequantizeLinear; the recurrent kernels read them as INT8.
#include <set>

#include "kvant/status.h"
#include "passes/pass.h"
#include "quant/qdq.h"
#include "quant/quantize.h"

namespace kvant {

namespace {

Tensor transpose_2d(const Tensor& w) {
  const int64_t rows = w.dim(0), cols = w.dim(1);
  Tensor t(DType::kFloat32, {cols, rows});
  const float* src = w.data<float>();
  float* dst = t.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) dst[c * rows + r] = src[r * cols + c];
  }
  return t;
}

// Replaces node `index` (MatMul or Gemm with constant weights) by the dynamic
// pattern. Returns the number of nodes now at that position.
size_t rewrite_linear(Graph& g, size_t index, const QuantizeOptions& options) {
  const Node node = g.nodes[index];
  const std::string& x = node.inputs[0];
  Tensor w = g.initializers.at(node.inputs[1]);
  float alpha = 1.0f, beta = 1.0f;
  if (node.op_type == "Gemm") {
    if (node.attr_int("transB", 0)) w = transpose_2d(w);
    alpha = node.attr_float("alpha", 1.0f);
    beta = node.attr_float("beta", 1.0f);
  }
  const std::string base = node.name;
  const QuantParams wp =
      weight_params(w, options.per_channel ? 1 : -1, DType::kInt8, Symmetry::kSymmetric, options.reduce_range);
  g.initializers[base + "/W_q"] = quantize_tensor(w, wp);
  std::vector<float> out_scale = wp.scale;
  for (float& s : out_scale) s *= alpha;  // y = alpha * x W: alpha folds into the scale
  const int64_t n_out = w.dim(1);
  Tensor zp(DType::kInt8, {options.per_channel ? n_out : 1});
  g.initializers[base + "/W_zero_point"] = options.per_channel ? zp : Tensor(DType::kInt8, {});
  g.initializers[base + "/W_scale"] =
      options.per_channel ? Tensor::from_vector(out_scale, {n_out}) : Tensor::scalar<float>(out_scale[0]);

  std::vector<Node> nodes;
  nodes.push_back(make_node(base + "/DynamicQuantizeLinear", "DynamicQuantizeLinear", {x},
                            {base + "/x_q", base + "/x_scale", base + "/x_zero_point"}));
  nodes.push_back(make_node(base + "/MatMulInteger", "MatMulInteger",
                            {base + "/x_q", base + "/W_q", base + "/x_zero_point", base + "/W_zero_point"},
                            {base + "/acc"}));
  Node cast = make_node(base + "/Cast", "Cast", {base + "/acc"}, {base + "/acc_float"});
  set_attr(cast, "to", static_cast<int64_t>(DType::kFloat32));
  nodes.push_back(cast);
  nodes.push_back(make_node(base + "/scale", "Mul", {base + "/x_scale", base + "/W_scale"}, {base + "/out_scale"}));
  const bool has_bias = node.op_type == "Gemm" && node.inputs.size() > 2 && !node.inputs[2].empty();
  const std::string y = node.outputs[0];
  nodes.push_back(make_node(base + "/rescale", "Mul", {base + "/acc_float", base + "/out_scale"},
                            {has_bias ? base + "/no_bias" : y}));
  if (has_bias) {
    std::string c = node.inputs[2];
    if (beta != 1.0f && g.initializers.count(c)) {
      Tensor scaled = g.initializers.at(c).clone();
      for (int64_t i = 0; i < scaled.numel(); ++i) scaled.data<float>()[i] *= beta;
      g.initializers[base + "/bias"] = scaled;
      c = base + "/bias";
    } else if (beta != 1.0f) {
      return 1;  // a runtime C with beta != 1: leave FP32 (rare)
    }
    nodes.push_back(make_node(base + "/bias_add", "Add", {base + "/no_bias", c}, {y}));
  }
  g.nodes.erase(g.nodes.begin() + static_cast<std::ptrdiff_t>(index));
  g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(index), nodes.begin(), nodes.end());
  return nodes.size();
}

}  // namespace

Model quantize_dynamic(const Model& model, const QuantizeOptions& options, QuantizeSummary* summary) {
  if (is_quantized_model(model)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the model is already quantized (it has QuantizeLinear/DequantizeLinear or integer operators); "
                "quantize its FP32 original instead");
  }
  if (model.opset() < 11) {
    throw Error(ErrorCode::kUnsupported,
                "dynamic quantization needs opset 11 or later (DynamicQuantizeLinear); the model has " +
                    std::to_string(model.opset()));
  }
  Model out = model;
  Graph& g = out.graph;
  const std::set<std::string> excluded_names =
      resolve_excluded_nodes(g, options.exclude, {"MatMul", "Gemm", "LSTM", "GRU", "RNN"});
  int64_t quantized = 0;
  auto excluded = [&](const Node& n) { return excluded_names.count(n.name) != 0; };
  std::set<std::string> rnn_weights_done;
  for (size_t i = 0; i < g.nodes.size();) {
    const Node& n = g.nodes[i];
    const bool is_linear = n.op_type == "MatMul" || n.op_type == "Gemm";
    const bool is_rnn = n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN";
    if (excluded(n)) {
      if ((is_linear || is_rnn) && summary) summary->kept_fp32.push_back(n.name);
      ++i;
      continue;
    }
    if (is_linear && n.inputs.size() >= 2 && g.initializers.count(n.inputs[1]) &&
        g.initializers.at(n.inputs[1]).dtype() == DType::kFloat32 && g.initializers.at(n.inputs[1]).rank() == 2 &&
        !(n.op_type == "Gemm" && n.attr_int("transA", 0))) {
      if (summary) summary->layer_outputs.emplace_back(n.name, n.outputs[0]);
      const size_t added = rewrite_linear(g, i, options);
      if (added > 1) ++quantized;
      i += added;
      continue;
    }
    if (is_rnn) {
      bool any = false;
      const std::pair<std::string, std::string> layer(n.name, !n.outputs.empty() ? n.outputs[0] : "");
      // insert_weight_dq adds a node in front, which moves g.nodes (and `n`).
      const std::vector<std::string> inputs = n.inputs;
      for (size_t k : {1, 2}) {
        if (k >= inputs.size()) continue;
        const std::string name = inputs[k];
        if (!g.initializers.count(name) || rnn_weights_done.count(name)) continue;
        const Tensor& w = g.initializers.at(name);
        if (w.dtype() != DType::kFloat32 || w.rank() != 3) continue;
        insert_weight_dq(g, name, weight_params(w, options.per_channel ? 1 : -1, DType::kInt8, Symmetry::kSymmetric));
        rnn_weights_done.insert(name);
        ++i;  // the DequantizeLinear went in front
        any = true;
      }
      quantized += any;
      if (any && summary && !layer.second.empty()) summary->layer_outputs.push_back(layer);
    }
    ++i;
  }
  if (quantized == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                "nothing to quantize dynamically: no MatMul/Gemm with constant 2-D FP32 weights and no LSTM/GRU/RNN");
  }
  eliminate_dead_nodes(g);  // the FP32 weights the rewrites replaced
  if (summary) summary->quantized_nodes = quantized;
  return out;
}

}  // namespace kvant
