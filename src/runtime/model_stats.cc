#include "runtime/model_stats.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>

namespace kvant {

namespace {

// Raised inside a layer's count when a shape is missing; becomes "unknown".
struct MissingShape {
  std::string reason;
};

// Products of dims, saturating instead of overflowing (no real model gets near).
int64_t mul(int64_t a, int64_t b) {
  if (a == 0 || b == 0) return 0;
  if (a > INT64_MAX / b) return INT64_MAX;
  return a * b;
}

int64_t product(const Shape& shape, size_t from = 0) {
  int64_t p = 1;
  for (size_t i = from; i < shape.size(); ++i) p = mul(p, shape[i]);
  return p;
}

std::optional<Shape> shape_of(const TypeInfo& type) {
  if (!type.has_shape) return std::nullopt;
  Shape s;
  for (const Dim& d : type.dims) {
    if (!d.known()) return std::nullopt;
    s.push_back(d.value);
  }
  return s;
}

class Shapes {
 public:
  Shapes(const Graph& graph, const Node& node) : graph_(graph), node_(node) {}

  // Shape of input i; throws MissingShape when absent or unknown.
  Shape input(size_t i) const {
    if (i >= node_.inputs.size() || node_.inputs[i].empty()) {
      throw MissingShape{"input " + std::to_string(i) + " is missing"};
    }
    return require(node_.inputs[i]);
  }
  std::optional<Shape> maybe_input(size_t i) const {
    if (i >= node_.inputs.size() || node_.inputs[i].empty()) return std::nullopt;
    return known_shape(graph_, node_.inputs[i]);
  }
  Shape output(size_t i) const {
    if (i >= node_.outputs.size() || node_.outputs[i].empty()) throw MissingShape{"output is missing"};
    return require(node_.outputs[i]);
  }
  std::optional<Shape> maybe_output(size_t i) const {
    if (i >= node_.outputs.size() || node_.outputs[i].empty()) return std::nullopt;
    return known_shape(graph_, node_.outputs[i]);
  }

