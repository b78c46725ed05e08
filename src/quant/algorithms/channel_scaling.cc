// Per-input-channel scaling of linear layers; the algebra and the legality
// rules are in channel_scaling.h.
#include "quant/algorithms/channel_scaling.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_map>

#include "kvant/status.h"
#include "passes/pass.h"
#include "quant/calibration_run.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

const Tensor* constant_f32(const Graph& graph, const std::string& name) {
  if (name.empty() || graph.find_input(name) != nullptr) return nullptr;
  auto it = graph.initializers.find(name);
  if (it == graph.initializers.end() || it->second.dtype() != DType::kFloat32) return nullptr;
  return &it->second;
}

bool is_constant(const Graph& graph, const std::string& name) {
  return graph.initializers.count(name) != 0 && graph.find_input(name) == nullptr;
}

// One value per channel of the last axis: [K], [1, K], [1, 1, K] ...
bool per_channel(const Tensor* c, int64_t k) {
  return c != nullptr && c->rank() >= 1 && c->numel() == k && c->dim(c->rank() - 1) == k;
}

// Which elements of a tensor belong to channel c of the scaled axis.
enum class Axis {
  kChannels,  // a [.., K] vector: element c
  kColumns,   // [J, K]: column c
  kRows,      // [K, J]: row c
};

// Multiplies channel c's elements of `t` by f[c], as a new tensor.
Tensor scaled(const Tensor& t, Axis axis, const std::vector<double>& f) {
  Tensor out = t.clone();
  float* p = out.data<float>();
  const auto k = static_cast<int64_t>(f.size());
  for (int64_t e = 0; e < out.numel(); ++e) {
    const int64_t c = axis == Axis::kChannels ? e : axis == Axis::kColumns ? e % k : e / (out.numel() / k);
    p[e] = static_cast<float>(static_cast<double>(p[e]) * f[static_cast<size_t>(c)]);
  }
  return out;
}

struct Edit {
  size_t node;
  size_t slot;
  Axis axis;
};

struct GraphIndex {
  std::unordered_map<std::string, int> reads;                    // count_reads
  std::unordered_map<std::string, std::vector<size_t>> readers;  // main-graph nodes reading a value, per slot
  std::unordered_map<std::string, size_t> producer;
};

GraphIndex index_graph(const Graph& graph) {
  GraphIndex ix;
  ix.reads = count_reads(graph);
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    for (const std::string& in : graph.nodes[i].inputs) {
      if (!in.empty()) ix.readers[in].push_back(i);
    }
    for (const std::string& out : graph.nodes[i].outputs) {
      if (!out.empty()) ix.producer[out] = i;
    }
  }
  return ix;
}

// Readers that use only a value's shape, not its numbers.
bool reads_shape_only(const Node& n) { return n.domain.empty() && (n.op_type == "Shape" || n.op_type == "Size"); }

