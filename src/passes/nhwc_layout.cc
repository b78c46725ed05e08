// nhwc_layout: chains of 2-D convolutions and pooling in channels-last
// layout (NHWC), as the GEMM and depthwise kernels want them, with
// Transposes only where the chain meets an operator that needs NCHW.
//
//   Conv / MaxPool / AveragePool / GlobalAveragePool / GlobalMaxPool (2-D, 4-D
//   input, accepted by `convert`)  ==>  its com.kvant Nhwc* twin (ops/nhwc.cc),
//   which reads and writes NHWC:  NhwcOp(T(x)) = T(Op(x)),  T = perm [0,2,3,1].
//
// Layout groups: values joined by nodes that commute with T — elementwise
// nodes (their 4-D activation operands and output must share a layout;
// constants are permuted with them, scalars need nothing; Q/DQ only per
// tensor), Concat and Slice with constant axes (the axes are remapped), an
// inference BatchNormalization that `convert` accepts (in an NHWC group it
// becomes NhwcBatchNormalization, its 1-D parameters unchanged), and
// the channel shuffle Reshape [N,C,H,W] -> [N,g,C/g,H,W], Transpose
// [0,2,1,3,4], Reshape -> [N,C,H,W], which on NHWC data is Reshape
// [N,H,W,g,C/g], Transpose [0,1,2,4,3], Reshape [N,H,W,C] (the same channel
// permutation of every pixel). A Shape of an NHWC value reads it as it is and
// a Gather [0,3,1,2] gives the NCHW shape, so it forces no Transpose.
// Dynamic convs: ConvInteger's twin is NhwcConvInteger; its
// DynamicQuantizeLinear joins x and the codes (one of a graph input counts
// for NCHW), the per-channel Mul(x_scale, w_scale) joins its readers'
// groups (find_params), and the twin stays only with its output NHWC (its
// Cast -> Mul -> Add epilogue is fused into its step). Each group is NHWC when more of
// its edges meet Nhwc nodes than NCHW-only ones (any other reader or
// writer); groups holding graph inputs or outputs, or values captured by
// subgraphs, stay NCHW. An Nhwc node whose input and output groups are both
// NCHW goes back to its original form, and the groups are decided again.
// Then a Transpose is inserted on every edge whose layouts differ (one per
// value and direction, right after the value's producer), the values of NHWC
// groups get permuted value_info shapes, and transposes that meet cancel:
// Transpose(p) -> Transpose(q) with one reader becomes one Transpose (the
// identity disappears), which also folds the Transposes that TensorFlow-style
// NHWC exports put around every Conv. Last, Transposes move onto the
// quantized codes: after a Relu/Clip/QuantizeLinear that reads them, before
// a per-tensor DequantizeLinear that feeds them (exact swaps; and before a
// DynamicQuantizeLinear, onto its float input, so it meets its conv), so a twin
// meets its DQ input and Q output and the transposes move bytes.
//
// Legal because every rewrite keeps what the graph computes: T is applied to
// a value exactly where a reader needs the other layout, and the nodes of an
// NHWC group compute elementwise (or along a remapped axis) on permuted data.
// Needs 4-D ranks from value_info (shape inference); values of unknown rank
// never join a group. Runs on the top-level graph only.
#include <algorithm>
#include <functional>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "passes/pass.h"

namespace kvant {

namespace {

constexpr int64_t kToNhwc[4] = {0, 2, 3, 1};
constexpr int64_t kToNchw[4] = {0, 3, 1, 2};
// NCHW axis a is NHWC axis kAxisInNhwc[a].
constexpr int64_t kAxisInNhwc[4] = {0, 3, 1, 2};

const std::set<std::string, std::less<>>& unary_ops() {
  static const std::set<std::string, std::less<>> ops = {
      "Relu",  "Clip", "Sigmoid", "Tanh",       "HardSigmoid", "HardSwish", "LeakyRelu",
      "Elu",   "Selu", "Celu",    "Softplus",   "Softsign",    "Exp",       "Log",
      "Neg",   "Abs",  "Sqrt",    "Reciprocal", "Erf",         "Cast",      "Identity",
      "Floor", "Ceil", "Round",   "Sign",       "Not",         "Mish",      "ThresholdedRelu",
      "Sin",   "Cos",  "Gelu"};
  return ops;
}

const std::set<std::string, std::less<>>& broadcast_ops() {
  static const std::set<std::string, std::less<>> ops = {"Add",   "Sub",  "Mul",     "Div",         "Pow",
                                                         "Max",   "Min",  "Sum",     "Mean",        "PRelu",
                                                         "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual",
                                                         "And",   "Or",   "Xor",     "Where"};
  return ops;
}

const char* nhwc_twin(const std::string& op) {
  if (op == "Conv") return "NhwcConv";
  if (op == "ConvInteger") return "NhwcConvInteger";
  if (op == "MaxPool") return "NhwcMaxPool";
  if (op == "AveragePool") return "NhwcAveragePool";
  if (op == "GlobalAveragePool") return "NhwcGlobalAveragePool";
  if (op == "GlobalMaxPool") return "NhwcGlobalMaxPool";
  return nullptr;
}

class Layout {
 public:
  Layout(Graph& g, int64_t opset, const std::function<bool(const Node&)>& convert)
      : g_(g), opset_(opset), convert_(convert) {}

