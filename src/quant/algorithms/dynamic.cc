// Dynamic quantization: INT8 weights, activations quantized on every call
// from their own min/max (as torch.quantization.quantize_dynamic does for
// nn.Linear and nn.LSTM). No calibration data.
//
// MatMul(x, W) with W [K, N] constant becomes the standard ONNX pattern that
// ONNX Runtime also runs:
//   x -> DynamicQuantizeLinear -> (x_q uint8, x_scale, x_zero_point)
//   MatMulInteger(x_q, W_q int8 [K, N], x_zero_point) -> int32
//     (no W zero point: the weights are symmetric, and the input's default is 0)
//   Cast(float) * (x_scale * W_scale[N])  (+ bias)  -> y
// Gemm(A, B, C) is the same with B transposed to [K, N] when transB = 1,
// alpha folded into W_scale and beta * C added at the end (transA = 1 stays
// FP32). --reduce-range gives 7-bit weights (activations are always 8-bit
// here), as ONNX Runtime's quantizer does for CPUs without VNNI. LSTM/GRU/RNN weights W and R become int8 per gate row
// (axis 1) in front of a DequantizeLinear; the recurrent kernels read them as INT8.
//
// Conv(x, W [M, C/group, k...], B) with W constant becomes ONNX Runtime's
// quantize_dynamic pattern for Conv:
//   x -> DynamicQuantizeLinear -> (x_q, x_scale, x_zero_point)
//   ConvInteger(x_q, W_q uint8, x_zero_point, 128) -> int32 [N, M, ...]
//   Cast(float) * (x_scale * W_scale [M, 1, ...])  (+ B as [M, 1, ...])  -> y
// W_q holds the symmetric int8 values (per output channel) plus 128, with a
// per-tensor zero point of 128: ONNX Runtime's ConvInteger takes only one
// weight zero point, and with uint8 x uint8 its AVX2 kernel widens to int16
// before multiplying, so it never saturates (u8 x s8 pair sums can).
// The bias keeps its name, reshaped to broadcast over the spatial axes.
// A depthwise Conv (group = C_in = C_out > 1: W [C, 1, k...]) stays FP32
// (design decision 54): it is memory-bound, and quantizing its input on
// every call costs more than its int8 arithmetic saves (MobileNetV2 on the
// AVX2 EPYC: the dynamic depthwise steps took 2.1x the FP32 kernel's time).
// It is listed in fp32_reasons; the 1x1 convs around it are quantized.
//
// Inside If/Loop/Scan bodies the same rewrites apply, recursively; a weight a
// body reads from an enclosing graph is first copied into that body
// (quantize_subgraphs below, design decision 25).
//
// Large FP32 constants that are data rather than per-channel parameters (a
// Gather's embedding table, a position embedding added to the tokens: at
// least kMinDataElements values, read only as a Gather's data or as an
// Add/Sub/Mul/Concat operand with two or more dimensions > 1) become int8
// + DequantizeLinear under their own name: per row for a 2-D Gather table
// (opset >= 13 and per-channel on), else per tensor. Biases, LayerNorm
// and BatchNorm vectors stay FP32.
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <unordered_set>

#include "kvant/status.h"
#include "passes/pass.h"
#include "quant/qdq.h"
#include "quant/quantize.h"
#include "quant/subgraphs.h"

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
  check_finite_weight(w, node.inputs[1], options.allow_nonfinite);
  const QuantParams wp =
      weight_params(w, options.per_channel ? 1 : -1, DType::kInt8, Symmetry::kSymmetric, options.reduce_range);
  g.initializers[base + "/W_q"] = quantize_tensor(w, wp);
  std::vector<float> out_scale = wp.scale;
  for (float& s : out_scale) s *= alpha;  // y = alpha * x W: alpha folds into the scale
  const int64_t n_out = w.dim(1);
  g.initializers[base + "/W_scale"] =
      options.per_channel ? Tensor::from_vector(out_scale, {n_out}) : Tensor::scalar<float>(out_scale[0]);

  std::vector<Node> nodes;
  nodes.push_back(make_node(base + "/DynamicQuantizeLinear", "DynamicQuantizeLinear", {x},
                            {base + "/x_q", base + "/x_scale", base + "/x_zero_point"}));
  nodes.push_back(make_node(base + "/MatMulInteger", "MatMulInteger",
                            {base + "/x_q", base + "/W_q", base + "/x_zero_point"}, {base + "/acc"}));
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