// The edits that divide value `x` (last axis k) by a per-channel scale at its
// producer, or false with why not. `allowed`: the nodes that may read x.
bool plan_fold(const Graph& graph, const GraphIndex& ix, const std::string& x, const std::set<size_t>& allowed,
               int64_t k, std::vector<Edit>& edits, std::string& where) {
  if (graph.find_input(x) != nullptr) {
    where = "\"" + x + "\" is a graph input";
    return false;
  }
  if (is_graph_output(graph, x)) {
    where = "\"" + x + "\" is a graph output";
    return false;
  }
  int node_reads = 0;
  if (auto r = ix.readers.find(x); r != ix.readers.end()) {
    for (size_t i : r->second) {
      const Node& reader = graph.nodes[i];
      if (!allowed.count(i) && !reads_shape_only(reader)) {
        where = "\"" + x + "\" is also read by " + reader.describe();
        return false;
      }
      ++node_reads;
    }
  }
  if (auto r = ix.reads.find(x); r != ix.reads.end() && r->second != node_reads) {
    where = "\"" + x + "\" is also read inside a subgraph";
    return false;
  }
  auto p = ix.producer.find(x);
  if (p == ix.producer.end()) {
    where = "\"" + x + "\" has no producer in the main graph";
    return false;
  }
  const size_t at = p->second;
  const Node& n = graph.nodes[at];
  const std::string& op = n.op_type;
  const auto fail = [&](const std::string& why) {
    where = "\"" + x + "\" comes from " + n.describe() + ", " + why;
    return false;
  };
  if (!n.domain.empty()) return fail("a custom-domain operator");
  if (n.outputs.empty() || n.outputs[0] != x) return fail("not as its first output");
  if (op == "LayerNormalization") {
    if (n.attr_int("axis", -1) != -1) return fail("normalizing more than the last axis");
    if (n.inputs.size() < 2 || !per_channel(constant_f32(graph, n.inputs[1]), k))
      return fail("whose scale is not a constant per channel");
    edits.push_back({at, 1, Axis::kChannels});
    if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
      if (!per_channel(constant_f32(graph, n.inputs[2]), k)) return fail("whose bias is not a constant per channel");
      edits.push_back({at, 2, Axis::kChannels});
    }
    where = n.describe();
    return true;
  }
  // Relu(y) / s = Relu(y / s) and LeakyRelu likewise, for s > 0.
  if ((op == "Relu" || op == "LeakyRelu") && !n.inputs.empty()) {
    if (!plan_fold(graph, ix, n.inputs[0], {at}, k, edits, where)) return fail("and " + where);
    return true;
  }
  // (a * b) / s = a * (b / s): two computed factors (SwiGLU's silu(gate) * up),
  // the division folded into whichever one allows it, b first.
  if (op == "Mul" && n.inputs.size() == 2 && n.inputs[0] != n.inputs[1] && !is_constant(graph, n.inputs[0]) &&
      !is_constant(graph, n.inputs[1])) {
    std::string why;
    for (size_t slot : {size_t{1}, size_t{0}}) {
      std::vector<Edit> up;
      if (plan_fold(graph, ix, n.inputs[slot], {at}, k, up, where)) {
        edits.insert(edits.end(), up.begin(), up.end());
        return true;
      }
      if (why.empty()) why = where;
    }
    return fail("and " + why);
  }
  if ((op == "Mul" || op == "Add") && n.inputs.size() == 2) {
    for (size_t slot : {size_t{1}, size_t{0}}) {
      const std::string& other = n.inputs[1 - slot];
      if (!per_channel(constant_f32(graph, n.inputs[slot]), k) || is_constant(graph, other)) continue;
      // (y * g) / s = y * (g / s);  (y + c) / s = y / s + c / s, and y / s
      // is folded further up.
      if (op == "Add") {
        std::vector<Edit> up;
        std::string up_where;
        if (!plan_fold(graph, ix, other, {at}, k, up, up_where)) return fail("and " + up_where);
        edits.insert(edits.end(), up.begin(), up.end());
        edits.push_back({at, slot, Axis::kChannels});
        where = up_where;
        return true;
      }
      edits.push_back({at, slot, Axis::kChannels});
      where = n.describe();
      return true;
    }
    return fail("not by a constant per channel of the last axis");
  }
  if (op == "MatMul" || op == "Gemm") {
    const bool trans_b = op == "Gemm" && n.attr_int("transB", 0) != 0;
    const Tensor* v = n.inputs.size() > 1 ? constant_f32(graph, n.inputs[1]) : nullptr;
    if (v == nullptr || v->rank() != 2 || v->dim(trans_b ? 0 : 1) != k || is_constant(graph, n.inputs[0]))
      return fail("whose weight is not a constant matrix");
    edits.push_back({at, 1, trans_b ? Axis::kRows : Axis::kColumns});
    if (op == "Gemm" && n.inputs.size() > 2 && !n.inputs[2].empty()) {
      const Tensor* c = constant_f32(graph, n.inputs[2]);
      if (!per_channel(c, k) || c->rank() > 2) return fail("whose bias is not a constant per output column");
      edits.push_back({at, 2, Axis::kChannels});
    }
    where = n.describe();
    return true;
  }
  return fail("which a per-channel scale does not pass through");
}

// Initializer `node.inputs[slot]` replaced by `t`: under a new name when
// something else reads the old one too.
void replace_initializer(Graph& graph, Node& node, size_t slot, Tensor t, const GraphIndex& ix, UniqueNames& names) {
  std::string& name = node.inputs[slot];
  auto r = ix.reads.find(name);
  const bool shared = (r != ix.reads.end() && r->second > 1) || is_graph_output(graph, name);
  if (shared) name = names.make(name + "_scaled");
  graph.initializers[name] = std::move(t);
}

}  // namespace

