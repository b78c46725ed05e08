// PartialModel models for per-layer sensitivity (quant/sensitivity.h).
//
// For each layer a partial model is built once per chunk of samples:
//   replacement  the nodes that change: layer i's quantized subgraph (taken
//                from the quantized model, walking back from T to the
//                float values its input QuantizeLinears read), or for
//                leave-one-out layer i's FP32 op and fused activation;
//   downstream   the base model's nodes (the FP32 model, or for
//                leave-one-out the quantized one) that read, directly or
//                through others, a value the replacement writes, minus the
//                base nodes the replacement stands in for (those writing a
//                value it writes), pruned to what the scored output needs;
//   inputs       every other value these nodes read: initializers are
//                copied, the rest fed from the base model's values kept for
//                the sample ("x/float", what an input's QuantizeLinear
//                reads, is the base's x).
// A graph input x quantized by the subgraph ("x/dq", qdq.h) is read as
// "x/dq" by every downstream base node, as in the QDQ model.
#include "quant/partial_model.h"

#include <algorithm>
#include <map>

#include "kvant/status.h"

namespace kvant {

namespace {

constexpr size_t kMaxLayerNodes = 64;  // a quantized layer bigger than this is not a layer

bool has_subgraph(const Node& n) {
  for (const auto& [key, attr] : n.attributes) {
    if (attr.kind == Attribute::Kind::kGraph || attr.kind == Attribute::Kind::kGraphs) return true;
  }
  return false;
}

const ValueInfo* find_value_info(const Graph& g, const std::string& name) {
  auto it = g.value_info.find(name);
  if (it != g.value_info.end()) return &it->second;
  for (const auto& in : g.inputs) {
    if (in.name == name) return &in;
  }
  for (const auto& o : g.outputs) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

// Multiply-adds of a node, roughly: its first output's size (from the
// shapes inference found; 1 when unknown), times the reduction length of a
// Conv/Gemm/MatMul weight found among the initializers (under its own name,
// its quantized "/q" name or the replacement's "#other" name).
int64_t node_work(const Node& n, const Graph& g) {
  int64_t out = 1;
  if (!n.outputs.empty()) {
    auto vi = g.value_info.find(n.outputs[0]);
    if (vi != g.value_info.end() && vi->second.type.has_shape) {
      for (const Dim& d : vi->second.type.dims) out *= d.known() && d.value > 0 ? d.value : 1;
    }
  }
  if ((n.op_type != "Conv" && n.op_type != "Gemm" && n.op_type != "MatMul") || n.inputs.size() < 2) return out;
  for (const std::string& name : {n.inputs[1], n.inputs[1] + "/q", n.inputs[1] + "#other"}) {
    auto w = g.initializers.find(name);
    if (w == g.initializers.end() || w->second.rank() < 2) continue;
    const Tensor& t = w->second;
    int64_t k = 1;
    if (n.op_type == "Conv") {
      k = t.dim(0) > 0 ? t.numel() / t.dim(0) : 1;
    } else if (n.op_type == "Gemm") {
      k = n.attr_int("transB", 0) ? t.dim(1) : t.dim(0);
    } else {
      k = t.dim(t.rank() - 2);
    }
    return out * std::max<int64_t>(1, k);
  }
  return out;
}

}  // namespace

GraphIndex::GraphIndex(const Graph& g) {
  for (const auto& in : g.inputs) values.insert(in.name);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& o : g.nodes[i].outputs) {
      producer[o] = i;
      values.insert(o);
    }
  }
}

// Layer i's quantized subgraph in `q`: the nodes from T back to the float
// values its QuantizeLinears read (as layer_report.cc's own layer).
std::optional<std::vector<Node>> quantized_subgraph(const Model& q, const GraphIndex& qi, const GraphIndex& fi,
                                                    const std::string& tensor) {
  const Graph& g = q.graph;
  std::set<size_t> nodes;
  std::unordered_set<std::string> seen;
  std::unordered_set<std::string> core = {tensor, tensor + "/float"};
  std::vector<std::string> stack = {tensor};
  while (!stack.empty()) {
    const std::string t = stack.back();
    stack.pop_back();
    if (t.empty() || !seen.insert(t).second || g.initializers.count(t) || g.find_input(t)) continue;
    if (!core.count(t) && t.ends_with("/float") && fi.values.count(t.substr(0, t.size() - 6))) continue;
    auto p = qi.producer.find(t);
    if (p == qi.producer.end()) return std::nullopt;
    const Node& n = g.nodes[p->second];
    if (!core.count(t) && fi.values.count(t) && n.op_type != "QuantizeLinear" && n.op_type != "DequantizeLinear") {
      continue;  // a float value the layer reads as it is (weight-only: the activation)
    }
    if (has_subgraph(n)) return std::nullopt;
    if (!nodes.insert(p->second).second) continue;
    if (nodes.size() > kMaxLayerNodes) return std::nullopt;
    if (core.count(t) && (n.op_type == "Relu" || n.op_type == "Clip") && !n.inputs.empty()) core.insert(n.inputs[0]);
    for (const auto& in : n.inputs) stack.push_back(in);
  }
  std::vector<Node> out;
  for (size_t i : nodes) out.push_back(g.nodes[i]);  // std::set: graph order
  return out;
}