 private:
  Shape require(const std::string& name) const {
    auto s = known_shape(graph_, name);
    if (!s) throw MissingShape{"shape of \"" + name + "\" unknown"};
    return *s;
  }
  const Graph& graph_;
  const Node& node_;
};

void need_rank(const Shape& s, size_t min_rank, const char* what) {
  if (s.size() < min_rank) throw MissingShape{std::string(what) + " has rank " + std::to_string(s.size())};
}

// Conv output spatial size for one axis (ONNX Conv, auto_pad and pads).
int64_t conv_out_dim(int64_t in, int64_t kernel, int64_t stride, int64_t dilation, int64_t pad_begin, int64_t pad_end,
                     const std::string& auto_pad) {
  const int64_t effective = dilation * (kernel - 1) + 1;
  if (stride <= 0) throw MissingShape{"stride is not positive"};
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") return (in + stride - 1) / stride;
  if (auto_pad == "VALID") return in < effective ? 0 : (in - effective) / stride + 1;
  const int64_t padded = in + pad_begin + pad_end;
  return padded < effective ? 0 : (padded - effective) / stride + 1;
}

int64_t conv_macs(const Node& node, const Shapes& shapes, size_t w_index) {
  const Shape w = shapes.input(w_index);
  need_rank(w, 3, "the weight");
  if (auto y = shapes.maybe_output(0)) return mul(product(*y), product(w, 1));
  // Output shape not inferred: compute it from X, W and the attributes.
  const Shape x = shapes.input(0);
  if (x.size() != w.size()) throw MissingShape{"X and W ranks differ"};
  const size_t spatial = x.size() - 2;
  const auto strides = node.attr_ints("strides", std::vector<int64_t>(spatial, 1));
  const auto dilations = node.attr_ints("dilations", std::vector<int64_t>(spatial, 1));
  const auto pads = node.attr_ints("pads", std::vector<int64_t>(2 * spatial, 0));
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  if (strides.size() != spatial || dilations.size() != spatial || pads.size() != 2 * spatial) {
    throw MissingShape{"strides, dilations or pads do not match the rank"};
  }
  int64_t out = mul(x[0], w[0]);
  for (size_t i = 0; i < spatial; ++i) {
    out = mul(out, conv_out_dim(x[2 + i], w[2 + i], strides[i], dilations[i], pads[i], pads[spatial + i], auto_pad));
  }
  return mul(out, product(w, 1));
}

int64_t conv_transpose_macs(const Shapes& shapes) {
  const Shape x = shapes.input(0);
  const Shape w = shapes.input(1);
  need_rank(w, 3, "the weight");
  return mul(product(x), product(w, 1));
}

int64_t gemm_macs(const Node& node, const Shapes& shapes) {
  const Shape b = shapes.input(1);
  if (b.size() != 2) throw MissingShape{"B is not 2-D"};
  const bool trans_a = node.attr_int("transA", 0) != 0;
  const bool trans_b = node.attr_int("transB", 0) != 0;
  const int64_t k = trans_b ? b[1] : b[0];
  const int64_t n = trans_b ? b[0] : b[1];
  int64_t m = -1;
  if (auto a = shapes.maybe_input(0); a && a->size() == 2) {
    m = trans_a ? (*a)[1] : (*a)[0];
  } else if (auto y = shapes.maybe_output(0); y && y->size() == 2) {
    m = (*y)[0];
  } else {
    shapes.input(0);  // throws naming A
    throw MissingShape{"A is not 2-D"};
  }
  return mul(mul(m, n), k);
}

// numpy matmul: 1-D operands are promoted ([K] -> [1,K] for A, [K,1] for B),
// batch dims broadcast.
int64_t matmul_macs(const Shapes& shapes, size_t b_index) {
  const auto a = shapes.maybe_input(0);
  const auto b = shapes.maybe_input(b_index);
  if (a && b && !a->empty() && !b->empty()) {
    const Shape sa = a->size() == 1 ? Shape{1, (*a)[0]} : *a;
    const Shape sb = b->size() == 1 ? Shape{(*b)[0], 1} : *b;
    const int64_t m = sa[sa.size() - 2], k = sa.back(), n = sb.back();
    const size_t batch_rank = std::max(sa.size(), sb.size()) - 2;
    int64_t batch = 1;
    for (size_t i = 0; i < batch_rank; ++i) {
      const size_t da = sa.size() - 2, db = sb.size() - 2;
      const int64_t ea = i < batch_rank - da ? 1 : sa[i - (batch_rank - da)];
      const int64_t eb = i < batch_rank - db ? 1 : sb[i - (batch_rank - db)];
      batch = mul(batch, std::max(ea, eb));
    }
    return mul(mul(mul(batch, m), n), k);
  }
  // One operand unknown: numel(Y) * K, with K from whichever operand is known.
  int64_t k = -1;
  if (a && !a->empty()) k = a->back();
  if (k < 0 && b && !b->empty()) k = b->size() == 1 ? (*b)[0] : (*b)[b->size() - 2];
  const auto y = shapes.maybe_output(0);
  if (k < 0 || !y) {
    if (!a) shapes.input(0);
    shapes.input(b_index);
    shapes.output(0);
    throw MissingShape{"scalar operand"};
  }
  return mul(product(*y), k);
}

int64_t einsum_macs(const Node& node, const Shapes& shapes) {
  const std::string equation = node.attr_string("equation", "");
  if (node.num_present_inputs() != 2) throw MissingShape{"only two-operand Einsum is counted"};
  if (equation.find("...") != std::string::npos) throw MissingShape{"Einsum with '...' is not counted"};
  const size_t arrow = equation.find("->");
  const std::string lhs = equation.substr(0, arrow);
  const size_t comma = lhs.find(',');
  if (comma == std::string::npos) throw MissingShape{"malformed equation"};
  std::map<char, int64_t> sizes;
  const std::string terms[2] = {lhs.substr(0, comma), lhs.substr(comma + 1)};
  for (size_t t = 0; t < 2; ++t) {
    const Shape s = shapes.input(t);
    std::string letters;
    for (char c : terms[t]) {
      if (c != ' ') letters += c;
    }
    if (letters.size() != s.size())
      throw MissingShape{"equation does not match the rank of input " + std::to_string(t)};
    for (size_t i = 0; i < s.size(); ++i) sizes[letters[i]] = std::max(sizes[letters[i]], s[i]);
  }
  int64_t macs = 1;
  for (const auto& [letter, size] : sizes) macs = mul(macs, size);
  return macs;
}

int64_t rnn_macs(const Node& node, const Shapes& shapes) {
  const Shape x = shapes.input(0);
  const Shape w = shapes.input(1);
  const Shape r = shapes.input(2);
  if (x.size() != 3 || w.size() != 3 || r.size() != 3) throw MissingShape{"X, W and R must be 3-D"};
  const int64_t seq = node.attr_int("layout", 0) == 0 ? x[0] : x[1];
  const int64_t batch = node.attr_int("layout", 0) == 0 ? x[1] : x[0];
  return mul(mul(seq, batch), product(w) + product(r));
}

int64_t layer_macs(const Node& node, const Graph& graph) {
  const Shapes shapes(graph, node);
  const std::string& op = node.op_type;
  if (node.domain == "com.microsoft") {
    if (op == "MatMulNBits") return mul(product(shapes.input(0)), node.attr_int("N", 0));
  }
  if (op == "Conv" || op == "ConvInteger") return conv_macs(node, shapes, 1);
  if (op == "QLinearConv") return conv_macs(node, shapes, 3);
  if (op == "ConvTranspose") return conv_transpose_macs(shapes);
  if (op == "Gemm") return gemm_macs(node, shapes);
  if (op == "MatMul" || op == "MatMulInteger") return matmul_macs(shapes, 1);
  if (op == "QLinearMatMul") return matmul_macs(shapes, 3);
  if (op == "Einsum") return einsum_macs(node, shapes);
  if (op == "LSTM" || op == "GRU" || op == "RNN") return rnn_macs(node, shapes);
  throw MissingShape{"not counted"};
}

}  // namespace

std::optional<Shape> known_shape(const Graph& graph, const std::string& value) {
  if (auto it = graph.initializers.find(value); it != graph.initializers.end()) return it->second.shape();
  for (const auto& in : graph.inputs) {
    if (in.name == value) return shape_of(in.type);
  }
  if (auto it = graph.value_info.find(value); it != graph.value_info.end()) {
    if (auto s = shape_of(it->second.type)) return s;
  }
  for (const auto& out : graph.outputs) {
    if (out.name == value) return shape_of(out.type);
  }
  return std::nullopt;
}

namespace {

void add_initializers(const Graph& graph, std::map<DType, ParamGroup>& groups) {
  for (const auto& [name, t] : graph.initializers) {
    ParamGroup& g = groups[t.dtype()];
    g.dtype = t.dtype();
    g.tensors += 1;
    g.elements += t.numel();
    g.bytes += static_cast<int64_t>(t.nbytes());
  }
  for (const auto& node : graph.nodes) {
    for (const auto& [key, attr] : node.attributes) {
      if (attr.g) add_initializers(*attr.g, groups);
      for (const auto& g : attr.graphs) add_initializers(*g, groups);
    }
  }
}

}  // namespace

ParamStats count_parameters(const Graph& graph) {
  std::map<DType, ParamGroup> groups;
  add_initializers(graph, groups);
  ParamStats stats;
  for (const auto& [dtype, g] : groups) {
    stats.by_dtype.push_back(g);
    stats.total_bytes += g.bytes;
    if (is_float(dtype)) {
      stats.parameters += g.elements;
      stats.parameter_bytes += g.bytes;
    }
  }
  std::stable_sort(stats.by_dtype.begin(), stats.by_dtype.end(),
                   [](const ParamGroup& a, const ParamGroup& b) { return a.elements > b.elements; });
  return stats;
}

bool counts_macs(const Node& node) {
  static const std::set<std::string> kOps = {"Conv",   "ConvInteger", "QLinearConv",   "ConvTranspose",
                                             "Gemm",   "MatMul",      "MatMulInteger", "QLinearMatMul",
                                             "Einsum", "LSTM",        "GRU",           "RNN"};
  if (node.domain == "com.microsoft") return node.op_type == "MatMulNBits";
  return node.domain.empty() && kOps.count(node.op_type) != 0;
}

MacStats count_macs(const Graph& graph) {
  MacStats stats;
  for (const Node& node : graph.nodes) {
    if (!counts_macs(node)) continue;
    LayerMacs layer;
    layer.node = &node;
    try {
      layer.macs = layer_macs(node, graph);
      stats.total = *layer.macs > INT64_MAX - stats.total ? INT64_MAX : stats.total + *layer.macs;
    } catch (const MissingShape& missing) {
      layer.reason = missing.reason;
      stats.unknown += 1;
    } catch (const Error& e) {  // a malformed attribute: report, do not fail the whole inspection
      layer.reason = e.what();
      stats.unknown += 1;
    }
    stats.layers.push_back(std::move(layer));
  }
  return stats;
}

}  // namespace kvant