  bool run() {
    infer_ranks();
    for (const Node& n : g_.nodes) {
      for (const auto& o : n.outputs) {
        if (!o.empty()) producer_[o] = &n;
      }
    }
    for (Node& n : g_.nodes) {
      if (eligible(n)) candidates_.insert(&n);
    }
    if (candidates_.empty()) return false;
    for (const Node& n : g_.nodes) {
      for (const Graph* sub : subgraphs(n)) {
        for (const auto& c : sub->captured_values()) pinned_.insert(c);
      }
    }
    for (const auto& v : g_.inputs) pinned_.insert(v.name);
    for (const auto& v : g_.outputs) pinned_.insert(v.name);
    find_shuffles();
    find_params();

    for (int round = 0; round < 8; ++round) {
      decide();
      bool reverted = false;
      for (auto it = candidates_.begin(); it != candidates_.end();) {
        const Node* n = *it;
        // A dynamic conv's twin needs its output NHWC too: the epilogue after
        // it (Cast, Mul, Add) is fused into its step, so a Transpose there
        // would split them (before the DynamicQuantizeLinear it does not).
        const bool dynamic_nchw_out = n->op_type == "ConvInteger" && !nhwc(n->outputs[0]);
        if ((!nhwc(n->inputs[0]) && !nhwc(n->outputs[0])) || dynamic_nchw_out) {
          it = candidates_.erase(it);
          reverted = true;
        } else {
          ++it;
        }
      }
      if (!reverted) break;
    }
    if (candidates_.empty()) return false;
    rewrite();
    fold_transposes();
    transpose_codes();
    return true;
  }

 private:
  static std::vector<const Graph*> subgraphs(const Node& n) {
    std::vector<const Graph*> out;
    for (const auto& [k, a] : n.attributes) {
      if (a.g) out.push_back(a.g.get());
      for (const auto& s : a.graphs) {
        if (s) out.push_back(s.get());
      }
    }
    return out;
  }

  int rank(const std::string& v) const {
    if (auto it = g_.initializers.find(v); it != g_.initializers.end()) return it->second.rank();
    if (auto it = g_.value_info.find(v); it != g_.value_info.end() && it->second.type.has_shape) {
      return static_cast<int>(it->second.type.dims.size());
    }
    auto it = inferred_.find(v);
    return it == inferred_.end() ? -1 : it->second;
  }

  // Ranks where value_info has none (e.g. the Q/DQ values a quantizer added):
  // a forward walk with the rank rules of the common operators; -1 unknown.
  void infer_ranks() {
    for (const auto& io : {&g_.inputs, &g_.outputs}) {
      for (const auto& vi : *io) {
        if (vi.type.has_shape) inferred_[vi.name] = static_cast<int>(vi.type.dims.size());
      }
    }
    static const std::set<std::string, std::less<>> same_as_input = {"QuantizeLinear",
                                                                     "DequantizeLinear",
                                                                     "Conv",
                                                                     "ConvInteger",
                                                                     "MaxPool",
                                                                     "AveragePool",
                                                                     "GlobalAveragePool",
                                                                     "GlobalMaxPool",
                                                                     "BatchNormalization",
                                                                     "InstanceNormalization",
                                                                     "LRN",
                                                                     "Resize",
                                                                     "Upsample",
                                                                     "Pad",
                                                                     "Concat",
                                                                     "Transpose",
                                                                     "Softmax",
                                                                     "LogSoftmax",
                                                                     "ConvTranspose",
                                                                     "DepthToSpace",
                                                                     "SpaceToDepth",
                                                                     "LayerNormalization",
                                                                     "GroupNormalization",
                                                                     "Slice",
                                                                     "Split",
                                                                     "Tile",
                                                                     "Expand"};
    for (const Node& n : g_.nodes) {
      if (!n.domain.empty() || n.outputs.empty() || n.outputs[0].empty() || rank(n.outputs[0]) >= 0) continue;
      int r = -1;
      const int r0 = n.inputs.empty() || n.inputs[0].empty() ? -1 : rank(n.inputs[0]);
      if (dynamic_quantize(n)) {  // the codes as x; scale and zero point scalars
        if (r0 >= 0) inferred_[n.outputs[0]] = r0;
        for (size_t i = 1; i < n.outputs.size(); ++i) inferred_[n.outputs[i]] = 0;
        continue;
      }
      if (unary_ops().count(n.op_type) || same_as_input.count(n.op_type)) {
        r = n.op_type == "Expand" ? -1 : r0;
      } else if (broadcast_ops().count(n.op_type)) {
        for (const auto& in : n.inputs) {
          if (in.empty()) continue;
          const int ri = rank(in);
          if (ri < 0) {
            r = -1;
            break;
          }
          r = std::max(r, ri);
        }
      } else if (n.op_type == "Flatten" || n.op_type == "Gemm") {
        r = 2;
      } else if (n.op_type == "Reshape" && n.inputs.size() > 1 && g_.initializers.count(n.inputs[1])) {
        r = static_cast<int>(g_.initializers.at(n.inputs[1]).numel());
      }
      if (r >= 0) {
        for (const auto& o : n.outputs) {
          if (!o.empty()) inferred_[o] = r;
        }
      }
    }
    // [N, C, 1, 1] values without value_info: global pools' outputs and what
    // elementwise nodes make of them alone.
    for (const Node& n : g_.nodes) {
      if (!n.domain.empty() || n.outputs.empty() || n.outputs[0].empty()) continue;
      bool one = n.op_type == "GlobalAveragePool" || n.op_type == "GlobalMaxPool";
      if (!one && (unary_ops().count(n.op_type) || n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear" ||
                   broadcast_ops().count(n.op_type))) {
        one = true;
        for (const auto& in : n.inputs) {
          if (in.empty() || (is_constant(in) && g_.initializers.at(in).numel() == 1)) continue;
          if (!spatial_one_.count(in)) one = false;
        }
      }
      if (one) spatial_one_.insert(n.outputs[0]);
    }
  }

  bool is_constant(const std::string& v) const { return g_.initializers.count(v) != 0 && g_.find_input(v) == nullptr; }
  bool is_scalar_constant(const std::string& v) const {
    auto it = g_.initializers.find(v);
    return it != g_.initializers.end() && g_.find_input(v) == nullptr && it->second.numel() == 1;
  }