// See the header comment. `other` holds the replacement's initializers and
// value types.
std::optional<PartialModel> build_partial(const Model& base, const GraphIndex& bi, const Model& other,
                                          const std::vector<Node>& replacement, const std::string& output,
                                          std::string* why) {
  const Graph& bg = base.graph;
  std::unordered_set<std::string> written;
  for (const Node& n : replacement) {
    for (const auto& o : n.outputs) written.insert(o);
  }
  // Base values that now read differently, and the name they are read by.
  std::unordered_map<std::string, std::string> rename;
  for (const auto& o : written) {
    if (bi.values.count(o)) rename[o] = o;
    if (o.ends_with("/dq")) {
      const std::string x = o.substr(0, o.size() - 3);
      if (bg.find_input(x) && !written.count(x)) rename[x] = o;
    }
  }
  // The replacement reads its own initializers under names of their own
  // where the base model uses the name for something else (leave-one-out:
  // "W" is the FP32 weight there, the dequantized one in the base).
  std::map<std::string, Tensor> own_initializers;
  std::vector<Node> nodes;
  // Constants the base computes (a weight's DequantizeLinear) first: pruned
  // below unless a downstream node reads them.
  std::unordered_set<std::string> constant;
  for (const Node& n : bg.nodes) {
    bool is_constant = !has_subgraph(n) && !n.outputs.empty();
    for (const auto& in : n.inputs)
      is_constant = is_constant && (in.empty() || bg.initializers.count(in) || constant.count(in));
    bool stands_in = false;
    for (const auto& o : n.outputs) stands_in = stands_in || written.count(o);
    if (!is_constant || stands_in) continue;
    for (const auto& o : n.outputs) constant.insert(o);
    nodes.push_back(n);
  }
  for (Node n : replacement) {
    for (auto& in : n.inputs) {
      auto oi = other.graph.initializers.find(in);
      if (oi == other.graph.initializers.end()) continue;
      if (bi.values.count(in) || bg.initializers.count(in)) in += "#other";
      own_initializers[in] = oi->second;
    }
    nodes.push_back(std::move(n));
  }
  for (const Node& n : bg.nodes) {  // topological order: one pass finds everything downstream
    bool stands_in = false, reads = false;
    for (const auto& o : n.outputs) stands_in = stands_in || written.count(o);
    for (const auto& in : n.inputs) reads = reads || rename.count(in);
    if (stands_in || !reads) continue;
    if (has_subgraph(n)) {
      *why = "control flow (" + n.describe() + ") downstream";
      return std::nullopt;
    }
    Node copy = n;
    for (auto& in : copy.inputs) {
      auto r = rename.find(in);
      if (r != rename.end()) in = r->second;
    }
    for (const auto& o : n.outputs) rename[o] = o;
    nodes.push_back(std::move(copy));
  }
  PartialModel p;
  // Prune to what the output needs.
  std::unordered_set<std::string> needed = {output};
  std::vector<bool> keep(nodes.size(), false);
  for (size_t k = nodes.size(); k-- > 0;) {
    for (const auto& o : nodes[k].outputs) keep[k] = keep[k] || needed.count(o);
    if (!keep[k]) continue;
    for (const auto& in : nodes[k].inputs) needed.insert(in);
  }
  Model& m = p.model;
  m.ir_version = base.ir_version;
  m.opset_imports = base.opset_imports;
  for (const auto& [domain, version] : other.opset_imports) {
    m.opset_imports[domain] = std::max(m.opset_imports[domain], version);
  }
  std::unordered_set<std::string> produced;
  for (size_t k = 0; k < nodes.size(); ++k) {
    if (!keep[k]) continue;
    for (const auto& o : nodes[k].outputs) produced.insert(o);
    m.graph.nodes.push_back(nodes[k]);
  }
  if (!produced.count(output)) {
    p.affects_output = false;
    return p;
  }
  p.nodes = static_cast<int64_t>(m.graph.nodes.size());
  std::unordered_set<std::string> done;
  auto type_of = [&](const std::string& name) -> const ValueInfo* {
    const ValueInfo* v = find_value_info(other.graph, name);
    return v ? v : find_value_info(bg, name);
  };
  for (const Node& n : m.graph.nodes) {
    for (const auto& in : n.inputs) {
      if (in.empty() || produced.count(in) || !done.insert(in).second) continue;
      auto oi = own_initializers.find(in);
      auto binit = bg.initializers.find(in);
      if (oi != own_initializers.end()) {
        m.graph.initializers[in] = oi->second;
        continue;
      }
      if (binit != bg.initializers.end()) {
        m.graph.initializers[in] = binit->second;
        continue;
      }
      std::string source = in;
      if (in.ends_with("/float") && bi.values.count(in.substr(0, in.size() - 6))) source = in.substr(0, in.size() - 6);
      if (!bi.values.count(source)) {
        *why = "its subgraph reads \"" + in + "\", which the model does not compute";
        return std::nullopt;
      }
      const ValueInfo* vi = type_of(source);
      m.graph.inputs.push_back(ValueInfo{in, vi ? vi->type : TypeInfo{}});
      p.feeds.emplace_back(in, source);
    }
  }
  for (const Node& n : m.graph.nodes) {
    for (const auto& o : n.outputs) {
      if (const ValueInfo* vi = type_of(o)) m.graph.value_info[o] = ValueInfo{o, vi->type};
    }
  }
  for (const Node& n : m.graph.nodes) p.work += node_work(n, m.graph);
  const ValueInfo* vo = type_of(output);
  m.graph.outputs.push_back(ValueInfo{output, vo ? vo->type : TypeInfo{}});
  return p;
}

// The base model with every value in `keep` as an extra output.
Model with_outputs(const Model& model, const std::set<std::string>& keep) {
  Model m = model;
  std::unordered_set<std::string> have;
  for (const auto& o : m.graph.outputs) have.insert(o.name);
  for (const auto& name : keep) {
    if (have.count(name) || m.graph.find_input(name) || m.graph.initializers.count(name)) continue;
    const ValueInfo* vi = find_value_info(model.graph, name);
    m.graph.outputs.push_back(ValueInfo{name, vi ? vi->type : TypeInfo{}});
  }
  return m;
}

}  // namespace kvant
