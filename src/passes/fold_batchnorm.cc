// fold_batchnorm: BatchNormalization after Conv or Gemm folded into its
// weights. Per output channel o (BN's axis 1):
//   s[o] = gamma[o] / sqrt(var[o] + eps)
//   BN(y)[o] = (y[o] - mean[o]) * s[o] + beta[o]
// Conv(x, W, b) -> BN  ==>  Conv(x, W', b')
//   W'[o, ...] = W[o, ...] * s[o]
//   b'[o]      = (b[o] - mean[o]) * s[o] + beta[o]        (b = 0 when absent)
// Gemm(A, B, C; alpha, beta_g, transB) -> BN, Y[m, n] = alpha * (A B)[m, n] + beta_g * C[m, n]
//   ==>  Gemm(A, B', C'; alpha, beta_g = 1, transB)
//   B'[k, n] = B[k, n] * s[n]   (transB = 0; B'[n, k] = B[n, k] * s[n] when transB = 1)
//   C'[m, n] = beta_g * C[m, n] * s[n] + (beta[n] - mean[n] * s[n])   (C = 0 when absent;
//   C' keeps C's rows: [N] for a missing, scalar or [N] C, [rows, N] for a rank-2 C)
// Legal only when: the Conv/Gemm output is read by the BN alone and is no
// graph output; W (B), b (C), gamma, beta, mean, var are float32 initializers
// that are not graph inputs; BN is in inference mode (training_mode 0,
// is_test / spatial not saying otherwise) and only its first output is used.
// New weights get new names (the old ones may be shared; unused ones are
// removed by eliminate_dead_nodes). Conv's output takes the BN's output name.
#include <cmath>
#include <unordered_set>

#include "passes/pass.h"

namespace kvant {

namespace {

const Tensor* constant_f32(const Graph& graph, const std::string& name) {
  if (name.empty() || graph.find_input(name) != nullptr) return nullptr;
  auto it = graph.initializers.find(name);
  if (it == graph.initializers.end() || it->second.dtype() != DType::kFloat32) return nullptr;
  return &it->second;
}

struct BnParams {
  std::vector<float> scale;  // s[o]
  std::vector<float> shift;  // beta[o] - mean[o] * s[o]
};

// The BN's per-channel scale and shift, when it is a legal fold target with
// `channels` channels.
bool bn_params(const Graph& graph, const Node& bn, const std::unordered_map<std::string, int>& reads, int64_t channels,
               BnParams& out) {
  if (bn.inputs.size() != 5 || bn.outputs.empty() || bn.outputs[0].empty()) return false;
  for (size_t i = 1; i < bn.outputs.size(); ++i) {
    if (!bn.outputs[i].empty() && reads.count(bn.outputs[i])) return false;
  }
  if (bn.attr_int("training_mode", 0) != 0 || bn.attr_int("is_test", 1) == 0 || bn.attr_int("spatial", 1) == 0) {
    return false;
  }
  const Tensor* t[4];
  for (int i = 0; i < 4; ++i) {
    t[i] = constant_f32(graph, bn.inputs[static_cast<size_t>(i) + 1]);
    if (t[i] == nullptr || t[i]->numel() != channels || t[i]->rank() != 1) return false;
  }
  const double eps = bn.attr_float("epsilon", 1e-5f);
  const float *gamma = t[0]->data<float>(), *beta = t[1]->data<float>(), *mean = t[2]->data<float>(),
              *var = t[3]->data<float>();
  out.scale.resize(static_cast<size_t>(channels));
  out.shift.resize(static_cast<size_t>(channels));
  for (int64_t o = 0; o < channels; ++o) {
    const double s = gamma[o] / std::sqrt(static_cast<double>(var[o]) + eps);
    out.scale[static_cast<size_t>(o)] = static_cast<float>(s);
    out.shift[static_cast<size_t>(o)] = static_cast<float>(beta[o] - mean[o] * s);
  }
  return true;
}

// `used`: the names in use, extended with each weight a fold adds (one set
// per pass, not one graph walk per name).
std::string add_weight(Graph& graph, UniqueNames& used, const std::string& base, Tensor t) {
  const std::string name = used.make(base);
  graph.initializers[name] = std::move(t);
  return name;
}

bool fold_into_conv(Graph& graph, Node& conv, Node& bn, const std::unordered_map<std::string, int>& reads,
                    UniqueNames& used) {
  const Tensor* w = constant_f32(graph, conv.inputs.size() > 1 ? conv.inputs[1] : "");
  if (w == nullptr || w->rank() < 3) return false;
  const bool has_bias = conv.inputs.size() > 2 && !conv.inputs[2].empty();
  const Tensor* b = has_bias ? constant_f32(graph, conv.inputs[2]) : nullptr;
  const int64_t channels = w->dim(0);
  if (has_bias && (b == nullptr || b->numel() != channels)) return false;
  BnParams p;
  if (!bn_params(graph, bn, reads, channels, p)) return false;

  Tensor w2 = w->clone();
  const int64_t per_channel = channels == 0 ? 0 : w->numel() / channels;
  float* wd = w2.data<float>();
  for (int64_t o = 0; o < channels; ++o) {
    for (int64_t k = 0; k < per_channel; ++k) wd[o * per_channel + k] *= p.scale[static_cast<size_t>(o)];
  }
  Tensor b2(DType::kFloat32, {channels});
  float* bd = b2.data<float>();
  for (int64_t o = 0; o < channels; ++o) {
    const float bias = b ? b->data<float>()[o] : 0.0f;
    bd[o] = bias * p.scale[static_cast<size_t>(o)] + p.shift[static_cast<size_t>(o)];
  }
  conv.inputs.resize(3);
  conv.inputs[1] = add_weight(graph, used, conv.inputs[1] + "_bnfold", std::move(w2));
  conv.inputs[2] =
      add_weight(graph, used, (has_bias ? conv.inputs[2] : conv.name + "_bias") + "_bnfold", std::move(b2));
  return true;
}

bool fold_into_gemm(Graph& graph, Node& gemm, Node& bn, const std::unordered_map<std::string, int>& reads,
                    UniqueNames& used) {
  const Tensor* bw = constant_f32(graph, gemm.inputs.size() > 1 ? gemm.inputs[1] : "");
  if (bw == nullptr || bw->rank() != 2) return false;
  const bool trans_b = gemm.attr_int("transB", 0) != 0;
  const int64_t n = trans_b ? bw->dim(0) : bw->dim(1);
  const int64_t k = trans_b ? bw->dim(1) : bw->dim(0);
  const bool has_c = gemm.inputs.size() > 2 && !gemm.inputs[2].empty();
  const Tensor* c = has_c ? constant_f32(graph, gemm.inputs[2]) : nullptr;
  if (has_c && c == nullptr) return false;
  // C' rows: 1 ([N]) unless C is [rows, 1 or N].
  int64_t rows = 0, c_cols = 1;
  if (c != nullptr) {
    if (c->rank() > 2 || (c->rank() >= 1 && c->shape().back() != 1 && c->shape().back() != n)) return false;
    c_cols = c->rank() >= 1 ? c->shape().back() : 1;
    rows = c->rank() == 2 ? c->dim(0) : 0;
  }
  BnParams p;
  if (!bn_params(graph, bn, reads, n, p)) return false;

  Tensor b2 = bw->clone();
  float* bd = b2.data<float>();
  for (int64_t kk = 0; kk < k; ++kk) {
    for (int64_t j = 0; j < n; ++j) {
      const int64_t idx = trans_b ? j * k + kk : kk * n + j;
      bd[idx] *= p.scale[static_cast<size_t>(j)];
    }
  }
  const float beta_g = gemm.attr_float("beta", 1.0f);
  Tensor c2(DType::kFloat32, rows > 0 ? Shape{rows, n} : Shape{n});
  float* cd = c2.data<float>();
  const int64_t out_rows = rows > 0 ? rows : 1;
  for (int64_t r = 0; r < out_rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      const float cv = c ? c->data<float>()[r * c_cols + (c_cols == 1 ? 0 : j)] : 0.0f;
      cd[r * n + j] = beta_g * cv * p.scale[static_cast<size_t>(j)] + p.shift[static_cast<size_t>(j)];
    }
  }
  gemm.inputs.resize(3);
  gemm.inputs[1] = add_weight(graph, used, gemm.inputs[1] + "_bnfold", std::move(b2));
  gemm.inputs[2] = add_weight(graph, used, (has_c ? gemm.inputs[2] : gemm.name + "_bias") + "_bnfold", std::move(c2));
  Attribute beta_attr;
  beta_attr.kind = Attribute::Kind::kFloat;
  beta_attr.f = 1.0f;
  gemm.attributes["beta"] = beta_attr;
  return true;
}

}  // namespace

