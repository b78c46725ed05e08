// Per-layer error of a quantized model (DESIGN.md §6; quantize.h has the
// definitions). Both models run on the same samples; a quantized layer's
// output tensor has the same name in both (quant/qdq.h), so the accumulated
// error compares them directly.
//
// The own error runs the layer alone: from the layer's output T, the
// quantized graph is walked backwards to the layer's inputs, and the nodes
// walked (input Q -> DQ, weight DQs, the op, a fused activation, the output
// Q -> DQ) form a small model of their own. The walk stops at
//   - "<x>/float", the float value a QuantizeLinear reads (qdq.h): fed with
//     the FP32 model's x, so the input's own Q/DQ is part of the layer;
//   - a value the FP32 model has, produced in the quantized model by another
//     op than Q/DQ (e.g. the activation MatMulNBits reads): fed with the
//     FP32 value. The layer's own op and a fused Relu/Clip after it are
//     walked through (the "core" values);
//   - graph inputs (fed with the sample) and initializers (copied).
// A walk that reaches a node with subgraphs or grows past kMaxOwnNodes gives
// up: the own error is then not measured (NaN) rather than a guess.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "kvant/status.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

constexpr size_t kMaxOwnNodes = 64;

struct Sums {
  double signal = 0, noise = 0, dot = 0, norm_y = 0;
  void add(const float* x, const float* y, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      const double xi = x[i], yi = y[i];
      signal += xi * xi;
      noise += (xi - yi) * (xi - yi);
      dot += xi * yi;
      norm_y += yi * yi;
    }
  }
  double sqnr_db() const {
    return noise == 0 ? std::numeric_limits<double>::infinity() : 10 * std::log10(signal / noise);
  }
  double cosine() const {
    return (signal == 0 || norm_y == 0) ? (signal == norm_y ? 1.0 : 0.0) : dot / std::sqrt(signal * norm_y);
  }
};

struct Moments {
  double sum = 0, sum_sq = 0;
  int64_t count = 0;
  void add(const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      sum += x[i];
      sum_sq += static_cast<double>(x[i]) * x[i];
    }
    count += static_cast<int64_t>(n);
  }
  double mean() const { return count ? sum / static_cast<double>(count) : 0; }
  double variance() const { return count ? std::max(0.0, sum_sq / static_cast<double>(count) - mean() * mean()) : 0; }
};

// The layer alone, as a model of its own (see the header comment).
struct OwnLayer {
  std::unique_ptr<Model> model;
  std::unique_ptr<ReferenceExecutor> exec;
  std::vector<std::pair<std::string, std::string>> feeds;  // input of `model` <- FP32 value
};