// Replaces node `index` (Conv with a constant FP32 weight and a constant or
// absent bias) by the ConvInteger pattern above. Returns the number of nodes
// now at that position (1: left as it was).
size_t rewrite_conv(Graph& g, size_t index, const QuantizeOptions& options) {
  const Node node = g.nodes[index];
  const Tensor& w = g.initializers.at(node.inputs[1]);
  const int64_t m = w.dim(0);
  const bool has_bias = node.inputs.size() > 2 && !node.inputs[2].empty();
  if (has_bias && (!g.initializers.count(node.inputs[2]) || g.initializers.at(node.inputs[2]).numel() != m)) return 1;
  const std::string base = node.name;
  check_finite_weight(w, node.inputs[1], options.allow_nonfinite);
  QuantParams wp =
      weight_params(w, options.per_channel ? 0 : -1, DType::kInt8, Symmetry::kSymmetric, options.reduce_range);
  const Tensor q = quantize_tensor(w, wp);
  Tensor wq(DType::kUInt8, w.shape());
  for (int64_t i = 0; i < q.numel(); ++i) {
    wq.data<uint8_t>()[i] = static_cast<uint8_t>(static_cast<int32_t>(q.data<int8_t>()[i]) + 128);
  }
  Shape channel_shape(static_cast<size_t>(w.rank()) - 1, 1);  // [M, 1, ...]: broadcasts over N, M, spatial
  channel_shape[0] = m;
  g.initializers[base + "/W_q"] = wq;
  g.initializers[base + "/W_zero_point"] = Tensor::scalar<uint8_t>(128);
  g.initializers[base + "/W_scale"] =
      options.per_channel ? Tensor::from_vector(wp.scale, channel_shape) : Tensor::scalar<float>(wp.scale[0]);

  std::vector<Node> nodes;
  nodes.push_back(make_node(base + "/DynamicQuantizeLinear", "DynamicQuantizeLinear", {node.inputs[0]},
                            {base + "/x_q", base + "/x_scale", base + "/x_zero_point"}));
  Node conv =
      make_node(base + "/ConvInteger", "ConvInteger",
                {base + "/x_q", base + "/W_q", base + "/x_zero_point", base + "/W_zero_point"}, {base + "/acc"});
  conv.attributes = node.attributes;  // auto_pad, dilations, group, kernel_shape, pads, strides
  nodes.push_back(conv);
  Node cast = make_node(base + "/Cast", "Cast", {base + "/acc"}, {base + "/acc_float"});
  set_attr(cast, "to", static_cast<int64_t>(DType::kFloat32));
  nodes.push_back(cast);
  nodes.push_back(make_node(base + "/scale", "Mul", {base + "/x_scale", base + "/W_scale"}, {base + "/out_scale"}));
  const std::string y = node.outputs[0];
  nodes.push_back(make_node(base + "/rescale", "Mul", {base + "/acc_float", base + "/out_scale"},
                            {has_bias ? base + "/no_bias" : y}));
  if (has_bias) {
    std::string b = node.inputs[2];
    int64_t readers = 0;
    for (const Node& n : g.nodes) readers += std::count(n.inputs.begin(), n.inputs.end(), b);
    const Tensor bias = g.initializers.at(b).reshaped(channel_shape);
    const bool is_output =
        std::any_of(g.outputs.begin(), g.outputs.end(), [&](const ValueInfo& v) { return v.name == b; });
    if (readers > 1 || is_output) b = base + "/bias";  // shared: a reshaped copy
    g.initializers[b] = bias;
    nodes.push_back(make_node(base + "/bias_add", "Add", {base + "/no_bias", b}, {y}));
  }
  g.nodes.erase(g.nodes.begin() + static_cast<std::ptrdiff_t>(index));
  g.nodes.insert(g.nodes.begin() + static_cast<std::ptrdiff_t>(index), nodes.begin(), nodes.end());
  return nodes.size();
}

constexpr int64_t kMinDataElements = 1024;

// Whether reading initializer `name` as input `k` of `n` uses it as data.
bool data_use(const Node& n, size_t k, const Tensor& t) {
  if (n.op_type == "Gather") return k == 0;
  if (n.op_type != "Add" && n.op_type != "Sub" && n.op_type != "Mul" && n.op_type != "Concat") return false;
  int64_t wide = 0;
  for (int64_t d : t.shape()) wide += d > 1;
  return wide >= 2;
}

