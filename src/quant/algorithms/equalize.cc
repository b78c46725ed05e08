// Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization
// Through Weight Equalization and Bias Correction", arXiv:1906.04721, §4.1).
//
// Two layers in a row, y = f(W1 x + b1), z = W2 y + b2, with f positively
// homogeneous (f(s v) = s f(v) for s > 0: Relu, LeakyRelu, Clip(min 0, no
// max), or no activation at all). For any s_i > 0 per channel i of y:
//   W1'[i, :] = W1[i, :] / s_i      b1'[i] = b1[i] / s_i
//   W2'[:, i] = W2[:, i] * s_i
// computes the same z: f(W1' x + b1')[i] = f((W1 x + b1)[i]) / s_i, and layer
// 2 multiplies it back. With r1_i = max |W1[i, :]| (output channel i of layer
// 1) and r2_i = max |W2[:, i]| (input channel i of layer 2),
//   s_i = sqrt(r1_i * r2_i) / r2_i
// makes both ranges sqrt(r1_i * r2_i): a channel whose weights are far
// smaller than the largest of its tensor is widened in one layer and the
// large one narrowed in the other, which is what a per-tensor weight scale
// needs (the paper's optimum of the product of per-channel precisions).
// Ranges are max |w| because kvant's weights are symmetric by default.
//
// Channel maps: Conv W [O, I/g, k...] (group g): output channel o is W[o];
// input channel c is W[o, c mod I/g] for the O/g filters of group c div I/g,
// so a depthwise Conv's (g = I = O) input and output channel c are both
// W[c]. Gemm B [N, K] (transB 1) or [K, N] (transB 0), MatMul B [K, N]:
// output channel n is B's column (row) n, input channel k its row (column) k.
// Conv pairs with Conv, Gemm/MatMul with Gemm/MatMul (the channel axis is 1
// for both Conv tensors and the last axis for both matrix ones).
//
// Chains (expand -> depthwise -> project) share a layer: every pair is
// equalized in graph order, and the sweep is repeated until no s_i moves by
// more than the tolerance (|log s_i|), as the paper iterates.
//
// Legal only when: both weights (and layer 1's bias) are float32 constant
// initializers, not graph inputs; layer 1's bias is absent or one value per
// channel (Gemm C [N] or [1, N]); the intermediate values (layer 1's output
// and the activation's) have no other reader and are no graph output; layer
// 2 reads them as its data input (Gemm: transA 0). Clip with a max (ReLU6 =
// Clip(0, 6)) is skipped: Clip(v / s, 0, 6) != Clip(v, 0, 6) / s, and ONNX
// Clip takes one scalar max, so no per-channel max could keep it; AIMET and
// the paper replace ReLU6 by ReLU before equalizing, which changes the FP32
// model, so kvant does not. A channel with r1_i or r2_i zero (dead) keeps
// s_i = 1.
#include "quant/algorithms/equalize.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

#include "passes/pass.h"
#include "quant/algorithms/weight_channels.h"