  bool eligible(const Node& n) const {
    if (!n.domain.empty() || nhwc_twin(n.op_type) == nullptr || n.inputs.empty() || n.outputs.empty()) return false;
    if (rank(n.inputs[0]) != 4 || is_constant(n.inputs[0])) return false;
    if ((n.op_type == "Conv" || n.op_type == "ConvInteger") && (n.inputs.size() < 2 || rank(n.inputs[1]) != 4))
      return false;
    if (n.op_type == "MaxPool" && n.outputs.size() > 1 && !n.outputs[1].empty()) return false;  // Indices
    if ((n.op_type == "MaxPool" || n.op_type == "AveragePool") && n.attr_ints("kernel_shape").size() != 2) {
      return false;
    }
    return convert_(n);
  }

  // The activation operands a transparent node joins with its output (empty
  // when the node is not transparent).
  // Pinned values (graph inputs and outputs, subgraph captures) never join:
  // a transparent node may read one (a Transpose is put in front of it when
  // its group is NHWC) but not write one.
  std::vector<std::string> joined(const Node& n) const {
    if (n.outputs.size() == 1 && params_.count(n.outputs[0])) return {n.outputs[0]};
    if (!n.domain.empty() || (n.outputs.size() != 1 && !dynamic_quantize(n)) || n.outputs[0].empty() ||
        rank(n.outputs[0]) != 4 || pinned_.count(n.outputs[0])) {
      return {};
    }
    std::vector<std::string> acts = joined_operands(n);
    std::erase_if(acts, [&](const std::string& v) { return pinned_.count(v) != 0; });
    return acts;
  }
  std::vector<std::string> joined_operands(const Node& n) const {
    const std::string& op = n.op_type;
    std::vector<std::string> acts;
    if (unary_ops().count(op)) {
      for (size_t i = 1; i < n.inputs.size(); ++i) {
        if (!n.inputs[i].empty() && !is_scalar_constant(n.inputs[i])) return {};
      }
      if (n.inputs.empty() || rank(n.inputs[0]) != 4) return {};
      return {n.inputs[0], n.outputs[0]};
    }
    if (dynamic_quantize(n)) return {n.inputs[0], n.outputs[0]};
    if (op == "QuantizeLinear" || op == "DequantizeLinear") {
      if (n.inputs.size() < 2 || rank(n.inputs[0]) != 4 || n.has_attr("block_size")) return {};
      for (size_t i = 1; i < n.inputs.size(); ++i) {
        if (!n.inputs[i].empty() && !is_scalar_constant(n.inputs[i])) return {};
      }
      return {n.inputs[0], n.outputs[0]};
    }
    if (broadcast_ops().count(op)) {
      for (const auto& in : n.inputs) {
        if (in.empty()) continue;
        const int r = rank(in);
        if (is_constant(in)) {
          const Tensor& c = g_.initializers.at(in);
          if (r < 0 || r > 4 || (dtype_bits(c.dtype()) < 8 && c.numel() > 1)) return {};
        } else if (r == 4 || params_.count(in)) {
          acts.push_back(in);
        } else if (r != 0) {
          return {};  // a lower-rank activation would broadcast along other axes
        }
      }
      acts.push_back(n.outputs[0]);
      return acts;
    }
    if (op == "Slice") {
      // Data, starts, ends, axes (a constant: it is remapped), steps (a
      // constant or absent); starts and ends may be computed.
      if (n.inputs.size() < 4 || n.inputs[0].empty() || rank(n.inputs[0]) != 4 || is_constant(n.inputs[0]) ||
          slice_axes(n).empty()) {
        return {};
      }
      if (n.inputs.size() > 4 && !n.inputs[4].empty() && !is_constant(n.inputs[4])) return {};
      return {n.inputs[0], n.outputs[0]};
    }
    if (op == "BatchNormalization") {
      // Per channel, so it takes its group's layout (NhwcBatchNormalization
      // in an NHWC group) rather than voting for one: a BN between NCHW-only
      // nodes stays NCHW. Only in inference form with constant 1-D
      // parameters, and where `convert` says its NHWC form has a step (the
      // float one: a DQ -> BN -> Q keeps its NCHW per-channel tables).
      if (n.inputs.size() != 5 || rank(n.inputs[0]) != 4 || is_constant(n.inputs[0])) return {};
      for (size_t i = 1; i < 5; ++i) {
        if (!is_constant(n.inputs[i]) || rank(n.inputs[i]) != 1) return {};
      }
      if (!convert_(n)) return {};
      return {n.inputs[0], n.outputs[0]};
    }
    if (op == "Concat") {
      const int64_t axis = n.attr_int("axis", 0);
      if (axis < -4 || axis > 3) return {};
      for (const auto& in : n.inputs) {
        if (in.empty() || rank(in) != 4 || is_constant(in)) return {};
        acts.push_back(in);
      }
      acts.push_back(n.outputs[0]);
      return acts;
    }
    return {};
  }

  // The constant axes of a Slice, each in [0, 4); empty when not constant.
  std::vector<int64_t> slice_axes(const Node& n) const {
    if (n.inputs.size() < 4 || n.inputs[3].empty() || !is_constant(n.inputs[3])) return {};
    const Tensor& a = g_.initializers.at(n.inputs[3]);
    if ((a.dtype() != DType::kInt64 && a.dtype() != DType::kInt32) || a.rank() != 1 || a.numel() == 0) return {};
    std::vector<int64_t> axes;
    for (int64_t i = 0; i < a.numel(); ++i) {
      int64_t v = a.get_as_int64(i);
      if (v < -4 || v > 3) return {};
      axes.push_back(v < 0 ? v + 4 : v);
    }
    return axes;
  }

  // A Shape of the whole shape (no start/end): reads any layout.
  static bool whole_shape(const Node& n) {
    return n.op_type == "Shape" && n.domain.empty() && n.inputs.size() == 1 && n.outputs.size() == 1 &&
           !n.has_attr("start") && !n.has_attr("end");
  }