std::optional<OwnLayer> make_own_layer(const Model& quantized, const std::unordered_set<std::string>& fp32_values,
                                       const std::unordered_map<std::string, size_t>& producer,
                                       const std::string& tensor) {
  const Graph& g = quantized.graph;
  OwnLayer layer;
  layer.model = std::make_unique<Model>();
  Model& m = *layer.model;
  m.ir_version = quantized.ir_version;
  m.opset_imports = quantized.opset_imports;
  std::set<size_t> nodes;
  std::unordered_set<std::string> seen;
  // The layer's own values: its output, the float value its Q reads, and the
  // input of a fused Relu/Clip (the op's output).
  std::unordered_set<std::string> core = {tensor, tensor + "/float"};
  std::vector<std::string> stack = {tensor};
  while (!stack.empty()) {
    const std::string t = stack.back();
    stack.pop_back();
    if (t.empty() || !seen.insert(t).second) continue;
    auto init = g.initializers.find(t);
    if (init != g.initializers.end()) {
      m.graph.initializers[t] = init->second;
      continue;
    }
    auto p = producer.find(t);
    std::string source;  // the FP32 value fed in place of t
    if (g.find_input(t)) {
      source = t;
    } else if (!core.count(t) && t.size() > 6 && t.ends_with("/float") &&
               fp32_values.count(t.substr(0, t.size() - 6))) {
      source = t.substr(0, t.size() - 6);  // what an input's QuantizeLinear reads
    } else if (p == producer.end()) {
      return std::nullopt;
    } else if (!core.count(t) && fp32_values.count(t)) {
      const std::string& op = g.nodes[p->second].op_type;
      if (op != "QuantizeLinear" && op != "DequantizeLinear") source = t;  // a float value left alone
    }
    if (!source.empty()) {
      m.graph.inputs.push_back(ValueInfo{t, TypeInfo{}});
      layer.feeds.emplace_back(t, source);
      continue;
    }
    const Node& n = g.nodes[p->second];
    for (const auto& [key, attr] : n.attributes) {
      if (attr.kind == Attribute::Kind::kGraph || attr.kind == Attribute::Kind::kGraphs) return std::nullopt;
    }
    if (!nodes.insert(p->second).second) continue;
    if (nodes.size() > kMaxOwnNodes) return std::nullopt;
    if (core.count(t) && (n.op_type == "Relu" || n.op_type == "Clip") && !n.inputs.empty()) core.insert(n.inputs[0]);
    for (const auto& in : n.inputs) stack.push_back(in);
  }
  for (size_t i : nodes) m.graph.nodes.push_back(g.nodes[i]);  // std::set: graph order
  m.graph.outputs.push_back(ValueInfo{tensor, TypeInfo{}});
  try {
    layer.exec = std::make_unique<ReferenceExecutor>(m);
  } catch (const Error&) {
    return std::nullopt;
  }
  return layer;
}

// The quantization step of `tensor` in `quantized`: the scalar scale of the
// DequantizeLinear that produces it, 0 when there is none.
double output_step(const Graph& g, const std::unordered_map<std::string, size_t>& producer, const std::string& t) {
  auto p = producer.find(t);
  if (p == producer.end()) return 0;
  const Node& n = g.nodes[p->second];
  if (n.op_type != "DequantizeLinear" || n.inputs.size() < 2) return 0;
  auto s = g.initializers.find(n.inputs[1]);
  if (s == g.initializers.end() || s->second.numel() != 1 || s->second.dtype() != DType::kFloat32) return 0;
  return s->second.data<float>()[0];
}

// Runs `exec`, keeping (cloned) the float outputs named in `wanted`.
std::unordered_map<std::string, Tensor> capture(ReferenceExecutor& exec, const std::unordered_set<std::string>& wanted,
                                                const std::map<std::string, Tensor>& feed) {
  std::unordered_map<std::string, Tensor> out;
  exec.set_observer([&](const Node& node, const std::vector<Tensor>& outputs) {
    for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
      if (wanted.count(node.outputs[i]) && outputs[i].defined() && is_float(outputs[i].dtype())) {
        out[node.outputs[i]] = outputs[i].clone();
      }
    }
  });
  exec.run(feed);
  for (const auto& [name, t] : feed) {
    if (wanted.count(name)) out[name] = t;
  }
  return out;
}

bool is_near_constant(const Moments& m, double step) {
  const double var = m.variance(), mean = m.mean();
  if (var <= 1e-6 * mean * mean) return true;
  return step > 0 && std::sqrt(var) < kNearConstantSteps * step;
}

}  // namespace