bool fold_batchnorm(Graph& graph) {
  bool changed = false;
  for (Node& node : graph.nodes) {
    for (Graph* sub : subgraphs_of(node)) changed = fold_batchnorm(*sub) || changed;
  }
  // Reads, BN readers and used names are computed once and the folded BNs
  // erased at the end: O(nodes), where recounting reads per Conv/Gemm and
  // erasing per fold was O(nodes^2). A fold changes no other candidate's
  // facts: it touches one Conv/Gemm, its own new weights and one BN.
  const auto reads = count_reads(graph);
  std::unordered_set<std::string> outputs;
  for (const auto& o : graph.outputs) outputs.insert(o.name);
  std::unordered_map<std::string, size_t> bn_reader;  // value -> the BN reading it
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    const Node& n = graph.nodes[i];
    if (n.op_type == "BatchNormalization" && n.domain.empty() && !n.inputs.empty()) bn_reader.emplace(n.inputs[0], i);
  }
  UniqueNames used(graph);
  std::vector<bool> removed(graph.nodes.size(), false);
  bool removed_any = false;
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    Node& node = graph.nodes[i];
    if (!node.domain.empty() || (node.op_type != "Conv" && node.op_type != "Gemm")) continue;
    if (node.outputs.size() != 1 || node.outputs[0].empty()) continue;
    // The BN reading the output when it is that output's only reader.
    const std::string& value = node.outputs[0];
    auto r = reads.find(value);
    auto b = bn_reader.find(value);
    if (r == reads.end() || r->second != 1 || outputs.count(value) || b == bn_reader.end() || removed[b->second]) {
      continue;
    }
    Node& bn = graph.nodes[b->second];
    const bool folded = node.op_type == "Conv" ? fold_into_conv(graph, node, bn, reads, used)
                                               : fold_into_gemm(graph, node, bn, reads, used);
    if (!folded) continue;
    // The Conv/Gemm now writes what the BN wrote; the BN goes.
    graph.value_info.erase(node.outputs[0]);
    node.outputs[0] = bn.outputs[0];
    removed[b->second] = removed_any = true;
  }
  if (!removed_any) return changed;
  std::vector<Node> kept;
  kept.reserve(graph.nodes.size());
  for (size_t i = 0; i < graph.nodes.size(); ++i) {
    if (!removed[i]) kept.push_back(std::move(graph.nodes[i]));
  }
  graph.nodes = std::move(kept);
  return true;
}

}  // namespace kvant