std::vector<ScaleGroup> find_scale_groups(const Graph& graph, const std::set<std::string>& excluded) {
  std::map<std::string, ScaleGroup> by_input;
  std::vector<std::string> order;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& n = graph.nodes[i];
    if (!n.domain.empty() || (n.op_type != "MatMul" && n.op_type != "Gemm") || n.inputs.size() < 2) continue;
    if (excluded.count(n.name) || (n.op_type == "Gemm" && n.attr_int("transA", 0) != 0)) continue;
    const Tensor* w = constant_f32(graph, n.inputs[1]);
    if (w == nullptr || w->rank() != 2 || w->numel() == 0) continue;
    const std::string& x = n.inputs[0];
    if (x.empty() || graph.initializers.count(x)) continue;
    ScaleGroup& g = by_input[x];
    if (g.input.empty()) {
      g.input = x;
      order.push_back(x);
    }
    g.layers.push_back(i);
  }
  std::vector<ScaleGroup> groups;
  for (const std::string& x : order) groups.push_back(std::move(by_input[x]));
  return groups;
}

int64_t layer_in_features(const Graph& graph, const Node& node) {
  const Tensor& w = graph.initializers.at(node.inputs[1]);
  return node.op_type == "Gemm" && node.attr_int("transB", 0) != 0 ? w.dim(1) : w.dim(0);
}

std::vector<float> layer_weight_kn(const Graph& graph, const Node& node, int64_t* n) {
  const Tensor& w = graph.initializers.at(node.inputs[1]);
  const float* src = w.data<float>();
  if (node.op_type == "Gemm" && node.attr_int("transB", 0) != 0) {
    const int64_t rows = w.dim(0), k = w.dim(1);
    std::vector<float> out(static_cast<size_t>(w.numel()));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < k; ++c) out[static_cast<size_t>(c * rows + r)] = src[r * k + c];
    }
    *n = rows;
    return out;
  }
  *n = w.dim(1);
  return std::vector<float>(src, src + w.numel());
}

std::map<std::string, ChannelStats> collect_channel_stats(const Model& model, SampleSource& calibration,
                                                          const std::set<std::string>& tensors, bool moments,
                                                          const QuantizeOptions& options, int64_t sample_rows) {
  std::map<std::string, ChannelStats> stats;
  std::mt19937_64 rng(12345);
  auto observe = [&](const std::string& name, const Tensor& t) {
    if (!tensors.count(name) || t.dtype() != DType::kFloat32 || t.rank() < 1 || t.shape().back() < 1) return;
    const int64_t k = t.shape().back();
    ChannelStats& s = stats[name];
    if (s.k == 0) {
      s.k = k;
      s.abs_sum.assign(static_cast<size_t>(k), 0.0);
      s.abs_max.assign(static_cast<size_t>(k), 0.0);
      if (moments) {
        s.moment.k = k;
        s.moment.h.assign(static_cast<size_t>(k * k), 0.0);
      }
    } else if (s.k != k) {
      throw Error(ErrorCode::kInvalidArgument, "tensor \"" + name + "\" changed its last dim from " +
                                                   std::to_string(s.k) + " to " + std::to_string(k));
    }
    const float* x = t.data<float>();
    const int64_t rows = t.numel() / k;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < k; ++c) {
        const double v = std::fabs(static_cast<double>(x[r * k + c]));
        s.abs_sum[static_cast<size_t>(c)] += v;
        s.abs_max[static_cast<size_t>(c)] = std::max(s.abs_max[static_cast<size_t>(c)], v);
      }
    }
    for (int64_t r = 0; r < rows && sample_rows > 0; ++r) {  // reservoir: row i kept with chance n / (i + 1)
      const int64_t seen = s.rows + r;
      int64_t slot = seen;
      if (seen >= sample_rows) slot = static_cast<int64_t>(rng() % static_cast<uint64_t>(seen + 1));
      if (slot >= sample_rows) continue;
      if (seen < sample_rows) s.sample.resize(static_cast<size_t>((seen + 1) * k));
      std::copy(x + r * k, x + (r + 1) * k, s.sample.begin() + slot * k);
    }
    s.rows += rows;
    if (moments) accumulate_moment(s.moment, x, rows);
  };
  ReferenceExecutor exec(model);
  exec.set_observer([&](const Node& node, const std::vector<Tensor>& outputs) {
    for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
      if (outputs[i].defined()) observe(node.outputs[i], outputs[i]);
    }
  });
  run_calibration_samples(exec, calibration, options, observe);
  for (const std::string& name : tensors) {
    if (!stats.count(name)) {
      throw Error(ErrorCode::kInvalidArgument,
                  "layer input \"" + name + "\" was never computed as float32 on the calibration data");
    }
  }
  if (moments) {
    for (auto& [name, s] : stats) mirror_moment(s.moment);
  }
  return stats;
}