namespace kvant {

namespace {

const Tensor* constant_f32(const Graph& graph, const std::string& name) {
  if (name.empty() || graph.find_input(name) != nullptr) return nullptr;
  auto it = graph.initializers.find(name);
  if (it == graph.initializers.end() || it->second.dtype() != DType::kFloat32) return nullptr;
  return &it->second;
}

// The channel map of `node`, not valid when it is no layer kvant equalizes.
WeightChannels weight_map(const Graph& graph, const Node& node) {
  if (!node.domain.empty() || node.inputs.size() < 2 || node.outputs.size() != 1) return {};
  const Tensor* w = constant_f32(graph, node.inputs[1]);
  if (w == nullptr) return {};
  return weight_channels(node, *w);
}

// Layer 1's bias is scaled per output channel: absent, or one value each.
bool bias_scalable(const Graph& graph, const Node& node, int64_t channels) {
  if (node.inputs.size() < 3 || node.inputs[2].empty()) return true;
  if (node.op_type == "MatMul") return true;
  const Tensor* b = constant_f32(graph, node.inputs[2]);
  if (b == nullptr || b->numel() != channels) return false;
  return b->rank() == 1 || (b->rank() == 2 && b->dim(0) == 1);
}

// Why activation `act` breaks equalization, or "" when it is positively homogeneous.
std::string inhomogeneous(const Graph& graph, const Node& act) {
  if (act.op_type == "Relu" || act.op_type == "LeakyRelu") return "";
  if (act.op_type != "Clip") return act.op_type + " is not positively homogeneous";
  if (act.has_attr("max") || (act.inputs.size() > 2 && !act.inputs[2].empty())) {
    return "Clip with a max (e.g. ReLU6) between them: Clip(v / s, 0, max) != Clip(v, 0, max) / s";
  }
  float min = 0;
  bool has_min = false;
  if (act.has_attr("min")) {
    min = act.attr_float("min", 0.0f);
    has_min = true;
  } else if (act.inputs.size() > 1 && !act.inputs[1].empty()) {
    const Tensor* t = constant_f32(graph, act.inputs[1]);
    if (t == nullptr || t->numel() != 1) return "Clip's min is not a constant";
    min = t->data<float>()[0];
    has_min = true;
  }
  if (has_min && min != 0.0f) return "Clip with a min other than 0 is not positively homogeneous";
  return "";
}

bool is_activation(const Node& n) {
  return n.domain.empty() && (n.op_type == "Relu" || n.op_type == "LeakyRelu" || n.op_type == "Clip");
}

std::vector<double> ranges(const Graph& graph, const Node& node, bool outputs) {
  const WeightChannels m = weight_map(graph, node);
  if (!m.valid) return {};
  const float* w = graph.initializers.at(node.inputs[1]).data<float>();
  const int64_t numel = graph.initializers.at(node.inputs[1]).numel();
  std::vector<double> r(static_cast<size_t>(outputs ? m.out_channels : m.in_channels), 0.0);
  for (int64_t e = 0; e < numel; ++e) {
    int64_t o, c;
    m.channels(e, o, c);
    double& slot = r[static_cast<size_t>(outputs ? o : c)];
    slot = std::max(slot, static_cast<double>(std::fabs(w[e])));
  }
  return r;
}

// Makes initializer `name` (read by `node` as input `slot`) a tensor of its
// own: copied under a new name when something else reads it too, and cloned
// (so storage shared with another Model is left alone). Returns it.
Tensor& own_initializer(Graph& graph, Node& node, size_t slot, const std::unordered_map<std::string, int>& reads,
                        UniqueNames& names) {
  std::string& name = node.inputs[slot];
  auto r = reads.find(name);
  const bool shared = (r != reads.end() && r->second > 1) || is_graph_output(graph, name);
  Tensor copy = graph.initializers.at(name).clone();
  if (shared) name = names.make(name + "_equalized");
  graph.initializers[name] = std::move(copy);
  return graph.initializers[name];
}

}  // namespace

std::vector<double> output_channel_ranges(const Graph& graph, const Node& node) { return ranges(graph, node, true); }
std::vector<double> input_channel_ranges(const Graph& graph, const Node& node) { return ranges(graph, node, false); }

std::vector<EqualizePair> find_equalize_pairs(const Graph& graph,
                                              std::vector<std::pair<std::string, std::string>>* skipped) {
  const auto reads = count_reads(graph);
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const auto& o : graph.nodes[i].outputs) producer[o] = i;
  }
  auto read_once = [&](const std::string& v) {
    auto r = reads.find(v);
    return r != reads.end() && r->second == 1 && !is_graph_output(graph, v);
  };
  std::vector<EqualizePair> pairs;
  for (size_t j = 0; j < graph.nodes.size(); ++j) {
    const Node& second = graph.nodes[j];
    const WeightChannels m2 = weight_map(graph, second);
    if (!m2.valid || second.inputs[0].empty()) continue;
    auto p = producer.find(second.inputs[0]);
    if (p == producer.end()) continue;
    const Node* act = nullptr;
    size_t i = p->second;
    if (is_activation(graph.nodes[i])) {
      act = &graph.nodes[i];
      if (act->inputs.empty()) continue;
      auto p1 = producer.find(act->inputs[0]);
      if (p1 == producer.end()) continue;
      i = p1->second;
    }
    const Node& first = graph.nodes[i];
    const WeightChannels m1 = weight_map(graph, first);
    if (!m1.valid) continue;
    auto skip = [&](const std::string& why) {
      if (skipped) skipped->emplace_back(first.name + " -> " + second.name, why);
    };
    if (m1.conv != m2.conv) continue;  // Conv feeding a MatMul directly: no common channel axis
    if (m1.out_channels != m2.in_channels) {
      skip("layer 1 has " + std::to_string(m1.out_channels) + " output channels, layer 2 reads " +
           std::to_string(m2.in_channels));
      continue;
    }
    if (second.op_type == "Gemm" && second.attr_int("transA", 0) != 0) {
      skip("layer 2 is a Gemm with transA");
      continue;
    }
    if (act != nullptr) {
      const std::string why = inhomogeneous(graph, *act);
      if (!why.empty()) {
        skip(why);
        continue;
      }
    }
    if (!read_once(first.outputs[0]) || (act != nullptr && !read_once(act->outputs[0]))) {
      skip("an intermediate value has other readers or is a model output");
      continue;
    }
    if (!bias_scalable(graph, first, m1.out_channels)) {
      skip("layer 1's bias is not a constant with one value per channel");
      continue;
    }
    pairs.push_back({i, j, act ? act->op_type : ""});
  }
  return pairs;
}