  // A constant int64 vector, or empty.
  std::vector<int64_t> int64_constant(const std::string& v) const {
    if (v.empty() || !is_constant(v)) return {};
    const Tensor& t = g_.initializers.at(v);
    if (t.dtype() != DType::kInt64 || t.rank() != 1) return {};
    return std::vector<int64_t>(t.data<int64_t>(), t.data<int64_t>() + t.numel());
  }

  // Channel shuffles: Reshape A (x [N,C,H,W] -> constant [n,g,c,h,w], all
  // positive) -> Transpose T [0,2,1,3,4] -> Reshape B (constant shape that
  // gives [n,g*c,h,w]), each read only by the next; x and B's output not
  // pinned, x not a constant.
  struct Shuffle {
    const Node* a;
    const Node* t;
    const Node* b;
    std::vector<int64_t> dims;  // n, g, c, h, w
  };
  void find_shuffles() {
    const auto reads = count_reads(g_);
    std::unordered_map<std::string, const Node*> reader;
    for (const Node& n : g_.nodes) {
      for (const auto& in : n.inputs) reader[in] = &n;
    }
    auto sole = [&](const std::string& v) -> const Node* {
      auto r = reads.find(v);
      auto it = reader.find(v);
      if (r == reads.end() || r->second != 1 || it == reader.end() || is_graph_output(g_, v)) return nullptr;
      return it->second->domain.empty() && it->second->inputs.at(0) == v ? it->second : nullptr;
    };
    for (const Node& a : g_.nodes) {
      if (a.op_type != "Reshape" || !a.domain.empty() || a.inputs.size() != 2 || a.outputs.size() != 1) continue;
      if (rank(a.inputs[0]) != 4 || is_constant(a.inputs[0]) || pinned_.count(a.inputs[0])) continue;
      const std::vector<int64_t> d = int64_constant(a.inputs[1]);
      if (d.size() != 5 || std::any_of(d.begin(), d.end(), [](int64_t v) { return v <= 0; })) continue;
      const Node* t = sole(a.outputs[0]);
      if (t == nullptr || t->op_type != "Transpose" || t->outputs.size() != 1 ||
          t->attr_ints("perm") != std::vector<int64_t>{0, 2, 1, 3, 4}) {
        continue;
      }
      const Node* b = sole(t->outputs[0]);
      if (b == nullptr || b->op_type != "Reshape" || b->inputs.size() != 2 || b->outputs.size() != 1) continue;
      if (b->attr_int("allowzero", 0) != 0 || pinned_.count(b->outputs[0])) continue;
      std::vector<int64_t> e = int64_constant(b->inputs[1]);
      if (e.size() != 4) continue;
      // What B makes of T's output [n, c, g, h, w].
      const int64_t tdims[5] = {d[0], d[2], d[1], d[3], d[4]};
      int64_t known = 1, unknown = -1;
      bool ok = true;
      for (size_t i = 0; i < 4; ++i) {
        if (e[i] == 0) e[i] = tdims[i];
        if (e[i] == -1) {
          ok = ok && unknown < 0;
          unknown = static_cast<int64_t>(i);
        } else if (e[i] > 0) {
          known *= e[i];
        } else {
          ok = false;
        }
      }
      const int64_t total = d[0] * d[1] * d[2] * d[3] * d[4];
      if (!ok || known <= 0 || total % known != 0) continue;
      if (unknown >= 0) e[static_cast<size_t>(unknown)] = total / known;
      if (e != std::vector<int64_t>{d[0], d[1] * d[2], d[3], d[4]}) continue;
      shuffles_.push_back({&a, t, b, d});
    }
  }
  const Shuffle* shuffle_of(const Node& n) const {
    for (const auto& s : shuffles_) {
      if (s.a == &n || s.t == &n || s.b == &n) return &s;
    }
    return nullptr;
  }

  std::string find(const std::string& v) {
    auto it = parent_.find(v);
    if (it == parent_.end() || it->second == v) return v;
    return it->second = find(it->second);
  }
  void unite(const std::string& a, const std::string& b) {
    const std::string ra = find(a), rb = find(b);
    if (ra != rb) parent_[ra] = rb;
  }
  bool nhwc(const std::string& v) { return nhwc_groups_.count(find(v)) != 0; }

  // Groups and their layouts for the current candidates.
  void decide() {
    parent_.clear();
    nhwc_groups_.clear();
    transparent_.clear();
    for (const Node& n : g_.nodes) {
      const auto acts = joined(n);
      if (acts.empty()) continue;
      transparent_.insert(&n);
      for (size_t i = 1; i < acts.size(); ++i) unite(acts[0], acts[i]);
    }
    for (const auto& s : shuffles_) {
      transparent_.insert(s.a);
      transparent_.insert(s.t);
      transparent_.insert(s.b);
      unite(s.a->inputs[0], s.b->outputs[0]);
    }
    std::unordered_map<std::string, int> score;
    std::unordered_set<std::string> pinned_groups;
    for (const auto& v : pinned_) pinned_groups.insert(find(v));
    for (const Node& n : g_.nodes) {
      if (transparent_.count(&n)) {
        // A DynamicQuantizeLinear of a graph input: the input is NCHW, as if
        // its conv read it (a lone dynamic conv stays NCHW).
        if (dynamic_quantize(n) && pinned_.count(n.inputs[0])) score[find(n.outputs[0])] -= 1;
        continue;
      }
      if (whole_shape(n)) continue;
      const bool twin = candidates_.count(&n) != 0;
      // A Transpose to NHWC reads its input's NHWC form for free, one to NCHW
      // writes its output's NHWC form (they fold away): both count for NHWC.
      const bool reads_nhwc = twin || is_transpose(n, kToNhwc);
      const bool writes_nhwc = twin || is_transpose(n, kToNchw);
      for (size_t i = 0; i < n.inputs.size(); ++i) {
        if (n.inputs[i].empty() || rank(n.inputs[i]) != 4 || is_constant(n.inputs[i])) continue;
        if (!twin && layout_neutral(n, i)) continue;
        score[find(n.inputs[i])] += reads_nhwc && i == 0 ? 1 : -1;
      }
      for (size_t i = 0; i < n.outputs.size(); ++i) {
        if (n.outputs[i].empty() || rank(n.outputs[i]) != 4) continue;
        score[find(n.outputs[i])] += writes_nhwc && i == 0 ? 1 : -1;
      }
    }
    for (const auto& [group, s] : score) {
      if (s > 0 && !pinned_groups.count(group)) nhwc_groups_.insert(group);
    }
  }