// Stores the large FP32 data constants as int8 + DequantizeLinear (see the
// header comment). Returns how many it quantized.
int64_t quantize_data_constants(Graph& g, const QuantizeOptions& options, const std::set<std::string>& excluded,
                                int64_t opset) {
  std::map<std::string, bool> candidates;  // name -> read as a 2-D Gather table
  for (const auto& [name, t] : g.initializers) {
    if (t.dtype() == DType::kFloat32 && t.numel() >= kMinDataElements) candidates[name] = false;
  }
  for (const ValueInfo& out : g.outputs) candidates.erase(out.name);
  for (const Node& n : g.nodes) {
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      auto it = candidates.find(n.inputs[k]);
      if (it == candidates.end()) continue;
      const Tensor& t = g.initializers.at(it->first);
      if (excluded.count(n.name) || !data_use(n, k, t)) {
        candidates.erase(it);
      } else if (n.op_type == "Gather" && t.rank() == 2) {
        it->second = true;
      }
    }
  }
  for (const auto& [name, gather_table] : candidates) {
    const Tensor& t = g.initializers.at(name);
    const int axis = gather_table && options.per_channel && opset >= 13 ? 0 : -1;
    check_finite_weight(t, name, options.allow_nonfinite);
    insert_weight_dq(g, name, weight_params(t, axis, DType::kInt8, Symmetry::kSymmetric));
  }
  return static_cast<int64_t>(candidates.size());
}

// A depthwise Conv: group = C_in = C_out > 1, so W is [group, 1, k...].
bool is_depthwise(const Node& conv, const Tensor& w) {
  const int64_t group = conv.attr_int("group", 1);
  return group > 1 && w.dim(0) == group && w.dim(1) == 1;
}
constexpr const char* kDepthwiseReason =
    "depthwise Conv: FP32 in dynamic mode (faster than quantizing its input per call)";

// Rewrites the MatMul/Gemm/Conv/LSTM/GRU/RNN nodes of `g` whose weights are
// initializers of `g` (see the header comment). `top`: g is the main graph
// (only its layers go to the per-layer report). Returns how many it quantized.
int64_t quantize_graph(Graph& g, const QuantizeOptions& options, const std::set<std::string>& excluded_names,
                       QuantizeSummary* summary, std::set<std::string>& rnn_weights_done, bool top) {
  int64_t quantized = 0;
  auto excluded = [&](const Node& n) { return excluded_names.count(n.name) != 0; };
  for (size_t i = 0; i < g.nodes.size();) {
    const Node& n = g.nodes[i];
    const bool is_linear = n.op_type == "MatMul" || n.op_type == "Gemm";
    const bool is_rnn = n.op_type == "LSTM" || n.op_type == "GRU" || n.op_type == "RNN";
    const bool is_conv = n.op_type == "Conv";
    if (excluded(n)) {
      if ((is_linear || is_rnn || is_conv) && summary) summary->kept_fp32.push_back(n.name);
      ++i;
      continue;
    }
    if (is_linear && n.inputs.size() >= 2 && g.initializers.count(n.inputs[1]) &&
        g.initializers.at(n.inputs[1]).dtype() == DType::kFloat32 && g.initializers.at(n.inputs[1]).rank() == 2 &&
        !(n.op_type == "Gemm" && n.attr_int("transA", 0))) {
      if (summary && top) summary->layer_outputs.emplace_back(n.name, n.outputs[0]);
      const size_t added = rewrite_linear(g, i, options);
      if (added > 1) ++quantized;
      i += added;
      continue;
    }
    if (is_conv && n.inputs.size() >= 2 && g.initializers.count(n.inputs[1]) &&
        g.initializers.at(n.inputs[1]).dtype() == DType::kFloat32 && g.initializers.at(n.inputs[1]).rank() >= 3 &&
        is_depthwise(n, g.initializers.at(n.inputs[1]))) {
      if (summary) summary->fp32_reasons.emplace_back(n.name, kDepthwiseReason);
      ++i;
      continue;
    }
    if (is_conv && n.inputs.size() >= 2 && g.initializers.count(n.inputs[1]) &&
        g.initializers.at(n.inputs[1]).dtype() == DType::kFloat32 && g.initializers.at(n.inputs[1]).rank() >= 3) {
      const std::pair<std::string, std::string> layer(n.name, n.outputs[0]);
      const size_t added = rewrite_conv(g, i, options);
      if (added > 1) {
        ++quantized;
        if (summary && top) summary->layer_outputs.push_back(layer);
      }
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
        check_finite_weight(w, name, options.allow_nonfinite);
        insert_weight_dq(g, name, weight_params(w, options.per_channel ? 1 : -1, DType::kInt8, Symmetry::kSymmetric));
        rnn_weights_done.insert(name);
        ++i;  // the DequantizeLinear went in front
        any = true;
      }
      quantized += any;
      if (any && summary && top && !layer.second.empty()) summary->layer_outputs.push_back(layer);
    }
    ++i;
  }
  return quantized;
}