std::vector<LayerError> compare_layers(const Model& fp32, const Model& quantized,
                                       const std::vector<std::pair<std::string, std::string>>& layers,
                                       SampleSource& samples, int64_t max_samples) {
  std::unordered_set<std::string> fp32_values;
  for (const auto& in : fp32.graph.inputs) fp32_values.insert(in.name);
  for (const Node& n : fp32.graph.nodes) {
    for (const auto& o : n.outputs) fp32_values.insert(o);
  }
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < quantized.graph.nodes.size(); ++i) {
    for (const auto& o : quantized.graph.nodes[i].outputs) producer[o] = i;
  }
  // FP32 values to keep: every layer output, and what the own layers read.
  std::unordered_set<std::string> wanted_fp32, wanted_q;
  std::unordered_map<std::string, OwnLayer> own;
  for (const auto& [node, tensor] : layers) {
    wanted_fp32.insert(tensor);
    wanted_q.insert(tensor);
    if (own.count(tensor)) continue;
    auto layer = make_own_layer(quantized, fp32_values, producer, tensor);
    if (!layer) continue;
    for (const auto& [in, source] : layer->feeds) wanted_fp32.insert(source);
    own.emplace(tensor, std::move(*layer));
  }
  ReferenceExecutor a(fp32), b(quantized);
  std::unordered_map<std::string, Sums> accumulated, own_sums;
  std::unordered_map<std::string, Moments> moments;
  samples.reset();
  for (int64_t s = 0; s < max_samples; ++s) {
    auto feed = samples.next();
    if (!feed) break;
    auto x = capture(a, wanted_fp32, *feed);
    auto y = capture(b, wanted_q, *feed);
    std::unordered_set<std::string> measured;  // a tensor can be listed twice
    for (const auto& [node, tensor] : layers) {
      if (!measured.insert(tensor).second) continue;
      auto xi = x.find(tensor);
      if (xi == x.end() || xi->second.dtype() != DType::kFloat32) continue;
      const Tensor& xt = xi->second;
      const auto n = static_cast<size_t>(xt.numel());
      auto yi = y.find(tensor);
      if (yi != y.end() && yi->second.dtype() == DType::kFloat32 && yi->second.numel() == xt.numel()) {
        accumulated[tensor].add(xt.data<float>(), yi->second.data<float>(), n);
      }
      moments[tensor].add(xt.data<float>(), n);
      auto o = own.find(tensor);
      if (o == own.end()) continue;
      std::map<std::string, Tensor> own_feed;
      bool complete = true;
      for (const auto& [in, source] : o->second.feeds) {
        auto v = x.find(source);
        if (v == x.end()) {
          complete = false;
          break;
        }
        own_feed[in] = v->second;
      }
      if (!complete) continue;
      std::map<std::string, Tensor> result;
      try {
        result = o->second.exec->run(own_feed);
      } catch (const Error&) {
        own.erase(o);  // not measurable after all: leave it NaN
        own_sums.erase(tensor);
        continue;
      }
      auto r = result.find(tensor);
      if (r == result.end() || r->second.dtype() != DType::kFloat32 || r->second.numel() != xt.numel()) continue;
      own_sums[tensor].add(xt.data<float>(), r->second.data<float>(), n);
    }
  }
  std::vector<LayerError> out;
  std::unordered_set<std::string> done;
  for (const auto& [node, tensor] : layers) {
    auto it = accumulated.find(tensor);
    if (it == accumulated.end() || !done.insert(node + '\n' + tensor).second) continue;
    LayerError e;
    e.node = node;
    e.tensor = tensor;
    e.sqnr_db = it->second.sqnr_db();
    e.cosine = it->second.cosine();
    auto o = own_sums.find(tensor);
    if (o != own_sums.end()) {
      e.own_sqnr_db = o->second.sqnr_db();
      e.own_cosine = o->second.cosine();
    }
    const Moments& m = moments[tensor];
    e.fp32_std = std::sqrt(m.variance());
    e.output_step = output_step(quantized.graph, producer, tensor);
    e.near_constant = is_near_constant(m, e.output_step);
    out.push_back(e);
  }
  auto key = [](const LayerError& e) { return std::isnan(e.own_sqnr_db) ? e.sqnr_db : e.own_sqnr_db; };
  std::stable_sort(out.begin(), out.end(), [&](const LayerError& l, const LayerError& r) {
    if (l.near_constant != r.near_constant) return r.near_constant;
    return key(l) < key(r);
  });
  return out;
}

}  // namespace kvant
