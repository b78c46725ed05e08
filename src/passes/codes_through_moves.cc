// codes_through_moves: a node that only moves values, between
// DequantizeLinears and a QuantizeLinear of one and the same per-tensor
// scale and zero point, moves the 8-bit codes instead:
//
//   y = Q(M(DQ(c1; s, z), ..., DQ(ck; s, z)); s, z)   ==>   y = M(c1, ..., ck)
//
//   M: Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Slice, Identity (the
//   data operand is input 0; the others, shapes and indices, stay), Concat
//   (every input a DQ of the same s, z).
//
// Static files put a Q/DQ pair of the same scale after every such node
// (shufflenet's channel shuffle and channel Split, the Concats of UNet and
// SqueezeNet: docs/zoo.md), and without this rewrite the compiled plan
// dequantizes, moves floats and quantizes again.
//
// Legal because M commutes with the elementwise DQ (it copies elements, never
// combines them), and Q(DQ(c)) = c exactly for 8-bit codes: DQ gives
// fl((c - z) * s), |c - z| <= 255, and dividing by s (or multiplying by its
// reciprocal) errs by a few ulps, far below the 0.5 that would change the
// rounding; c is in the code range, so nothing saturates. Needs s a normal
// positive float (0, inf, NaN or subnormal scales are left alone) and the
// zero points of the same 8-bit type and value (the codes' type is then the
// Q's output type). M's float output must be read by the Q only.
//
// Also: Shape of a DQ's output reads the DQ's input (the same shape), so a DQ
// left only for a Shape (shufflenet's Split computes its bounds from Shape)
// dies. Runs on the top-level graph only.
#include <cmath>
#include <cstring>
#include <optional>
#include <set>

#include "passes/pass.h"

namespace kvant {

namespace {

bool moves_values(const Node& n) {
  static const std::set<std::string, std::less<>> ops = {"Reshape", "Transpose", "Squeeze", "Unsqueeze",
                                                         "Flatten", "Slice",     "Identity"};
  return n.domain.empty() && n.outputs.size() == 1 && !n.inputs.empty() &&
         (ops.count(n.op_type) != 0 || n.op_type == "Concat");
}

const Tensor* constant(const Graph& g, const std::string& v) {
  if (v.empty() || g.find_input(v) != nullptr) return nullptr;
  auto it = g.initializers.find(v);
  return it == g.initializers.end() ? nullptr : &it->second;
}

// Scale and zero point of a per-tensor 8-bit Q or DQ, if it is one.
struct Params {
  const Tensor* scale = nullptr;
  const Tensor* zero = nullptr;
};
std::optional<Params> per_tensor_8bit(const Graph& g, const Node& n) {
  if (!n.domain.empty() || n.inputs.size() != 3 || n.outputs.size() != 1 || n.has_attr("block_size")) {
    return std::nullopt;
  }
  Params p{constant(g, n.inputs[1]), constant(g, n.inputs[2])};
  if (p.scale == nullptr || p.zero == nullptr || p.scale->numel() != 1 || p.zero->numel() != 1) return std::nullopt;
  if (p.scale->dtype() != DType::kFloat32 || (p.zero->dtype() != DType::kUInt8 && p.zero->dtype() != DType::kInt8)) {
    return std::nullopt;
  }
  const float s = *static_cast<const float*>(p.scale->raw());
  if (!std::isnormal(s) || s <= 0.0f) return std::nullopt;
  return p;
}

bool same(const Params& a, const Params& b) {
  return a.zero->dtype() == b.zero->dtype() && std::memcmp(a.scale->raw(), b.scale->raw(), sizeof(float)) == 0 &&
         std::memcmp(a.zero->raw(), b.zero->raw(), 1) == 0;
}

}  // namespace

bool codes_through_moves(Graph& g) {
  bool changed = false;
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& o : g.nodes[i].outputs) {
      if (!o.empty()) producer[o] = i;
    }
  }
  auto reads = count_reads(g);
  std::unordered_map<std::string, size_t> reader;  // value -> a node reading it
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& in : g.nodes[i].inputs) reader[in] = i;
  }
  auto dq_of = [&](const std::string& v) -> const Node* {
    auto it = producer.find(v);
    if (it == producer.end()) return nullptr;
    const Node& d = g.nodes[it->second];
    return d.op_type == "DequantizeLinear" && d.domain.empty() ? &d : nullptr;
  };
  std::vector<bool> dead(g.nodes.size(), false);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node& n = g.nodes[i];
    if (n.op_type == "Shape" && n.domain.empty() && !n.inputs.empty()) {
      if (const Node* d = dq_of(n.inputs[0]); d != nullptr && !d->inputs.empty()) {
        --reads[n.inputs[0]];
        n.inputs[0] = d->inputs[0];
        ++reads[n.inputs[0]];
        changed = true;
      }
      continue;
    }
    if (!moves_values(n) || n.outputs[0].empty() || is_graph_output(g, n.outputs[0])) continue;
    auto r = reads.find(n.outputs[0]);
    if (r == reads.end() || r->second != 1) continue;
    auto rd = reader.find(n.outputs[0]);
    if (rd == reader.end()) continue;  // read by a subgraph capture
    const size_t qi = rd->second;
    const Node& q = g.nodes[qi];
    if (q.op_type != "QuantizeLinear" || q.inputs.empty() || q.inputs[0] != n.outputs[0]) continue;
    const auto qp = per_tensor_8bit(g, q);
    if (!qp) continue;
    const size_t data_inputs = n.op_type == "Concat" ? n.inputs.size() : 1;
    std::vector<std::string> codes;
    for (size_t k = 0; k < data_inputs; ++k) {
      const Node* d = dq_of(n.inputs[k]);
      const auto dp = d ? per_tensor_8bit(g, *d) : std::nullopt;
      if (!dp || !same(*dp, *qp)) break;
      codes.push_back(d->inputs[0]);
    }
    if (codes.size() != data_inputs) continue;
    for (size_t k = 0; k < data_inputs; ++k) {
      --reads[n.inputs[k]];
      n.inputs[k] = codes[k];
      ++reads[codes[k]];
    }
    g.value_info.erase(n.outputs[0]);
    n.outputs[0] = q.outputs[0];
    producer[n.outputs[0]] = i;
    dead[qi] = true;
    changed = true;
  }
  if (!changed) return false;
  std::vector<Node> kept;
  kept.reserve(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (!dead[i]) kept.push_back(std::move(g.nodes[i]));
  }
  g.nodes = std::move(kept);
  return true;
}

}  // namespace kvant