// Weights inside control flow (design decision 25). The bodies of If, Loop
// and Scan usually read their weights from an enclosing graph's
// initializers, often through Slice/Concat/Transpose nodes (PyTorch reorders
// LSTM gates that way). Every enclosing-graph initializer a body reads is
// copied into the body (under a fresh name) and the body's constant nodes
// are folded, so that the rewrites above, which only touch a graph's own
// initializers, apply inside the body too. The FP32 originals are dropped
// later if nothing else reads them; a weight two bodies share is stored once
// per body. Bodies are copied first: a copied Model shares its subgraphs with
// the original. An excluded If/Loop/Scan keeps its bodies as they are.
// Returns how many layers it quantized.
int64_t quantize_subgraphs(Graph& g, std::vector<const Graph*> outer, int64_t opset, const QuantizeOptions& options,
                           const std::set<std::string>& excluded_names, QuantizeSummary* summary,
                           std::set<std::string>& rnn_weights_done, std::unordered_set<std::string>& used) {
  outer.push_back(&g);
  int64_t quantized = 0;
  for (Node& node : g.nodes) {
    if (excluded_names.count(node.name)) continue;
    for (Graph* body : unshare_bodies(node)) {
      Graph& b = *body;
      localize_outer_constants(b, outer, opset, used);
      quantized += quantize_subgraphs(b, outer, opset, options, excluded_names, summary, rnn_weights_done, used);
      const int64_t here = quantize_graph(b, options, excluded_names, summary, rnn_weights_done, false);
      if (here > 0) eliminate_dead_nodes(b);  // the FP32 copies the rewrites replaced
      quantized += here;
    }
  }
  return quantized;
}

}  // namespace

Model quantize_dynamic(const Model& model, const QuantizeOptions& options, QuantizeSummary* summary) {
  if (is_quantized_model(model)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the model is already quantized (it has QuantizeLinear/DequantizeLinear or integer operators); "
                "quantize its FP32 original instead");
  }
  if (model.opset() < 13) {  // DynamicQuantizeLinear is 11+, per-axis DQ 13+: upgrade (passes/upgrade_opset13.cc)
    Model upgraded = model;
    upgrade_to_opset13(upgraded);
    return quantize_dynamic(upgraded, options, summary);
  }
  Model out = model;
  Graph& g = out.graph;
  const std::set<std::string> excluded_names =
      resolve_excluded_nodes(g, options.exclude, {"MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN"});
  std::unordered_set<std::string> used;
  collect_names(g, used);
  std::set<std::string> rnn_weights_done;
  const int64_t inside =
      quantize_subgraphs(g, {}, model.opset(), options, excluded_names, summary, rnn_weights_done, used);
  int64_t quantized = quantize_graph(g, options, excluded_names, summary, rnn_weights_done, true) + inside;
  if (summary && inside > 0) {
    summary->notes.push_back(std::to_string(inside) +
                             " layer(s) inside If/Loop/Scan bodies quantized (their weights "
                             "copied into the body that reads them)");
  }
  if (quantized == 0) {  // written unchanged, with a warning (design decision 24)
    if (summary) {
      summary->warnings.push_back(
          "nothing to quantize dynamically: no MatMul/Gemm/Conv with constant FP32 weights and no LSTM/GRU/RNN "
          "outside the excluded nodes; the model is written unchanged (FP32)");
      summary->layer_outputs.clear();
    }
    return model;
  }
  eliminate_dead_nodes(g);  // the FP32 weights the rewrites replaced
  const int64_t data = quantize_data_constants(g, options, excluded_names, model.opset());
  if (summary && data > 0) {
    std::string note = std::to_string(data);
    note += " FP32 data constant(s) (embedding tables, position embeddings) stored as int8 + DequantizeLinear";
    summary->notes.push_back(note);
  }
  if (summary) {
    summary->quantized_nodes = quantized;
    for (auto& w : minimum_scale_warnings(g)) summary->warnings.push_back(std::move(w));
  }
  return out;
}

}  // namespace kvant