  // Whether H and W of a 4-D value are known to be 1 ([N, C, 1, 1]: its NHWC
  // form has the same bytes).
  bool spatial_one(const std::string& v) const {
    if (spatial_one_.count(v)) return true;
    auto it = g_.value_info.find(v);
    if (it == g_.value_info.end() || !it->second.type.has_shape || it->second.type.dims.size() != 4) return false;
    const auto& d = it->second.type.dims;
    return d[2].value == 1 && d[3].value == 1;
  }
  // A Flatten(axis 1), or a Reshape to a constant shape with no 0 (copy)
  // after the batch dim, of an [N, C, 1, 1] value gives the same result on
  // its NHWC form: such a read needs no Transpose.
  bool layout_neutral(const Node& n, size_t input) const {
    if (input != 0 || !n.domain.empty() || !spatial_one(n.inputs[0])) return false;
    if (n.op_type == "Flatten") return n.attr_int("axis", 1) == 1;
    if (n.op_type != "Reshape" || n.inputs.size() < 2 || !is_constant(n.inputs[1])) return false;
    const Tensor& shape = g_.initializers.at(n.inputs[1]);
    if (shape.dtype() != DType::kInt64) return false;
    for (int64_t i = 1; i < shape.numel(); ++i) {
      if (shape.data<int64_t>()[i] == 0) return false;
    }
    return true;
  }

  static bool is_transpose(const Node& n, const int64_t (&perm)[4]) {
    return n.op_type == "Transpose" && n.domain.empty() && n.attr_ints("perm") == std::vector<int64_t>(perm, perm + 4);
  }

  Node transpose_node(const std::string& in, const std::string& out, const int64_t (&perm)[4]) {
    Node t = make_node(unique_node_name(out + "/Transpose"), "Transpose", {in}, {out});
    set_attr(t, "perm", std::vector<int64_t>(perm, perm + 4));
    return t;
  }
  std::string unique_node_name(const std::string& base) {
    std::string name = base;
    for (int i = 1; node_names_.count(name); ++i) name = base + "_" + std::to_string(i);
    node_names_.insert(name);
    return name;
  }
  std::string fresh_value(const std::string& base) {
    std::string name = base;
    for (int i = 1; used_values_.count(name); ++i) name = base + "_" + std::to_string(i);
    used_values_.insert(name);
    return name;
  }

  // A constant operand of an NHWC elementwise node: rank-aligned to 4 and
  // permuted like the activations (a new initializer).
  std::string permuted_constant(const std::string& name) {
    auto done = permuted_.find(name);
    if (done != permuted_.end()) return done->second;
    const Tensor& c = g_.initializers.at(name);
    if (c.numel() <= 1 && c.rank() <= 1) return permuted_[name] = name;
    Shape s4(4, 1);
    for (int i = 0; i < c.rank(); ++i) s4[static_cast<size_t>(4 - c.rank() + i)] = c.shape()[static_cast<size_t>(i)];
    const Shape out_shape = {s4[0], s4[2], s4[3], s4[1]};
    Tensor t(c.dtype(), out_shape);
    const size_t elem = static_cast<size_t>(dtype_bits(c.dtype()) / 8);
    const auto* src = static_cast<const std::byte*>(c.raw());
    auto* dst = static_cast<std::byte*>(t.raw());
    size_t at = 0;
    for (int64_t n = 0; n < s4[0]; ++n) {
      for (int64_t h = 0; h < s4[2]; ++h) {
        for (int64_t w = 0; w < s4[3]; ++w) {
          for (int64_t ch = 0; ch < s4[1]; ++ch, at += elem) {
            const int64_t i = ((n * s4[1] + ch) * s4[2] + h) * s4[3] + w;
            std::copy(src + i * static_cast<int64_t>(elem), src + (i + 1) * static_cast<int64_t>(elem), dst + at);
          }
        }
      }
    }
    const std::string fresh = fresh_value(name + "/nhwc");
    g_.initializers[fresh] = std::move(t);
    return permuted_[name] = fresh;
  }

  // A new int64 vector initializer named after `base`.
  std::string int64_initializer(const std::string& base, const std::vector<int64_t>& values) {
    const std::string name = fresh_value(base + "/nhwc");
    g_.initializers[name] = Tensor::from_vector(values, {static_cast<int64_t>(values.size())});
    return name;
  }