std::vector<ScaleApplied> apply_input_scales(Graph& graph, const std::vector<ScaleGroup>& groups,
                                             const std::vector<std::vector<double>>& scales, const std::string& tag) {
  if (scales.size() != groups.size()) throw Error(ErrorCode::kInternal, "apply_input_scales: one scale per group");
  const GraphIndex ix = index_graph(graph);
  UniqueNames names(graph);
  struct PendingMul {
    size_t before;
    Node node;
  };
  std::vector<PendingMul> pending;
  std::vector<ScaleApplied> applied;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const ScaleGroup& g = groups[gi];
    const std::vector<double>& s = scales[gi];
    const auto k = static_cast<int64_t>(s.size());
    std::vector<double> inverse(s.size());
    for (size_t c = 0; c < s.size(); ++c) {
      if (!(s[c] > 0) || !std::isfinite(s[c])) {
        throw Error(ErrorCode::kInternal, "scale " + std::to_string(s[c]) + " of channel " + std::to_string(c) +
                                              " of \"" + g.input + "\" is not a positive number");
      }
      inverse[c] = 1.0 / s[c];
    }
    for (size_t i : g.layers) {
      if (layer_in_features(graph, graph.nodes[i]) != k) {
        throw Error(ErrorCode::kInternal, graph.nodes[i].describe() + " does not reduce " + std::to_string(k) +
                                              " channels of \"" + g.input + "\"");
      }
    }
    std::vector<Edit> edits;
    ScaleApplied how;
    how.folded = plan_fold(graph, ix, g.input, std::set<size_t>(g.layers.begin(), g.layers.end()), k, edits, how.into);
    for (size_t i : g.layers) {  // W_i' = diag(s) W_i
      Node& n = graph.nodes[i];
      const bool trans_b = n.op_type == "Gemm" && n.attr_int("transB", 0) != 0;
      replace_initializer(graph, n, 1,
                          scaled(graph.initializers.at(n.inputs[1]), trans_b ? Axis::kColumns : Axis::kRows, s), ix,
                          names);
    }
    if (how.folded) {
      for (const Edit& e : edits) {
        Node& n = graph.nodes[e.node];
        replace_initializer(graph, n, e.slot, scaled(graph.initializers.at(n.inputs[e.slot]), e.axis, inverse), ix,
                            names);
      }
    } else {
      Tensor inv(DType::kFloat32, {k});
      for (int64_t c = 0; c < k; ++c) inv.data<float>()[c] = static_cast<float>(inverse[static_cast<size_t>(c)]);
      Node mul;
      mul.op_type = "Mul";
      mul.name = names.make(g.input + "/" + tag);
      const std::string inv_name = names.make(g.input + "/" + tag + "_inverse_scale");
      graph.initializers[inv_name] = std::move(inv);
      const std::string out = names.make(g.input + "/" + tag + "_scaled");
      mul.inputs = {g.input, inv_name};
      mul.outputs = {out};
      for (size_t i : g.layers) graph.nodes[i].inputs[0] = out;
      pending.push_back({g.layers.front(), std::move(mul)});
    }
    applied.push_back(std::move(how));
  }
  if (!pending.empty()) {
    std::stable_sort(pending.begin(), pending.end(),
                     [](const PendingMul& a, const PendingMul& b) { return a.before < b.before; });
    std::vector<Node> nodes;
    nodes.reserve(graph.nodes.size() + pending.size());
    size_t next = 0;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
      while (next < pending.size() && pending[next].before == i) nodes.push_back(std::move(pending[next++].node));
      nodes.push_back(std::move(graph.nodes[i]));
    }
    graph.nodes = std::move(nodes);
  }
  eliminate_dead_nodes(graph);  // initializers a copy replaced
  return applied;
}

}  // namespace kvant