EqualizeResult equalize_cross_layer(Graph& graph, const EqualizeOptions& options) {
  EqualizeResult result;
  result.pairs = find_equalize_pairs(graph, &result.skipped);
  if (result.pairs.empty()) return result;
  // Weights and biases become tensors of their own once, before any change.
  {
    const auto reads = count_reads(graph);
    UniqueNames names(graph);
    std::set<size_t> owned;
    std::set<std::string> originals;  // names a copy left behind, maybe unread now
    for (const EqualizePair& p : result.pairs) {
      for (size_t idx : {p.first, p.second}) {
        if (!owned.insert(idx).second) continue;
        Node& n = graph.nodes[idx];
        for (size_t slot = 1; slot < 3 && slot < n.inputs.size(); ++slot) {
          if (n.inputs[slot].empty() || (slot == 2 && n.op_type == "MatMul")) continue;
          originals.insert(n.inputs[slot]);
          own_initializer(graph, n, slot, reads, names);
        }
      }
    }
    const auto now = count_reads(graph);
    for (const std::string& name : originals) {
      if (!now.count(name)) graph.initializers.erase(name);
    }
  }
  for (result.sweeps = 1; result.sweeps <= options.max_sweeps; ++result.sweeps) {
    double change = 0;
    // Forward and backward in turn: a scale set at one end of a long chain
    // travels along it in one sweep either way, not one pair per sweep.
    const bool forward = result.sweeps % 2 == 1;
    for (size_t k = 0; k < result.pairs.size(); ++k) {
      const EqualizePair& p = result.pairs[forward ? k : result.pairs.size() - 1 - k];
      Node& n1 = graph.nodes[p.first];
      Node& n2 = graph.nodes[p.second];
      const std::vector<double> r1 = output_channel_ranges(graph, n1);
      const std::vector<double> r2 = input_channel_ranges(graph, n2);
      std::vector<double> s(r1.size(), 1.0);
      for (size_t c = 0; c < s.size(); ++c) {
        if (r1[c] > 0 && r2[c] > 0) s[c] = std::sqrt(r1[c] * r2[c]) / r2[c];
        if (!std::isfinite(s[c]) || s[c] <= 0) s[c] = 1.0;
        change = std::max(change, std::fabs(std::log(s[c])));
      }
      const WeightChannels m1 = weight_map(graph, n1), m2 = weight_map(graph, n2);
      Tensor& w1 = graph.initializers.at(n1.inputs[1]);
      float* w1d = w1.data<float>();
      for (int64_t e = 0; e < w1.numel(); ++e) {
        int64_t o, c;
        m1.channels(e, o, c);
        w1d[e] = static_cast<float>(w1d[e] / s[static_cast<size_t>(o)]);
      }
      if (n1.op_type != "MatMul" && n1.inputs.size() > 2 && !n1.inputs[2].empty()) {
        Tensor& b1 = graph.initializers.at(n1.inputs[2]);
        float* b1d = b1.data<float>();
        for (int64_t o = 0; o < b1.numel(); ++o) b1d[o] = static_cast<float>(b1d[o] / s[static_cast<size_t>(o)]);
      }
      Tensor& w2 = graph.initializers.at(n2.inputs[1]);
      float* w2d = w2.data<float>();
      for (int64_t e = 0; e < w2.numel(); ++e) {
        int64_t o, c;
        m2.channels(e, o, c);
        w2d[e] = static_cast<float>(w2d[e] * s[static_cast<size_t>(c)]);
      }
    }
    result.last_change = change;
    if (change < options.tolerance) break;
  }
  result.sweeps = std::min(result.sweeps, options.max_sweeps);
  return result;
}

}  // namespace kvant