  void rewrite() {
    for (const Node& n : g_.nodes) {
      node_names_.insert(n.name);
      used_values_.insert(n.outputs.begin(), n.outputs.end());
    }
    for (const auto& v : g_.inputs) used_values_.insert(v.name);
    for (const auto& [k, t] : g_.initializers) used_values_.insert(k);

    // Per value read in the other layout: the name of its transposed copy.
    std::unordered_map<std::string, std::string> to_nhwc, to_nchw;
    std::vector<Node> out;
    out.reserve(g_.nodes.size() * 2);
    // Emits the transposes a value needs, right after it is defined.
    std::unordered_map<std::string, std::vector<std::pair<bool, std::string>>> wanted;  // value -> (to_nhwc?, copy)
    auto want = [&](const std::string& v, bool want_nhwc) -> std::string {
      auto& table = want_nhwc ? to_nhwc : to_nchw;
      auto it = table.find(v);
      if (it != table.end()) return it->second;
      const std::string copy = fresh_value(v + (want_nhwc ? "/nhwc" : "/nchw"));
      table[v] = copy;
      wanted[v].push_back({want_nhwc, copy});
      return copy;
    };

    std::vector<Node> nodes = std::move(g_.nodes);
    g_.nodes.clear();
    // First: decide every node's reads and writes.
    std::unordered_map<std::string, std::string> shape_gather;  // Shape's new output -> its NCHW shape
    for (Node& n : nodes) {
      const bool twin = candidates_.count(&n) != 0;
      if (const Shuffle* sh = shuffle_of(n)) {
        if (nhwc(sh->a->inputs[0])) {
          const auto& d = sh->dims;
          if (&n == sh->a) {
            n.inputs[1] = int64_initializer(n.inputs[1], {d[0], d[3], d[4], d[1], d[2]});
          } else if (&n == sh->t) {
            set_attr(n, "perm", std::vector<int64_t>{0, 1, 2, 4, 3});
          } else {
            n.inputs[1] = int64_initializer(n.inputs[1], {d[0], d[3], d[4], d[1] * d[2]});
          }
          if (&n != sh->b) g_.value_info.erase(n.outputs[0]);
        }
        continue;
      }
      const bool in_group = transparent_.count(&n) != 0 && nhwc(n.outputs[0]);
      if (in_group && n.op_type == "Slice") {
        if (!nhwc(n.inputs[0])) n.inputs[0] = want(n.inputs[0], true);
        std::vector<int64_t> axes = slice_axes(n);
        for (auto& a : axes) a = kAxisInNhwc[a];
        n.inputs[3] = int64_initializer(n.inputs[3], axes);
        continue;
      }
      if (!twin && !in_group && whole_shape(n) && rank(n.inputs[0]) == 4 && nhwc(n.inputs[0])) {
        const std::string nchw_shape = n.outputs[0];
        n.outputs[0] = fresh_value(nchw_shape + "/nhwc");
        shape_gather[n.outputs[0]] = nchw_shape;
        continue;
      }
      if (twin) {
        if (!nhwc(n.inputs[0])) n.inputs[0] = want(n.inputs[0], true);
        if (!nhwc(n.outputs[0])) {
          // Writes NHWC under a new name; the NCHW value comes from a Transpose.
          const std::string nchw_name = n.outputs[0];
          const std::string nhwc_name = fresh_value(nchw_name + "/nhwc");
          n.outputs[0] = nhwc_name;
          to_nhwc[nchw_name] = nhwc_name;
          wanted[nhwc_name].push_back({false, nchw_name});
        }
        n.op_type = nhwc_twin(n.op_type);
        n.domain = "com.kvant";
        set_attr(n, "onnx_opset", opset_);
      } else if (in_group && n.op_type == "BatchNormalization") {
        if (!nhwc(n.inputs[0])) n.inputs[0] = want(n.inputs[0], true);  // a pinned input
        n.op_type = "NhwcBatchNormalization";                           // scale, B, mean, var stay 1-D
        n.domain = "com.kvant";
        set_attr(n, "onnx_opset", opset_);
      } else if (in_group) {
        for (auto& in : n.inputs) {
          if (in.empty()) continue;
          if (is_constant(in)) {
            in = permuted_constant(in);
          } else if (rank(in) == 4 && !nhwc(in)) {
            in = want(in, true);
          }
        }
        if (n.op_type == "Concat") {
          int64_t axis = n.attr_int("axis", 0);
          if (axis < 0) axis += 4;
          set_attr(n, "axis", kAxisInNhwc[axis]);
        }
      } else {
        for (size_t i = 0; i < n.inputs.size(); ++i) {
          std::string& in = n.inputs[i];
          if (!in.empty() && rank(in) == 4 && !is_constant(in) && nhwc(in) && !layout_neutral(n, i)) {
            in = want(in, false);
          }
        }
        // An NCHW node writing a value of an NHWC group: it writes a copy,
        // transposed into the value.
        for (auto& o : n.outputs) {
          if (o.empty() || rank(o) != 4 || !nhwc(o)) continue;
          const std::string nhwc_name = o;
          o = fresh_value(nhwc_name + "/nchw");
          to_nchw[nhwc_name] = o;
          wanted[o].push_back({true, nhwc_name});
        }
      }
    }
    // Then emit in order, each transpose right after its source is defined.
    auto emit_transposes = [&](const std::string& v) {
      auto it = wanted.find(v);
      if (it == wanted.end()) return;
      for (const auto& [nhwc_copy, copy] : it->second)
        out.push_back(transpose_node(v, copy, nhwc_copy ? kToNhwc : kToNchw));
      wanted.erase(it);
    };
    for (const auto& v : g_.inputs) emit_transposes(v.name);
    for (const auto& [k, t] : g_.initializers) emit_transposes(k);
    for (Node& n : nodes) {
      std::vector<std::string> outs = n.outputs;
      out.push_back(std::move(n));
      for (const auto& o : outs) {
        if (!o.empty()) emit_transposes(o);
        if (auto it = shape_gather.find(o); it != shape_gather.end()) {
          const std::string idx = int64_initializer(it->second + "/to_nchw", {0, 3, 1, 2});
          Node gather = make_node(unique_node_name(it->second + "/Gather"), "Gather", {o, idx}, {it->second});
          set_attr(gather, "axis", int64_t{0});
          out.push_back(std::move(gather));
        }
      }
    }
    g_.nodes = std::move(out);
    // NHWC values: permuted shapes.
    for (auto& [name, vi] : g_.value_info) {
      if (vi.type.has_shape && vi.type.dims.size() == 4 && !g_.initializers.count(name) && nhwc(name)) {
        auto d = vi.type.dims;
        vi.type.dims = {d[0], d[2], d[3], d[1]};
      }
    }
    for (const auto& v : params_) {
      if (nhwc(v)) g_.value_info.erase(v);  // now rank 4, [1, 1, 1, C]
    }
    for (auto& [nchw_name, nhwc_name] : to_nhwc) {
      auto it = g_.value_info.find(nchw_name);
      if (it == g_.value_info.end() || !it->second.type.has_shape || it->second.type.dims.size() != 4) continue;
      ValueInfo vi = it->second;
      vi.name = nhwc_name;
      if (!nhwc(nchw_name)) {
        auto d = vi.type.dims;
        vi.type.dims = {d[0], d[2], d[3], d[1]};
      }
      g_.value_info[nhwc_name] = vi;
    }
    for (auto& [nhwc_name, nchw_name] : to_nchw) {
      auto it = g_.value_info.find(nhwc_name);
      if (it == g_.value_info.end() || !it->second.type.has_shape || it->second.type.dims.size() != 4) continue;
      ValueInfo vi = it->second;
      vi.name = nchw_name;
      auto d = vi.type.dims;  // it->second is already NHWC
      vi.type.dims = {d[0], d[3], d[1], d[2]};
      g_.value_info[nchw_name] = vi;
    }
  }

  // Transpose(p) -> Transpose(q), the first read only by the second, become
  // Transpose(p then q); an identity Transpose is removed (an Identity where
  // it writes a graph output). One walk in order (a chain folds into its last
  // node).
  void fold_transposes() {
    const auto reads = count_reads(g_);
    std::unordered_map<std::string, size_t> transpose_of;  // output -> index of its Transpose
    std::vector<bool> dead(g_.nodes.size(), false);
    auto is_transpose = [](const Node& n) {
      return n.op_type == "Transpose" && n.domain.empty() && n.inputs.size() == 1 && n.outputs.size() == 1;
    };
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      Node& n = g_.nodes[i];
      if (!is_transpose(n)) continue;
      auto it = transpose_of.find(n.inputs[0]);
      if (it != transpose_of.end()) {
        const Node& first = g_.nodes[it->second];
        auto r = reads.find(first.outputs[0]);
        const std::vector<int64_t> p = first.attr_ints("perm"), q = n.attr_ints("perm");
        if (r != reads.end() && r->second == 1 && !is_graph_output(g_, first.outputs[0]) && !p.empty() &&
            p.size() == q.size()) {
          std::vector<int64_t> pq(q.size());
          for (size_t d = 0; d < q.size(); ++d) pq[d] = p[static_cast<size_t>(q[d])];
          n.inputs[0] = first.inputs[0];
          set_attr(n, "perm", pq);
          dead[it->second] = true;
        }
      }
      transpose_of[n.outputs[0]] = i;
    }
    std::vector<Node> kept;
    kept.reserve(g_.nodes.size());
    std::vector<std::pair<std::string, std::string>> renames;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      if (dead[i]) continue;
      Node& n = g_.nodes[i];
      if (is_transpose(n)) {
        const std::vector<int64_t> perm = n.attr_ints("perm");
        std::vector<int64_t> iota(perm.size());
        std::iota(iota.begin(), iota.end(), 0);
        if (!perm.empty() && perm == iota) {
          if (!is_graph_output(g_, n.outputs[0])) {
            renames.emplace_back(n.outputs[0], n.inputs[0]);
            continue;
          }
          n.op_type = "Identity";  // keeps the output's name; a view when compiled
          n.attributes.erase("perm");
        }
      }
      kept.push_back(std::move(n));
    }
    g_.nodes = std::move(kept);
    if (renames.empty()) return;
    // Identity chains resolve to their first input.
    std::unordered_map<std::string, std::string> to(renames.begin(), renames.end());
    auto resolve = [&](std::string v) {
      for (auto it = to.find(v); it != to.end(); it = to.find(v)) v = it->second;
      return v;
    };
    for (const auto& [from, unused] : renames) rename_reads(g_, from, resolve(from));
  }

  // Moves Transposes onto quantized codes, where the fused integer steps
  // want them, by two exact swaps repeated until none applies:
  //   Transpose -> Relu | Clip (scalar bounds) | QuantizeLinear (per tensor),
  //     the Transpose's only reader:  the reader goes first (elementwise
  //     with scalar parameters: T(f(x)) = f(T(x)));
  //   DequantizeLinear (per tensor) -> Transpose, the DQ's only reader: the
  //     Transpose goes first, on the codes.
  // So an Nhwc twin meets its DQ input and its [Relu|Clip ->] Q output, and
  // the Transposes move bytes, not floats.
  void transpose_codes() {
    for (size_t guard = 0; guard < 4 * g_.nodes.size() + 4 && swap_one(); ++guard) {
    }
  }

  bool per_tensor_qdq(const Node& n, const char* op) const {
    return n.op_type == op && n.domain.empty() && n.inputs.size() >= 2 && n.outputs.size() == 1 &&
           is_scalar_constant(n.inputs[1]) &&
           (n.inputs.size() < 3 || n.inputs[2].empty() || is_scalar_constant(n.inputs[2]));
  }
  bool scalar_elementwise(const Node& n) const {
    if (!n.domain.empty() || n.outputs.size() != 1 || n.inputs.empty()) return false;
    if (n.op_type == "Relu") return n.inputs.size() == 1;
    if (n.op_type != "Clip") return false;
    for (size_t k = 1; k < n.inputs.size(); ++k) {
      if (!n.inputs[k].empty() && !is_scalar_constant(n.inputs[k])) return false;
    }
    return true;
  }
  static bool is_plain_transpose(const Node& n) {
    return n.op_type == "Transpose" && n.domain.empty() && n.inputs.size() == 1 && n.outputs.size() == 1;
  }

  bool swap_one() {
    const auto reads = count_reads(g_);
    std::unordered_map<std::string, size_t> reader_of;  // value -> index of a node reading it
    std::unordered_set<std::string> names;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      for (const auto& in : g_.nodes[i].inputs) reader_of[in] = i;
      names.insert(g_.nodes[i].outputs.begin(), g_.nodes[i].outputs.end());
    }
    auto sole_reader = [&](const std::string& v, size_t after) -> std::optional<size_t> {
      auto r = reads.find(v);
      auto it = reader_of.find(v);
      if (r == reads.end() || r->second != 1 || it == reader_of.end() || it->second <= after ||
          is_graph_output(g_, v)) {
        return std::nullopt;
      }
      return it->second;
    };
    auto fresh = [&](std::string base) {
      while (names.count(base) || g_.initializers.count(base)) base += "_";
      return base;
    };
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      const Node& a = g_.nodes[i];
      const bool sink = is_plain_transpose(a);
      const bool hoist = (per_tensor_qdq(a, "DequantizeLinear") || dynamic_quantize(a)) && !is_constant(a.inputs[0]);
      if (!sink && !hoist) continue;
      const std::optional<size_t> j = sole_reader(a.outputs[0], i);
      if (!j) continue;
      const Node& b = g_.nodes[*j];
      if (b.inputs.empty() || b.inputs[0] != a.outputs[0]) continue;
      if (sink && !(per_tensor_qdq(b, "QuantizeLinear") || scalar_elementwise(b))) continue;
      if (hoist && !is_plain_transpose(b)) continue;
      if (hoist && reads_between(a, i, *j)) continue;  // a's other outputs must stay defined first
      // a: x -> v;  b: v -> y   ==>   b': x -> mid;  a': mid -> y
      const std::string mid = fresh(b.outputs[0] + (sink                            ? "/before_transpose"
                                                    : hoist && a.outputs.size() > 1 ? "/x_transposed"
                                                                                    : "/codes_transposed"));
      Node new_b = b;
      Node new_a = a;
      new_b.inputs[0] = a.inputs[0];
      new_b.outputs[0] = mid;
      new_a.inputs[0] = mid;
      new_a.outputs[0] = b.outputs[0];
      new_a.name = a.name + "/moved";
      g_.nodes[i] = std::move(new_b);
      g_.nodes[*j] = std::move(new_a);
      return true;
    }
    return false;
  }

  // DynamicQuantizeLinear(x) -> codes, scale, zero point: elementwise on x
  // with a scale from x's range, which T does not change, so the codes join
  // x's group (layout-neutral, scalar scale and zero point).
  static bool dynamic_quantize(const Node& n) {
    return n.op_type == "DynamicQuantizeLinear" && n.domain.empty() && n.inputs.size() == 1 && !n.inputs[0].empty() &&
           !n.outputs.empty() && !n.outputs[0].empty();
  }
  // Whether a node between indices i and j reads one of node a's outputs
  // other than the first.
  bool reads_between(const Node& a, size_t i, size_t j) const {
    for (size_t k = i + 1; k < j; ++k) {
      for (const auto& in : g_.nodes[k].inputs) {
        if (!in.empty() && std::find(a.outputs.begin() + 1, a.outputs.end(), in) != a.outputs.end()) return true;
      }
    }
    return false;
  }
  // Per-channel parameters computed at run time: the output (rank 1-3) of
  // an elementwise broadcast node whose operands are constants and scalars,
  // e.g. a dynamic conv's Mul(x_scale, w_scale [M, 1, 1]). It joins the
  // groups of its readers when every reader is an elementwise node joining
  // its rank-4 operands; in an NHWC group its constants are permuted like
  // any other (rank-aligned to 4), so it becomes [1, 1, 1, M] and still
  // broadcasts along the channels. (Values of rank 1-3 otherwise never join:
  // they broadcast along other axes than an activation's.)
  void find_params() {
    std::unordered_map<std::string, std::vector<const Node*>> readers;
    for (const Node& n : g_.nodes) {
      for (const auto& in : n.inputs) {
        if (!in.empty()) readers[in].push_back(&n);
      }
    }
    for (const Node& n : g_.nodes) {
      if (!n.domain.empty() || !broadcast_ops().count(n.op_type) || n.outputs.size() != 1 || n.outputs[0].empty() ||
          pinned_.count(n.outputs[0]) || rank(n.outputs[0]) < 1 || rank(n.outputs[0]) > 3 ||
          !readers.count(n.outputs[0])) {
        continue;
      }
      bool ok = true;
      for (const auto& in : n.inputs) {
        if (in.empty()) continue;
        if (is_constant(in)) {
          const Tensor& c = g_.initializers.at(in);
          ok = ok && c.rank() <= 4 && (dtype_bits(c.dtype()) >= 8 || c.numel() == 1);
        } else {
          ok = ok && rank(in) == 0;
        }
      }
      if (ok) params_.insert(n.outputs[0]);
    }
    for (bool changed = true; changed;) {
      changed = false;
      for (auto it = params_.begin(); it != params_.end();) {
        bool all = true;
        for (const Node* r : readers.at(*it)) all = all && r->outputs.size() == 1 && joined(*r).size() > 1;
        if (all) {
          ++it;
        } else {
          it = params_.erase(it);
          changed = true;
        }
      }
    }
  }

  Graph& g_;
  int64_t opset_;
  const std::function<bool(const Node&)>& convert_;
  std::unordered_map<std::string, const Node*> producer_;
  std::set<const Node*> candidates_;
  std::unordered_set<std::string> pinned_;
  std::unordered_map<std::string, std::string> parent_;
  std::unordered_set<std::string> nhwc_groups_;
  std::unordered_set<const Node*> transparent_;
  std::unordered_map<std::string, std::string> permuted_;
  std::unordered_set<std::string> node_names_, used_values_;
  std::unordered_map<std::string, int> inferred_;
  std::unordered_set<std::string> spatial_one_;
  std::unordered_set<std::string> params_;  // find_params
  std::vector<Shuffle> shuffles_;
};

}  // namespace

bool nhwc_layout(Graph& graph, int64_t opset, const std::function<bool(const Node&)>& convert) {
  return Layout(graph, opset, convert).run();
}

}  // namespace kvant
