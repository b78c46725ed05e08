// compile: the graph's nodes become steps (DESIGN.md §3).
//
// Patterns, tried at each anchor node in topological order:
//   DQ(x) , DQ(W const) -> MatMul|Gemm [-> Add(bias const)] [-> Relu|Clip] [-> Q]   => qgemm
//   DQ(a) , DQ(b) -> MatMul -> Q, both computed (attention Q K^T, A V)              => qmatmul (integer, batched)
//   DQ(x) , DQ(W const) [, DQ(bias int32 const)] -> Conv [-> Relu|Clip] -> Q          => qconv
//   MatMulNBits (bits 4, 8) ; DQ(W 4/8-bit const) -> MatMul|Gemm [-> Add]                => wq gemm (steps_wq.h)
//   x , W const -> MatMul|Gemm [-> Add(bias const)] [-> Relu|Clip]                    => sgemm
//   x , W const [, bias const] -> Conv [-> Relu|Clip]                                  => sconv
//   x , W const [, bias const] -> Conv -> Add(other, same inferred shape, computed
//     earlier) [-> Relu|Clip], not depthwise                                           => sconv + residual
//   x , DQ(W 4/8-bit const, per channel or blocked) [, bias] -> Conv [-> Relu|Clip]    => sconv (W dequantized once)
//   DynamicQuantizeLinear -> ConvInteger | NhwcConvInteger (W const) -> Cast -> Mul(x_scale * w_scale)
//     [-> Add(bias const)] [-> Relu|Clip]...                                           => dynamic conv
//     (steps_dynconv.cc; when another dynamic conv writes x, it also writes x's range for this one;
//     a DynamicQuantizeLinear read by several ConvIntegers: anchored at each, dropped once all are fused;
//     a 1-D ConvInteger runs as the 2-D step on [N, C, 1, L] between two views)
//   QuantizeLinear / DequantizeLinear with one scale                                   => quantize / dequantize
//   Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout                            => views
//   Resize (nearest|linear|cubic); DQ -> Resize(nearest) [-> Transpose] -> Q, same q   => resize (on codes)
//   DQ(x) -> BatchNormalization [-> Relu|Clip] -> Q, one scale each                    => a table per channel
//   BatchNormalization [-> Relu|Clip], AveragePool (2-D), LayerNormalization, HardSigmoid [-> Mul(x)],
//     NhwcMaxPool / NhwcAveragePool, NhwcBatchNormalization [-> Relu|Clip] on float32 (the layout pass's twins),
//     HardSwish, Dropout (inference), ReduceSum|Mean|Max, Where, GroupNormalization      => steps_fp32.h
//   anything else                                                                      => reference fallback
// A node after the anchor is fused only when the anchor's result has no other
// reader and is not a model output. A DQ feeding a fused anchor is absorbed;
// it still runs as its own step when something else reads its output.
#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <unordered_map>

#include "ops/op_registry.h"
#include "passes/pass.h"
#include "runtime/compiled_model.h"
#include "runtime/steps.h"
#include "runtime/steps_compare.h"
#include "runtime/steps_conv.h"
#include "runtime/steps_fp32.h"
#include "runtime/steps_qmatmul.h"
#include "runtime/steps_wq.h"

namespace kvant {

// A bias value in the int32 accumulator's scale, round(bias / acc_scale).
// False when it does not fit int32 or acc_scale is not a normal float (a
// product of tiny scales): the pattern then keeps its reference kernels.
static bool bias_in_acc(double bias, float acc_scale, int32_t& out) {
  if (!(acc_scale >= std::numeric_limits<float>::min())) return false;
  const double v = std::nearbyint(bias / acc_scale);
  if (!(v >= -2147483648.0 && v <= 2147483647.0)) return false;
  out = static_cast<int32_t>(v);
  return true;
}

namespace {

bool is_8bit(DType t) { return t == DType::kUInt8 || t == DType::kInt8; }

}  // namespace

class Compiler {
 public:
  explicit Compiler(CompiledModel& model) : m_(model), g_(model.model_.graph) {
    reads_ = count_reads(g_);
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      for (const auto& o : g_.nodes[i].outputs) {
        if (!o.empty()) producer_[o] = &g_.nodes[i];
      }
    }
  }

  void run() {
    // Pass 1: fusions at their anchors.
    for (const Node& node : g_.nodes) {
      if (consumed_.count(&node)) continue;
      if (auto f = match(node)) fusions_.emplace(&node, std::move(*f));
    }
    // A DynamicQuantizeLinear whose every reader was fused (dynamic convs
    // that each quantize x themselves) is not needed.
    for (const Node& node : g_.nodes) {
      if (node.op_type != "DynamicQuantizeLinear" || consumed_.count(&node) || fusions_.count(&node)) continue;
      int readers = 0;
      bool all_fused = true;
      for (const auto& o : node.outputs) all_fused = all_fused && !is_graph_output(g_, o);
      for (const Node& n : g_.nodes) {
        for (const auto& in : n.inputs) {
          if (in.empty() || std::find(node.outputs.begin(), node.outputs.end(), in) == node.outputs.end()) continue;
          ++readers;
          all_fused = all_fused && consumed_.count(&n) > 0;
        }
      }
      if (all_fused && readers > 0) consumed_.insert(&node);
    }
    // Pass 2: steps in graph order.
    for (const Node& node : g_.nodes) {
      auto it = fusions_.find(&node);
      if (it != fusions_.end()) {
        emit(std::move(it->second));
        continue;
      }
      if (consumed_.count(&node)) continue;
      if (node.op_type == "DequantizeLinear" && absorbed_reads_[node.outputs[0]] >= reads_[node.outputs[0]] &&
          absorbed_reads_[node.outputs[0]] > 0) {
        continue;  // every reader took the quantized input
      }
      if (fold(node)) continue;
      emit(single(node));
    }
    for (const auto& in : g_.inputs) {
      if (!g_.initializers.count(in.name)) m_.input_ids_.push_back(m_.value_index(in.name));
    }
    for (const auto& out : g_.outputs) m_.output_ids_.push_back(m_.value_index(out.name));
  }

 private:
  struct Fusion {
    std::unique_ptr<Step> step;
    std::vector<const Node*> nodes;
    std::vector<std::string> inputs, outputs;
    std::vector<Fusion> then;   // further steps of the same fusion (views after a lookup table)
    bool dynamic_conv = false;  // a dynamic conv step (its range may feed the next one)
  };

  void emit(Fusion f) {
    for (const Node* n : f.nodes) f.step->fused.push_back(n->name);
    f.step->name = f.nodes.front()->name;
    for (const auto& name : f.inputs) f.step->inputs.push_back(m_.value_index(name));
    for (const auto& name : f.outputs) f.step->outputs.push_back(m_.value_index(name));
    m_.steps_.push_back(std::move(f.step));
    for (Fusion& next : f.then) emit(std::move(next));
  }

  // Evaluates a node whose inputs are all constants now (e.g. the DQ of a
  // weight whose consumer stays in float) and records its outputs as
  // constants. False when it cannot.
  bool fold(const Node& node) {
    if (node.num_present_inputs() == 0 || node.op_type.rfind("Random", 0) == 0) return false;
    for (const auto& in : node.inputs) {
      if (!in.empty() && constant(in) == nullptr) return false;
    }
    for (const auto& [k, attr] : node.attributes) {
      if (attr.g || !attr.graphs.empty()) return false;
    }
    const OpDef* op = find_op(node.domain, node.op_type);
    if (op == nullptr) return false;
    KernelContext ctx{node, m_.model_.opset(node.domain), {}, {}, nullptr};
    for (const auto& in : node.inputs) ctx.inputs.push_back(in.empty() ? nullptr : constant(in));
    ctx.outputs.resize(node.outputs.size());
    try {
      op->run(ctx);
    } catch (const Error&) {
      return false;  // left to run (and report) at run time
    }
    for (size_t i = 0; i < node.outputs.size(); ++i) {
      if (!node.outputs[i].empty() && ctx.outputs[i].defined()) g_.initializers[node.outputs[i]] = ctx.outputs[i];
    }
    return true;
  }

  Fusion single(const Node& node) {
    const int64_t opset = m_.model_.opset(node.domain);
    Fusion f;
    f.nodes = {&node};
    f.inputs = node.inputs;
    f.outputs = node.outputs;
    std::set<std::string> captures;
    for (const auto& [k, attr] : node.attributes) {
      if (attr.g) {
        for (const auto& c : attr.g->captured_values()) captures.insert(c);
      }
      for (const auto& sub : attr.graphs) {
        for (const auto& c : sub->captured_values()) captures.insert(c);
      }
    }
    bool has_body = false;
    for (const auto& [k, attr] : node.attributes) has_body = has_body || attr.g || !attr.graphs.empty();
    if (has_body) {  // If/Loop/Scan: bodies compiled on first use (steps_control.cc)
      std::vector<std::string> names;
      std::map<std::string, Tensor> constants;
      for (const auto& c : captures) {
        if (const Tensor* t = constant(c)) {
          constants.emplace(c, *t);
        } else {
          names.push_back(c);
        }
      }
      f.inputs.insert(f.inputs.end(), names.begin(), names.end());
      f.step = make_control_flow_step(node, opset, m_.model_, m_.options_, std::move(names), std::move(constants));
      return f;
    }
    if (node.domain.empty() && (node.op_type == "QuantizeLinear" || node.op_type == "DequantizeLinear")) {
      QuantScalar q;
      if (node.inputs.size() >= 2 && quant_scalar(node, q) && !constant(node.inputs[0])) {
        f.step = node.op_type == "QuantizeLinear" ? make_quantize_step(q) : make_dequantize_step(q);
        f.inputs = {node.inputs[0]};
        return f;
      }
    }
    // A Dropout is a view only when it cannot be in training mode: its
    // training_mode input absent or a constant false (a runtime one may be
    // true: the reference then names random dropout as unsupported).
    const bool may_train = node.op_type == "Dropout" && node.inputs.size() > 2 && !node.inputs[2].empty() &&
                           (constant(node.inputs[2]) == nullptr || constant(node.inputs[2])->get_as_int64(0) != 0);
    // A view or copy plans its output shape once per set of input shapes, so
    // its shape-giving inputs (Reshape's shape, Slice's starts, Split's
    // sizes, Pad's pads, Expand's shape, ...) must be fixed by those shapes;
    // a value a run can change (a model input, data read from one) leaves the
    // node to the reference kernel, which reads it every run.
    if (!shape_inputs_fixed(node)) {
      f.step = make_fallback_step(node, opset);
      return f;
    }
    f.step = may_train ? nullptr : make_view_step(node, opset);
    if (f.step) {
      f.inputs = {node.inputs[0]};
      if (node.op_type == "Reshape") f.inputs = {node.inputs[0], node.inputs[1]};
      if ((node.op_type == "Squeeze" || node.op_type == "Unsqueeze") && node.inputs.size() > 1) f.inputs = node.inputs;
      f.outputs = {node.outputs[0]};
      return f;
    }
    f.step = make_copy_step(node, opset);
    if (f.step) return f;
    f.step = make_fallback_step(node, opset);
    return f;
  }

  // ---- graph queries ----
  const Tensor* constant(const std::string& name) const {
    if (name.empty()) return nullptr;
    auto it = g_.initializers.find(name);
    if (it == g_.initializers.end() || g_.find_input(name) != nullptr) return nullptr;
    return &it->second;
  }
  const Node* producer(const std::string& name) const {
    auto it = producer_.find(name);
    return it == producer_.end() ? nullptr : it->second;
  }
  // The only node reading `name`, when there is exactly one and it is not a model output.
  const Node* sole_reader(const std::string& name) const {
    if (is_graph_output(g_, name)) return nullptr;
    auto it = reads_.find(name);
    if (it == reads_.end() || it->second != 1) return nullptr;
    for (const Node& n : g_.nodes) {
      for (const auto& in : n.inputs) {
        if (in == name) return &n;
      }
    }
    return nullptr;
  }
  // A DQ / Q node's scale and zero point when both are constant scalars.
  bool quant_scalar(const Node& node, QuantScalar& q) const {
    const Tensor* scale = constant(node.inputs[1]);
    if (scale == nullptr || scale->numel() != 1 || scale->dtype() != DType::kFloat32) return false;
    q.scale = scale->data<float>()[0];
    if (!(q.scale > 0.0f) || !std::isfinite(q.scale)) return false;
    q.zero_point = 0;
    q.is_signed = false;
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
      const Tensor* zp = constant(node.inputs[2]);
      if (zp == nullptr || zp->numel() != 1 || !is_8bit(zp->dtype())) return false;
      q.is_signed = zp->dtype() == DType::kInt8;
      q.zero_point = static_cast<int32_t>(zp->get_as_int64(0));
    } else if (node.op_type == "QuantizeLinear" && node.attributes.count("output_dtype")) {
      return false;
    }
    return true;
  }
  // DQ(x) of a non-constant 8-bit activation with one scale.
  const Node* activation_dq(const std::string& name, QuantScalar& q) const {
    const Node* dq = producer(name);
    if (dq == nullptr || dq->op_type != "DequantizeLinear" || !dq->domain.empty()) return nullptr;
    if (constant(dq->inputs[0]) || !quant_scalar(*dq, q)) return nullptr;
    return dq;
  }
  // Relu or Clip (constant bounds) reading `value` alone: its clamp.
  const Node* activation_after(const std::string& value, FloatClamp& clamp) const {
    const Node* next = sole_reader(value);
    if (next == nullptr || !next->domain.empty()) return nullptr;
    if (next->op_type == "Relu") {
      clamp.lo = std::max(clamp.lo, 0.0f);
      return next;
    }
    if (next->op_type == "Clip") {
      if (m_.model_.opset() < 11) {
        clamp.lo = std::max(clamp.lo, next->attr_float("min", -std::numeric_limits<float>::infinity()));
        clamp.hi = std::min(clamp.hi, next->attr_float("max", std::numeric_limits<float>::infinity()));
        return next;
      }
      for (size_t i = 1; i < 3; ++i) {
        if (next->inputs.size() <= i || next->inputs[i].empty()) continue;
        const Tensor* t = constant(next->inputs[i]);
        if (t == nullptr || t->numel() != 1 || t->dtype() != DType::kFloat32) return nullptr;
        if (i == 1) clamp.lo = std::max(clamp.lo, t->data<float>()[0]);
        if (i == 2) clamp.hi = std::min(clamp.hi, t->data<float>()[0]);
      }
      return next;
    }
    return nullptr;
  }
  // SiLU of a float `value` read by nothing else: Sigmoid(value) read only by
  // Mul(value, Sigmoid(value)) (either order), the two reads of value. The Mul.
  const Node* silu_after(const std::string& value) const {
    if (is_graph_output(g_, value)) return nullptr;
    auto it = reads_.find(value);
    if (it == reads_.end() || it->second != 2) return nullptr;
    for (const Node& n : g_.nodes) {
      if (n.op_type != "Sigmoid" || !n.domain.empty() || n.inputs.size() != 1 || n.inputs[0] != value) continue;
      const Node* mul = sole_reader_of(n.outputs[0], "Mul");
      if (mul == nullptr || mul->inputs.size() != 2) return nullptr;
      const bool pair = (mul->inputs[0] == value && mul->inputs[1] == n.outputs[0]) ||
                        (mul->inputs[1] == value && mul->inputs[0] == n.outputs[0]);
      return pair ? mul : nullptr;
    }
    return nullptr;
  }
  // Hard swish of a float `value` read by nothing else, as exporters before
  // opset 14 write it: HardSigmoid(value) read only by Mul(value,
  // HardSigmoid(value)) (either order), the two reads of value. The Mul;
  // hs gets the HardSigmoid's alpha and beta.
  const Node* hard_swish_after(const std::string& value, HardSwishParams& hs) const {
    if (is_graph_output(g_, value)) return nullptr;
    auto it = reads_.find(value);
    if (it == reads_.end() || it->second != 2) return nullptr;
    for (const Node& n : g_.nodes) {
      if (n.op_type != "HardSigmoid" || !n.domain.empty() || n.inputs.size() != 1 || n.inputs[0] != value) continue;
      const Node* mul = sole_reader_of(n.outputs[0], "Mul");
      if (mul == nullptr || mul->inputs.size() != 2) return nullptr;
      const bool pair = (mul->inputs[0] == value && mul->inputs[1] == n.outputs[0]) ||
                        (mul->inputs[1] == value && mul->inputs[0] == n.outputs[0]);
      hs.alpha = n.attr_float("alpha", 0.2f);
      hs.beta = n.attr_float("beta", 0.5f);
      return pair ? mul : nullptr;
    }
    return nullptr;
  }
  // Q reading `value` alone, with one scale: its parameters.
  const Node* quantize_after(const std::string& value, QuantScalar& q) const {
    const Node* next = sole_reader(value);
    if (next == nullptr || next->op_type != "QuantizeLinear" || !next->domain.empty()) return nullptr;
    if (next->inputs.size() < 2 || !quant_scalar(*next, q)) return nullptr;
    return next;
  }

  // ---- matching ----
  std::optional<Fusion> match(const Node& node) {
    if (node.domain == "com.kvant") {  // the layout pass's NHWC twins
      if (node.op_type == "NhwcConv") {
        if (auto f = match_qconv(node, true)) return f;
        return match_sconv(node, true);  // an FP32 conv the layout pass made NHWC (compiled_model.cc)
      }
      if (node.op_type == "NhwcConvInteger" && !node.inputs.empty()) {  // its DynamicQuantizeLinear has other readers
        const Node* d = producer(node.inputs[0]);
        return d != nullptr ? match_dynamic_conv(*d, &node) : std::nullopt;
      }
      if (node.op_type == "NhwcMaxPool" || node.op_type == "NhwcAveragePool") return match_pool_nhwc(node);
      if (node.op_type == "NhwcBatchNormalization") return match_batchnorm(node, true);
      if (node.op_type == "NhwcGlobalAveragePool") {
        if (auto f = match_qgap(node, true)) return f;
        if (node.inputs.empty() || !is_float_value_depth(node.inputs[0], 0)) return std::nullopt;
        Fusion f;
        f.nodes = {&node};
        f.step = make_global_avgpool_nhwc_f32_step();
        f.inputs = {node.inputs[0]};
        f.outputs = {node.outputs[0]};
        return f;
      }
      return std::nullopt;
    }
    if (node.domain == "com.microsoft" && node.op_type == "MatMulNBits") return match_wq(node);
    if (!node.domain.empty()) return std::nullopt;
    if (node.op_type == "MatMul" || node.op_type == "Gemm") {
      if (auto f = match_qgemm(node)) return f;
      if (auto f = match_wq(node)) return f;
      if (auto f = match_sgemm(node)) return f;
      if (auto f = match_qmatmul(node)) return f;
      if (node.op_type == "MatMul" && !constant(node.inputs[0]) && !constant(node.inputs[1])) {
        Fusion f;
        f.nodes = {&node};
        f.step = make_batched_matmul_step(node);
        f.inputs = node.inputs;
        f.outputs = node.outputs;
        return f;
      }
      return std::nullopt;
    }
    if (node.op_type == "DynamicQuantizeLinear") {
      if (auto f = match_dynamic_gemm(node)) return f;
      return match_dynamic_conv(node);
    }
    if (node.op_type == "ConvInteger" && !node.inputs.empty()) {  // its DynamicQuantizeLinear has other readers
      const Node* d = producer(node.inputs[0]);
      return d != nullptr ? match_dynamic_conv(*d, &node) : std::nullopt;
    }
    if (node.op_type == "LSTM") return match_lstm(node);
    if (node.op_type == "Conv") {
      if (auto f = match_qconv(node)) return f;
      if (auto f = match_sconv(node)) return f;
      return match_conv1d(node);
    }
    if (node.op_type == "Add" || node.op_type == "Mul") {
      if (auto f = match_qadd(node)) return f;
    }
    if (node.op_type == "MaxPool") {
      if (auto f = match_qmaxpool(node)) return f;
      return match_float_maxpool(node);
    }
    if (node.op_type == "Div") {
      if (auto f = match_gelu(node)) return f;
    }
    if (node.op_type == "Add" || node.op_type == "Sub" || node.op_type == "Mul" || node.op_type == "Div") {
      // With a scalar constant, on a DQ that other nodes read too (GELU's
      // x / sqrt(2), whose x the gate's Mul reads): a lookup chain, as for
      // the unary ops below.
      for (size_t side = 0; side < node.inputs.size() && side < 2; ++side) {
        QuantScalar x;
        const Node* dq = scalar_binary_side(node, node.inputs[side]) == static_cast<int>(side)
                             ? activation_dq(node.inputs[side], x)
                             : nullptr;
        if (dq != nullptr && sole_reader(dq->outputs[0]) == nullptr) {
          if (auto f = match_lookup(*dq, &node)) return f;
        }
      }
      return match_binary(node);
    }
    if (lookup_unary(node.op_type) && !node.inputs.empty()) {
      QuantScalar x;
      if (const Node* dq = activation_dq(node.inputs[0], x); dq != nullptr && sole_reader(dq->outputs[0]) == nullptr) {
        if (auto f = match_lookup(*dq, &node)) return f;
      }
    }
    if (node.op_type == "Sigmoid") {
      if (auto f = match_silu(node)) return f;
    }
    if (node.op_type == "Relu" || node.op_type == "Clip" || node.op_type == "Sigmoid" || node.op_type == "Tanh" ||
        node.op_type == "Erf" || node.op_type == "Neg" || node.op_type == "Abs" || node.op_type == "Sqrt" ||
        node.op_type == "Reciprocal" || node.op_type == "Pow") {
      return match_unary(node);
    }
    if (node.op_type == "Softmax" && is_float_value_depth(node.inputs[0], 0)) {
      Fusion f;
      f.nodes = {&node};
      f.step = make_softmax_step(node, m_.model_.opset());
      f.inputs = {node.inputs[0]};
      f.outputs = {node.outputs[0]};
      return f;
    }
    if (node.op_type == "GlobalAveragePool") {
      if (auto f = match_qgap(node)) return f;
      if (!is_float_value_depth(node.inputs[0], 0)) return std::nullopt;
      Fusion f;
      f.nodes = {&node};
      f.step = make_global_avgpool_f32_step();
      f.inputs = {node.inputs[0]};
      f.outputs = {node.outputs[0]};
      return f;
    }
    if (node.op_type == "Resize") return match_resize(node);
    if (node.op_type == "Gather") return match_gather(node);
    if (node.op_type == "Cast") return match_cast(node);
    if (node.op_type == "DequantizeLinear") return match_lookup(node);
    if (node.op_type == "ReduceMean") {
      if (auto f = match_layernorm(node)) return f;
    }
    if (auto f = match_fp32_op(node)) return f;             // steps_fp32.h
    if (auto f = match_compare_minmax_exp(node)) return f;  // steps_compare.h
    if (node.op_type == "Transpose" && node.domain.empty() && node.inputs.size() == 1 && node.outputs.size() == 1 &&
        constant(node.inputs[0]) == nullptr) {  // a constant one is folded
      Fusion f;
      f.nodes = {&node};
      f.step = make_transpose_step(node.attr_ints("perm"), m_.options_.isa);
      f.inputs = {node.inputs[0]};
      f.outputs = {node.outputs[0]};
      return f;
    }
    return std::nullopt;
  }

  // Whether every input of `node` past its data input (0) that sets the
  // output's shape is fixed by the input shapes (fixed_by_shapes); Pad's
  // constant value (input 2) only fills, so it may change per run.
  bool shape_inputs_fixed(const Node& node) const {
    static const std::set<std::string> kShaped = {"Reshape", "Squeeze", "Unsqueeze", "Slice",
                                                  "Split",   "Pad",     "Expand",    "Tile"};
    if (!node.domain.empty() || kShaped.count(node.op_type) == 0) return true;
    for (size_t i = 1; i < node.inputs.size(); ++i) {
      if (node.op_type == "Pad" && i == 2) continue;
      if (!fixed_by_shapes(node.inputs[i], 0)) return false;
    }
    return true;
  }

  // Whether `name` is absent, a constant, or computed from constants and
  // Shape / Size alone (so the planning run fixes it).
  bool fixed_by_shapes(const std::string& name, int depth) const {
    if (name.empty() || constant(name) != nullptr) return true;
    const Node* p = producer(name);
    if (p == nullptr || depth > 16 || !p->domain.empty()) return false;
    if (p->op_type == "Shape" || p->op_type == "Size") return true;
    if (p->op_type.rfind("Random", 0) == 0) return false;
    auto memo = fixed_memo_.find(name);
    if (memo != fixed_memo_.end()) return memo->second;
    bool fixed = true;
    for (const auto& in : p->inputs) fixed = fixed && fixed_by_shapes(in, depth + 1);
    fixed_memo_[name] = fixed;
    return fixed;
  }
  mutable std::unordered_map<std::string, bool> fixed_memo_;

  // Resize of a computed value (steps_resize.cc); DQ -> Resize(nearest)
  // [-> Transpose] -> Q with one scale and zero point is the same copy on
  // the codes (exact:
  // Q(DQ(q)) = q for a scale that cannot overflow (q - zp) * scale).
  std::optional<Fusion> match_resize(const Node& node) {
    if (node.inputs.empty() || constant(node.inputs[0]) != nullptr) return std::nullopt;  // folded
    // The output shape is planned: roi/scales/sizes must be fixed by the
    // input shapes (a sizes model input could change between runs).
    for (size_t i = 1; i < node.inputs.size(); ++i) {
      if (!fixed_by_shapes(node.inputs[i], 0)) return std::nullopt;
    }
    const int64_t opset = m_.model_.opset();
    auto step = make_resize_step(node, opset, m_.options_.threads, m_.options_.isa);
    if (!step) return std::nullopt;
    Fusion f;
    f.nodes = {&node};
    f.inputs = node.inputs;
    f.outputs = node.outputs;
    QuantScalar x, y;
    const Node* dx = activation_dq(node.inputs[0], x);
    const bool nearest = node.attr_string("mode", "nearest") == "nearest";
    // A Transpose between the Resize and the Q (the layout pass's way back
    // to NHWC) moves the codes too.
    const Node* tr = dx != nullptr && nearest ? sole_reader(node.outputs[0]) : nullptr;
    if (tr != nullptr && (tr->op_type != "Transpose" || !tr->domain.empty() || tr->outputs.size() != 1)) tr = nullptr;
    const Node* q = dx != nullptr && nearest ? quantize_after((tr ? tr : &node)->outputs[0], y) : nullptr;
    if (q != nullptr && x.scale == y.scale && x.zero_point == y.zero_point && x.is_signed == y.is_signed &&
        x.scale < 1e30f) {
      if (tr != nullptr) f.nodes.push_back(tr);
      f.nodes.push_back(q);
      for (const Node* n : f.nodes) consumed_.insert(n);
      ++absorbed_reads_[dx->outputs[0]];
      f.inputs[0] = dx->inputs[0];
      f.outputs = {q->outputs[0]};
      if (tr != nullptr) {
        f.outputs = {unique_value_name(g_, node.outputs[0] + "_codes")};
        Fusion part;
        part.nodes = {tr};
        part.step = make_transpose_step(tr->attr_ints("perm"), m_.options_.isa);
        part.inputs = f.outputs;
        part.outputs = {q->outputs[0]};
        f.then.push_back(std::move(part));
      }
    }
    f.step = std::move(step);
    return f;
  }

  // Gather with non-constant indices: a copy step; on DQ(constant 8-bit
  // table) read by this Gather alone (an embedding), the rows are
  // dequantized as they are gathered and the table stays 8-bit.
  std::optional<Fusion> match_gather(const Node& node) {
    if (node.inputs.size() != 2 || node.outputs.size() != 1 ||
        (constant(node.inputs[0]) != nullptr && constant(node.inputs[1]) != nullptr)) {
      return std::nullopt;  // folded
    }
    Fusion f;
    f.nodes = {&node};
    f.outputs = {node.outputs[0]};
    const int64_t axis = node.attr_int("axis", 0);
    const Node* dq = producer(node.inputs[0]);
    if (dq != nullptr && dq->op_type == "DequantizeLinear" && dq->domain.empty() && !constant(node.inputs[1]) &&
        sole_reader(dq->outputs[0]) == &node && dq->attr_int("block_size", 0) == 0) {
      const Tensor* q = constant(dq->inputs[0]);
      const Tensor* scale = dq->inputs.size() > 1 ? constant(dq->inputs[1]) : nullptr;
      const Tensor* zp = dq->inputs.size() > 2 && !dq->inputs[2].empty() ? constant(dq->inputs[2]) : nullptr;
      const bool zp_ok = dq->inputs.size() <= 2 || dq->inputs[2].empty() ||
                         (zp != nullptr && q != nullptr && zp->dtype() == q->dtype() && scale != nullptr &&
                          zp->numel() == scale->numel());
      if (q != nullptr && is_8bit(q->dtype()) && q->rank() >= 1 && scale != nullptr &&
          scale->dtype() == DType::kFloat32 && scale->rank() <= 1 && zp_ok) {
        const int64_t dq_axis = dq->attr_int("axis", 1);
        const int64_t rank = q->rank();
        const bool per_tensor = scale->numel() == 1;
        const bool per_axis = !per_tensor && m_.model_.opset() >= 13 && dq_axis >= -rank && dq_axis < rank &&
                              scale->numel() == q->dim(static_cast<int>(dq_axis < 0 ? dq_axis + rank : dq_axis));
        if (per_tensor || per_axis) {
          std::vector<float> sc(scale->data<float>(), scale->data<float>() + scale->numel());
          std::vector<int32_t> z(sc.size(), 0);
          for (size_t i = 0; zp != nullptr && i < z.size(); ++i) {
            z[i] = static_cast<int32_t>(zp->get_as_int64(static_cast<int64_t>(i)));
          }
          f.step = make_gather_dequantize_step(*q, axis, std::move(sc), std::move(z), dq_axis);
          f.inputs = {node.inputs[1]};
          ++absorbed_reads_[dq->outputs[0]];
          return f;
        }
      }
    }
    f.step = make_gather_step(axis);
    f.inputs = node.inputs;
    return f;
  }

  // Cast of a computed value to a numeric type (a constant one is folded).
  std::optional<Fusion> match_cast(const Node& node) {
    if (node.inputs.size() != 1 || node.outputs.size() != 1 || constant(node.inputs[0]) != nullptr ||
        !node.has_attr("to")) {
      return std::nullopt;
    }
    const int64_t code = node.attr_int("to", 0);
    if (code <= 0 || code > 64 || !is_known_dtype(static_cast<int32_t>(code))) return std::nullopt;
    const auto to = static_cast<DType>(code);
    if (dtype_bits(to) < 8) return std::nullopt;  // string, int4: the reference names them
    Fusion f;
    f.nodes = {&node};
    f.step = make_cast_step(node, to);
    f.inputs = node.inputs;
    f.outputs = node.outputs;
    return f;
  }

  // DynamicQuantizeLinear -> MatMulInteger(W const) -> Cast -> Mul(., x_scale * w_scale) [-> Add bias] [-> act]
  std::optional<Fusion> match_dynamic_gemm(const Node& d) {
    if (d.outputs.size() < 3) return std::nullopt;
    const Node* mm = sole_reader(d.outputs[0]);
    if (mm == nullptr || mm->op_type != "MatMulInteger" || mm->inputs.size() < 2 || mm->inputs[0] != d.outputs[0]) {
      return std::nullopt;
    }
    if (mm->inputs.size() < 3 || mm->inputs[2] != d.outputs[2] || sole_reader(d.outputs[2]) != mm) return std::nullopt;
    const Tensor* w = constant(mm->inputs[1]);
    if (w == nullptr || w->rank() != 2 || !is_8bit(w->dtype())) return std::nullopt;
    const Tensor* wz = mm->inputs.size() > 3 && !mm->inputs[3].empty() ? constant(mm->inputs[3]) : nullptr;
    if (mm->inputs.size() > 3 && !mm->inputs[3].empty() &&
        (wz == nullptr || (wz->numel() != 1 && wz->numel() != w->dim(1)))) {
      return std::nullopt;
    }
    const Node* cast = sole_reader(mm->outputs[0]);
    if (cast == nullptr || cast->op_type != "Cast" || cast->attr_int("to", 0) != 1) return std::nullopt;
    const Node* scale_mul = sole_reader(d.outputs[1]);
    if (scale_mul == nullptr || scale_mul->op_type != "Mul") return std::nullopt;
    const std::string ws_name = scale_mul->inputs[0] == d.outputs[1] ? scale_mul->inputs[1] : scale_mul->inputs[0];
    const Tensor* ws = constant(ws_name);
    const int64_t n = w->dim(1);
    if (ws == nullptr || ws->dtype() != DType::kFloat32 || (ws->numel() != 1 && ws->numel() != n)) return std::nullopt;
    const Node* out_mul = sole_reader(cast->outputs[0]);
    if (out_mul == nullptr || out_mul->op_type != "Mul" || sole_reader(scale_mul->outputs[0]) != out_mul)
      return std::nullopt;
    DynamicGemmParams p;
    p.k = static_cast<int>(w->dim(0));
    p.n = static_cast<int>(n);
    const bool u8 = w->dtype() == DType::kUInt8;
    p.weight.resize(static_cast<size_t>(w->numel()));
    for (int64_t i = 0; i < w->numel(); ++i)
      p.weight[static_cast<size_t>(i)] = static_cast<int8_t>(w->get_as_int64(i) - (u8 ? 128 : 0));
    if (wz != nullptr || u8) {
      bool any = false;
      for (int64_t j = 0; j < n; ++j) {
        const int64_t z = (wz ? wz->get_as_int64(wz->numel() == 1 ? 0 : j) : (u8 ? 128 : 0)) - (u8 ? 128 : 0);
        p.w_zp.push_back(static_cast<int8_t>(z));
        any = any || z != 0;
      }
      if (!any) p.w_zp.clear();
    }
    p.w_scale.assign(ws->data<float>(), ws->data<float>() + ws->numel());
    Fusion f;
    f.nodes = {&d, mm, cast, scale_mul, out_mul};
    std::string tail = out_mul->outputs[0];
    if (const Node* add = sole_reader(tail); add != nullptr && add->op_type == "Add" && add->inputs.size() == 2) {
      const Tensor* b = constant(add->inputs[0] == tail ? add->inputs[1] : add->inputs[0]);
      if (b != nullptr && b->dtype() == DType::kFloat32 && b->numel() == n && add->inputs[0] != add->inputs[1]) {
        p.bias.assign(b->data<float>(), b->data<float>() + n);
        f.nodes.push_back(add);
        tail = add->outputs[0];
      }
    }
    if (const Node* act = activation_after(tail, p.clamp)) {
      f.nodes.push_back(act);
      tail = act->outputs[0];
    }
    p.isa = m_.options_.isa;
    for (const Node* x : f.nodes) consumed_.insert(x);
    f.step = make_dynamic_gemm_step(std::move(p));
    f.inputs = {d.inputs[0]};
    f.outputs = {tail};
    return f;
  }

  // Whether `name` holds float32: its inferred type when shape inference
  // gave one, else traced back through data-movement ops.
  bool is_float_value_depth(const std::string& name, int depth) const {
    if (depth > 64) return false;
    if (const Tensor* t = constant(name)) return t->dtype() == DType::kFloat32;
    if (const ValueInfo* in = g_.find_input(name)) return in->type.dtype == DType::kFloat32;
    if (auto it = g_.value_info.find(name); it != g_.value_info.end() && it->second.type.dtype != DType::kUndefined) {
      return it->second.type.dtype == DType::kFloat32;
    }
    const Node* p = producer(name);
    if (p != nullptr && p->domain == "com.microsoft" && p->op_type == "MatMulNBits") return true;  // float A, float Y
    if (p != nullptr && p->domain == "com.kvant" && p->op_type.rfind("Nhwc", 0) == 0) {  // the layout pass's twins
      return !p->inputs.empty() && is_float_value_depth(p->inputs[0], depth + 1);
    }
    if (p == nullptr || !p->domain.empty()) return false;
    static const std::set<std::string> kMake = {"Conv",
                                                "Gemm",
                                                "MatMul",
                                                "Sigmoid",
                                                "Tanh",
                                                "AveragePool",
                                                "GlobalAveragePool",
                                                "DequantizeLinear",
                                                "BatchNormalization",
                                                "LayerNormalization",
                                                "Softmax",
                                                "Erf",
                                                "HardSwish",
                                                "HardSigmoid",
                                                "Gelu",
                                                "Sqrt",
                                                "Reciprocal",
                                                "ReduceMean",
                                                "ConvTranspose",
                                                "InstanceNormalization",
                                                "GroupNormalization"};
    if (kMake.count(p->op_type)) return true;
    static const std::set<std::string> kKeep = {"Transpose", "Reshape",   "Flatten", "Concat", "Squeeze", "Unsqueeze",
                                                "Slice",     "Split",     "MaxPool", "Relu",   "Clip",    "Add",
                                                "Sub",       "Mul",       "Div",     "Resize", "Pow",     "Dropout",
                                                "ReduceMax", "ReduceSum", "Neg",     "Abs"};
    if (kKeep.count(p->op_type)) return !p->inputs.empty() && is_float_value_depth(p->inputs[0], depth + 1);
    if (p->op_type == "Gather") return is_float_value_depth(p->inputs[0], depth + 1);
    // Cast to float (ONNX FLOAT = 1): a dynamic conv or GEMM's int32 -> float.
    if (p->op_type == "Cast") return p->attr_int("to", 0) == 1;
    if (p->op_type == "Exp" || p->op_type == "Max" || p->op_type == "Min") {  // steps_compare.h
      return !p->inputs.empty() && is_float_value_depth(p->inputs[0], depth + 1);
    }
    return false;
  }

  std::optional<Fusion> match_binary(const Node& node) {
    if (node.inputs.size() != 2 || !is_float_value_depth(node.inputs[0], 0) ||
        !is_float_value_depth(node.inputs[1], 0)) {
      return std::nullopt;
    }
    if (constant(node.inputs[0]) && constant(node.inputs[1])) return std::nullopt;
    const BinaryOp op = node.op_type == "Add"   ? BinaryOp::kAdd
                        : node.op_type == "Sub" ? BinaryOp::kSub
                        : node.op_type == "Mul" ? BinaryOp::kMul
                                                : BinaryOp::kDiv;
    Fusion f;
    f.nodes = {&node};
    std::string tail = node.outputs[0];
    FloatClamp clamp;
    if (const Node* act = activation_after(tail, clamp)) {
      f.nodes.push_back(act);
      tail = act->outputs[0];
    }
    for (const Node* n : f.nodes) consumed_.insert(n);
    f.step = make_binary_step(op, clamp);
    f.inputs = node.inputs;
    f.outputs = {tail};
    return f;
  }

  // The decomposed layer normalization of exporters at opset < 17:
  //   m = ReduceMean(x, [-1]); d = Sub(x, m); p = Pow(d, 2); v = ReduceMean(p, [-1])
  //   s = Sqrt(Add(v, eps)); n = Div(d, s) [; Mul(n, gamma)] [; Add(., beta)]
  // with constant eps, gamma, beta (1-D, the last axis) -> one layernorm step.
  bool reduces_last_axis_only(const Node& node) const {
    if (node.op_type != "ReduceMean" || !node.domain.empty() || node.attr_int("keepdims", 1) != 1) return false;
    std::vector<int64_t> axes = node.attr_ints("axes");
    if (node.inputs.size() > 1 && !node.inputs[1].empty()) {
      const Tensor* t = constant(node.inputs[1]);
      if (t == nullptr || t->numel() != 1) return false;
      axes = {t->get_as_int64(0)};
    }
    if (axes.size() != 1) return false;
    if (axes[0] == -1) return true;
    const ValueInfo* vi = nullptr;
    if (auto it = g_.value_info.find(node.inputs[0]); it != g_.value_info.end()) vi = &it->second;
    if (vi == nullptr) vi = g_.find_input(node.inputs[0]);
    return vi != nullptr && vi->type.has_shape && axes[0] == static_cast<int64_t>(vi->type.dims.size()) - 1;
  }
  const Node* sole_reader_of(const std::string& value, const char* op) const {
    const Node* n = sole_reader(value);
    return n != nullptr && n->op_type == op && n->domain.empty() ? n : nullptr;
  }
  // The scalar constant among a binary node's inputs (the other being `value`).
  const Tensor* other_constant(const Node& node, const std::string& value) const {
    if (node.inputs.size() != 2) return nullptr;
    const std::string& other = node.inputs[0] == value ? node.inputs[1] : node.inputs[0];
    if (node.inputs[0] != value && node.inputs[1] != value) return nullptr;
    const Tensor* t = constant(other);
    return t != nullptr && t->dtype() == DType::kFloat32 ? t : nullptr;
  }
  std::optional<Fusion> match_layernorm(const Node& mean) {
    // x is float32: Add(v, eps) needs v of eps's type (checked below), and v,
    // Pow's output and d all have x's type.
    if (!reduces_last_axis_only(mean)) return std::nullopt;
    const std::string& x = mean.inputs[0];
    const Node* sub = sole_reader_of(mean.outputs[0], "Sub");
    if (sub == nullptr || sub->inputs.size() != 2 || sub->inputs[0] != x || sub->inputs[1] != mean.outputs[0])
      return std::nullopt;
    const std::string& d = sub->outputs[0];
    if (is_graph_output(g_, d) || reads_[d] != 2) return std::nullopt;
    const Node* pow = nullptr;
    const Node* div = nullptr;
    for (const Node& n : g_.nodes) {
      if (n.inputs.empty() || n.inputs[0] != d) continue;
      if (n.op_type == "Pow") pow = &n;
      if (n.op_type == "Div") div = &n;
    }
    if (pow == nullptr || div == nullptr || pow->inputs.size() != 2 || div->inputs.size() != 2) return std::nullopt;
    const Tensor* two = constant(pow->inputs[1]);
    if (two == nullptr || two->numel() != 1 || two->dtype() != DType::kFloat32 || two->data<float>()[0] != 2.0f)
      return std::nullopt;
    const Node* var = sole_reader(pow->outputs[0]);
    if (var == nullptr || !reduces_last_axis_only(*var)) return std::nullopt;
    const Node* add = sole_reader_of(var->outputs[0], "Add");
    const Tensor* eps = add == nullptr ? nullptr : other_constant(*add, var->outputs[0]);
    if (eps == nullptr || eps->numel() != 1) return std::nullopt;
    const Node* sqrt = sole_reader_of(add->outputs[0], "Sqrt");
    if (sqrt == nullptr || sole_reader(sqrt->outputs[0]) != div || div->inputs[1] != sqrt->outputs[0])
      return std::nullopt;
    std::vector<const Node*> nodes = {&mean, sub, pow, var, add, sqrt, div};
    std::vector<float> gamma, beta;
    std::string tail = div->outputs[0];
    auto vector_of = [&](const Node* n, std::vector<float>& v) {
      const Tensor* t = n == nullptr ? nullptr : other_constant(*n, tail);
      if (t == nullptr || t->rank() != 1) return false;
      v.assign(t->data<float>(), t->data<float>() + t->numel());
      nodes.push_back(n);
      tail = n->outputs[0];
      return true;
    };
    vector_of(sole_reader_of(tail, "Mul"), gamma);
    vector_of(sole_reader_of(tail, "Add"), beta);
    Fusion f;
    f.nodes = nodes;
    for (const Node* n : f.nodes) consumed_.insert(n);
    f.step = make_layernorm_step(eps->data<float>()[0], std::move(gamma), std::move(beta));
    f.inputs = {x};
    f.outputs = {tail};
    return f;
  }

  // GELU, erf form: Div(x, c) -> Erf -> Add(., 1) -> Mul(x, .) [-> Mul(., h)]
  // with scalar constants c and h (1 when absent) -> one gelu step.
  std::optional<Fusion> match_gelu(const Node& div) {
    if (div.inputs.size() != 2 || !div.domain.empty()) return std::nullopt;
    const std::string& x = div.inputs[0];
    const Tensor* c = constant(div.inputs[1]);
    if (c == nullptr || c->dtype() != DType::kFloat32 || c->numel() != 1 || constant(x) != nullptr) return std::nullopt;
    const Node* erf = sole_reader_of(div.outputs[0], "Erf");
    const Node* add = erf == nullptr ? nullptr : sole_reader_of(erf->outputs[0], "Add");
    const Tensor* one = add == nullptr ? nullptr : other_constant(*add, erf->outputs[0]);
    if (one == nullptr || one->numel() != 1 || one->data<float>()[0] != 1.0f) return std::nullopt;
    const Node* mul = sole_reader_of(add->outputs[0], "Mul");
    if (mul == nullptr || mul->inputs.size() != 2 ||
        !((mul->inputs[0] == x && mul->inputs[1] == add->outputs[0]) ||
          (mul->inputs[1] == x && mul->inputs[0] == add->outputs[0]))) {
      return std::nullopt;
    }
    Fusion f;
    f.nodes = {&div, erf, add, mul};
    float half = 1.0f;
    std::string tail = mul->outputs[0];
    if (const Node* scale = sole_reader_of(tail, "Mul")) {
      const Tensor* h = other_constant(*scale, tail);
      if (h != nullptr && h->numel() == 1) {
        half = h->data<float>()[0];
        f.nodes.push_back(scale);
        tail = scale->outputs[0];
      }
    }
    for (const Node* n : f.nodes) consumed_.insert(n);
    f.step = make_gelu_step(c->data<float>()[0], half);
    f.inputs = {x};
    f.outputs = {tail};
    return f;
  }

  // FP32 SiLU: Sigmoid(x) read only by a Mul of it and x -> one silu step.
  std::optional<Fusion> match_silu(const Node& sig) {
    if (sig.inputs.size() != 1 || !sig.domain.empty() || constant(sig.inputs[0]) != nullptr ||
        !is_float_value_depth(sig.inputs[0], 0)) {
      return std::nullopt;
    }
    const std::string& x = sig.inputs[0];
    const Node* mul = sole_reader_of(sig.outputs[0], "Mul");
    if (mul == nullptr || mul->inputs.size() != 2 ||
        !((mul->inputs[0] == x && mul->inputs[1] == sig.outputs[0]) ||
          (mul->inputs[1] == x && mul->inputs[0] == sig.outputs[0]))) {
      return std::nullopt;
    }
    Fusion f;
    f.nodes = {&sig, mul};
    for (const Node* n : f.nodes) consumed_.insert(n);
    f.step = make_silu_step();
    f.inputs = {x};
    f.outputs = {mul->outputs[0]};
    return f;
  }

  std::optional<Fusion> match_unary(const Node& node) {
    if (node.inputs.empty() || !is_float_value_depth(node.inputs[0], 0) || constant(node.inputs[0]))
      return std::nullopt;
    FloatClamp clamp;
    std::string op = node.op_type;
    if (op == "Relu" || op == "Clip") {
      // activation_after reads the node after a value; here the node itself.
      if (op == "Relu") {
        clamp.lo = 0.0f;
      } else if (m_.model_.opset() < 11) {
        clamp.lo = node.attr_float("min", clamp.lo);
        clamp.hi = node.attr_float("max", clamp.hi);
      } else {
        for (size_t i = 1; i < 3 && i < node.inputs.size(); ++i) {
          if (node.inputs[i].empty()) continue;
          const Tensor* t = constant(node.inputs[i]);
          if (t == nullptr || t->numel() != 1 || t->dtype() != DType::kFloat32) return std::nullopt;
          (i == 1 ? clamp.lo : clamp.hi) = t->data<float>()[0];
        }
      }
      op = "Clamp";
    }
    if (op == "Pow") {  // a constant scalar exponent of a numeric type (clamp.hi carries it)
      const Tensor* e = node.inputs.size() == 2 ? constant(node.inputs[1]) : nullptr;
      if (e == nullptr || e->numel() != 1 ||
          !(is_integer(e->dtype()) || e->dtype() == DType::kFloat32 || e->dtype() == DType::kFloat64)) {
        return std::nullopt;
      }
      const double v = is_integer(e->dtype()) ? static_cast<double>(e->get_as_int64(0)) : e->get_as_double(0);
      if (!(static_cast<double>(static_cast<float>(v)) == v)) return std::nullopt;  // carried as a float
      clamp.hi = static_cast<float>(v);
    }
    Fusion f;
    f.nodes = {&node};
    f.step = make_unary_step(op, clamp);
    f.inputs = {node.inputs[0]};
    f.outputs = {node.outputs[0]};
    return f;
  }

  std::optional<Fusion> match_float_maxpool(const Node& node) {
    if (node.outputs.size() > 1 || node.attr_int("storage_order", 0) != 0 ||
        node.attr_ints("kernel_shape").size() != 2) {
      return std::nullopt;
    }
    const std::string pad = node.attr_string("auto_pad", "NOTSET");
    if (pad != "NOTSET" && pad != "VALID") return std::nullopt;
    if (!is_float_value_depth(node.inputs[0], 0)) return std::nullopt;
    Fusion f;
    f.nodes = {&node};
    f.step = make_maxpool_f32_step(node, m_.model_.opset());
    f.inputs = {node.inputs[0]};
    f.outputs = {node.outputs[0]};
    return f;
  }

  // The layout pass's NHWC pools: MaxPool on codes (DQ -> pool -> Q),
  // else on float32 (steps_pool_nhwc.cc; Indices never reach a twin).
  std::optional<Fusion> match_pool_nhwc(const Node& node) {
    const bool average = node.op_type == "NhwcAveragePool";
    if (!average) {
      if (auto f = match_qmaxpool(node, true)) return f;
    }
    if (node.inputs.empty() || node.outputs.empty() || node.attr_ints("kernel_shape").size() != 2 ||
        !is_float_value_depth(node.inputs[0], 0) || !output_unused(node, 1)) {
      return std::nullopt;
    }
    return single_step(node, make_pool_nhwc_f32_step(node, m_.model_.opset(), average, m_.options_.isa),
                       {node.inputs[0]});
  }

  // ---- FP32 operators with compiled steps (steps_fp32.h) ----
  // Whether output `i` of `node` is absent or read by nobody.
  bool output_unused(const Node& node, size_t i) const {
    if (i >= node.outputs.size() || node.outputs[i].empty()) return true;
    auto it = reads_.find(node.outputs[i]);
    return (it == reads_.end() || it->second == 0) && !is_graph_output(g_, node.outputs[i]);
  }
  Fusion single_step(const Node& node, std::unique_ptr<Step> step, std::vector<std::string> inputs) {
    Fusion f;
    f.nodes = {&node};
    f.step = std::move(step);
    f.inputs = std::move(inputs);
    f.outputs = {node.outputs[0]};
    return f;
  }
  // Greater/Less/Equal/GreaterOrEqual/LessOrEqual and Max/Min of two float32
  // operands, Exp of one, at least one of them computed (steps_compare.h).
  std::optional<Fusion> match_compare_minmax_exp(const Node& node) {
    static const std::map<std::string, CompareOp> kCompare = {{"Equal", CompareOp::kEqual},
                                                              {"Less", CompareOp::kLess},
                                                              {"LessOrEqual", CompareOp::kLessOrEqual},
                                                              {"Greater", CompareOp::kGreater},
                                                              {"GreaterOrEqual", CompareOp::kGreaterOrEqual}};
    const std::string& op = node.op_type;
    const auto cmp = kCompare.find(op);
    if (cmp == kCompare.end() && op != "Max" && op != "Min" && op != "Exp") return std::nullopt;
    if (node.inputs.size() != (op == "Exp" ? 1u : 2u) || node.outputs.size() != 1) return std::nullopt;
    bool all_constant = true;
    for (const auto& in : node.inputs) {
      if (in.empty() || !is_float_value_depth(in, 0)) return std::nullopt;
      all_constant = all_constant && constant(in) != nullptr;
    }
    if (all_constant) return std::nullopt;  // folded
    std::unique_ptr<Step> step = cmp != kCompare.end() ? make_compare_f32_step(cmp->second)
                                 : op == "Exp"         ? make_exp_f32_step()
                                                       : make_minmax_f32_step(op == "Max");
    return single_step(node, std::move(step), node.inputs);
  }
  // BatchNormalization, AveragePool, LayerNormalization, HardSigmoid,
  // HardSwish, Dropout with a mask, ReduceSum/Mean/Max and Where of computed
  // values; nullopt for a form the steps do not take (it stays a fallback).
  std::optional<Fusion> match_fp32_op(const Node& node) {
    const std::string& op = node.op_type;
    if (!node.domain.empty() || node.inputs.empty() || node.outputs.empty() || node.inputs[0].empty()) {
      return std::nullopt;
    }
    if (op == "Where") {  // a constant condition (a causal mask) is common
      if (node.inputs.size() != 3 || node.outputs.size() != 1) return std::nullopt;
      bool all_constant = true;
      for (const auto& in : node.inputs) {
        if (in.empty()) return std::nullopt;
        all_constant = all_constant && constant(in) != nullptr;
      }
      if (all_constant) return std::nullopt;  // folded
      return single_step(node, make_where_step(), node.inputs);
    }
    if (constant(node.inputs[0]) != nullptr) return std::nullopt;  // folded
    const int64_t opset = m_.model_.opset();
    if (op == "BatchNormalization") return match_batchnorm(node);
    if (op == "ConvTranspose") return match_conv_transpose(node);
    if (op == "GRU") return match_gru(node);
    if (op == "AveragePool") {
      if (node.outputs.size() != 1 || node.attr_ints("kernel_shape").size() != 2 ||
          !is_float_value_depth(node.inputs[0], 0)) {
        return std::nullopt;
      }
      return single_step(node, make_avgpool_f32_step(node, opset), {node.inputs[0]});
    }
    if (op == "LayerNormalization") {
      if (opset < 17 || node.inputs.size() < 2 || !output_unused(node, 1) || !output_unused(node, 2))
        return std::nullopt;
      const Tensor* scale = constant(node.inputs[1]);
      const Tensor* bias = node.inputs.size() > 2 && !node.inputs[2].empty() ? constant(node.inputs[2]) : nullptr;
      if (scale == nullptr || scale->dtype() != DType::kFloat32 ||
          (node.inputs.size() > 2 && !node.inputs[2].empty() &&
           (bias == nullptr || bias->dtype() != DType::kFloat32))) {
        return std::nullopt;
      }
      return single_step(node,
                         make_layernorm_axis_step(node.attr_int("axis", -1), node.attr_float("epsilon", 1e-5f), *scale,
                                                  bias != nullptr ? *bias : Tensor()),
                         {node.inputs[0]});
    }
    if (op == "InstanceNormalization") {
      if (node.inputs.size() != 3 || node.outputs.size() != 1 || !is_float_value_depth(node.inputs[0], 0))
        return std::nullopt;
      const Tensor* scale = constant(node.inputs[1]);
      const Tensor* bias = constant(node.inputs[2]);
      if (scale == nullptr || bias == nullptr || scale->dtype() != DType::kFloat32 ||
          bias->dtype() != DType::kFloat32 || scale->numel() != bias->numel()) {
        return std::nullopt;
      }
      std::vector<double> sc(scale->data<float>(), scale->data<float>() + scale->numel());
      std::vector<double> b(bias->data<float>(), bias->data<float>() + bias->numel());
      return single_step(node, make_instancenorm_step(node.attr_float("epsilon", 1e-5f), std::move(sc), std::move(b)),
                         {node.inputs[0]});
    }
    if (op == "GroupNormalization") {  // opset 18: scale, B per group; 21: per channel
      const int64_t groups = node.attr_int("num_groups", 0);
      if (node.inputs.size() != 3 || node.outputs.size() != 1 || groups < 1 || !is_float_value_depth(node.inputs[0], 0))
        return std::nullopt;
      const Tensor* scale = constant(node.inputs[1]);
      const Tensor* bias = constant(node.inputs[2]);
      const bool per_channel = opset >= 21;
      if (scale == nullptr || bias == nullptr || scale->dtype() != DType::kFloat32 ||
          bias->dtype() != DType::kFloat32 || scale->numel() != bias->numel() ||
          (!per_channel && scale->numel() != groups)) {
        return std::nullopt;
      }
      std::vector<double> sc(scale->data<float>(), scale->data<float>() + scale->numel());
      std::vector<double> b(bias->data<float>(), bias->data<float>() + bias->numel());
      return single_step(
          node,
          make_groupnorm_step(node.attr_float("epsilon", 1e-5f), groups, per_channel, std::move(sc), std::move(b)),
          {node.inputs[0]});
    }
    if (op == "HardSigmoid" || op == "HardSwish") {
      if (!is_float_value_depth(node.inputs[0], 0)) return std::nullopt;
      if (op == "HardSwish") return single_step(node, make_hard_swish_step(), {node.inputs[0]});
      const float alpha = node.attr_float("alpha", 0.2f), beta = node.attr_float("beta", 0.5f);
      const std::string& x = node.inputs[0];
      // x * HardSigmoid(x): an opset-13 export's hard swish, one pass.
      const Node* mul = sole_reader_of(node.outputs[0], "Mul");
      if (mul != nullptr && mul->inputs.size() == 2 &&
          ((mul->inputs[0] == x && mul->inputs[1] == node.outputs[0]) ||
           (mul->inputs[1] == x && mul->inputs[0] == node.outputs[0]))) {
        // Mul(x, h) and Mul(h, x) are the same float product.
        Fusion f = single_step(node, make_hard_sigmoid_step(alpha, beta, true), {x});
        f.nodes.push_back(mul);
        f.outputs = {mul->outputs[0]};
        for (const Node* n : f.nodes) consumed_.insert(n);
        return f;
      }
      return single_step(node, make_hard_sigmoid_step(alpha, beta, false), {x});
    }
    if (op == "Dropout") {
      for (size_t i = 1; i < node.inputs.size(); ++i) {
        if (!node.inputs[i].empty() && constant(node.inputs[i]) == nullptr) return std::nullopt;
      }
      // Training mode with a nonzero ratio (random dropout) stays on the
      // reference, which names the problem.
      const Tensor* train = node.inputs.size() > 2 && !node.inputs[2].empty() ? constant(node.inputs[2]) : nullptr;
      const Tensor* ratio = node.inputs.size() > 1 && !node.inputs[1].empty() ? constant(node.inputs[1]) : nullptr;
      if (opset >= 12 && train != nullptr && train->numel() > 0 && train->get_as_int64(0) != 0 &&
          (ratio == nullptr ? 0.5 : ratio->get_as_double(0)) != 0.0) {
        return std::nullopt;
      }
      if (opset < 7 && node.attr_int("is_test", 0) == 0) return std::nullopt;
      if (output_unused(node, 1)) {  // a view of x (the mask is never made)
        Node view = node;
        view.outputs.resize(1);
        Fusion f = single_step(node, make_view_step(view, opset), {node.inputs[0]});
        return f.step ? std::optional<Fusion>(std::move(f)) : std::nullopt;
      }
      if (opset < 10 || node.outputs.size() != 2) return std::nullopt;
      Fusion f = single_step(node, make_dropout_mask_step(opset), node.inputs);
      f.outputs = node.outputs;
      return f;
    }
    if (op == "ReduceSum" || op == "ReduceMean" || op == "ReduceMax") {
      if (node.outputs.size() != 1 || !is_float_value_depth(node.inputs[0], 0)) return std::nullopt;
      std::vector<int64_t> axes;
      const bool axes_input = opset >= (op == "ReduceSum" ? 13 : 18);
      if (axes_input) {
        if (node.inputs.size() > 1 && !node.inputs[1].empty()) {
          const Tensor* t = constant(node.inputs[1]);
          if (t == nullptr) return std::nullopt;
          axes = t->to_int64_vector();
        }
        if (axes.empty() && node.attr_int("noop_with_empty_axes", 0) != 0) return std::nullopt;
      } else {
        axes = node.attr_ints("axes");
      }
      const ReduceOp r = op == "ReduceSum" ? ReduceOp::kSum : op == "ReduceMean" ? ReduceOp::kMean : ReduceOp::kMax;
      return single_step(node, make_reduce_f32_step(r, std::move(axes), node.attr_int("keepdims", 1) != 0),
                         {node.inputs[0]});
    }
    return std::nullopt;
  }

  // W, R [, B] of a GRU (3 gates) or LSTM (4 gates) of the common form:
  // activations Sigmoid then Tanh in each direction's group of gates - 1,
  // no sequence_lens, each weight a float32 constant or the DQ of constants
  // shaped [dirs, gates * H, I], [dirs, gates * H, H], [dirs, 2 * gates * H].
  // The DQ readers are marked absorbed. nullopt for any other form.
  struct RnnWeights {
    Tensor w, r;
    std::optional<Tensor> b;
  };
  std::optional<RnnWeights> rnn_weights(const Node& node, int64_t gates, int64_t dirs) {
    if (node.has_attr("activations")) {
      const auto acts = node.attr_strings("activations");
      for (size_t i = 0; i < acts.size(); ++i) {
        if (acts[i] != (i % static_cast<size_t>(gates - 1) == 0 ? "Sigmoid" : "Tanh")) return std::nullopt;
      }
    }
    auto input = [&](size_t i) { return node.inputs.size() > i ? node.inputs[i] : std::string(); };
    if (!input(4).empty()) return std::nullopt;  // sequence_lens
    const auto w = constant_or_dq(input(1));
    const auto r = constant_or_dq(input(2));
    std::optional<Tensor> b;
    if (!input(3).empty()) {
      b = constant_or_dq(input(3));
      if (!b) return std::nullopt;
    }
    if (!w || !r || w->dtype() != DType::kFloat32 || r->dtype() != DType::kFloat32 || w->rank() != 3 ||
        r->rank() != 3 || w->dim(0) != dirs || r->dim(0) != dirs || w->dim(1) != gates * r->dim(2) ||
        r->dim(1) != gates * r->dim(2)) {
      return std::nullopt;
    }
    if (b && (b->dtype() != DType::kFloat32 || b->numel() != dirs * 2 * gates * r->dim(2))) return std::nullopt;
    for (size_t i : {size_t{1}, size_t{2}, size_t{3}}) {
      if (!input(i).empty() && constant(input(i)) == nullptr) ++absorbed_reads_[input(i)];
    }
    return RnnWeights{*w, *r, b};
  }

  // GRU of the common form (layout 0, Sigmoid/Tanh, no clip, no
  // sequence_lens), W, R, B constant or DQ of constants => gru_f32 (steps_gru.cc).
  std::optional<Fusion> match_gru(const Node& node) {
    if (node.inputs.size() < 3 || node.attr_int("layout", 0) != 0 || node.has_attr("clip")) return std::nullopt;
    const std::string direction = node.attr_string("direction", "forward");
    const int64_t dirs = direction == "bidirectional" ? 2 : 1;
    auto input = [&](size_t i) { return node.inputs.size() > i ? node.inputs[i] : std::string(); };
    const auto rw = rnn_weights(node, 3, dirs);
    if (!rw) return std::nullopt;
    Fusion f;
    f.nodes = {&node};
    f.step = make_gru_step(rw->w, rw->r, rw->b ? &*rw->b : nullptr, direction == "reverse",
                           node.attr_int("linear_before_reset", 0) != 0);
    f.inputs = {node.inputs[0], input(5)};
    f.outputs = node.outputs;
    f.outputs.resize(2);
    return f;
  }

  // FP32 ConvTranspose (2-D), W constant or the DQ of constants [C, M/group, KH, KW],
  // bias likewise or absent => conv_transpose_gemm (steps_convt.cc).
  std::optional<Fusion> match_conv_transpose(const Node& node) {
    if (node.inputs.size() < 2 || node.outputs.size() != 1 || !is_float_value_depth(node.inputs[0], 0))
      return std::nullopt;
    const std::optional<Tensor> w = constant_or_dq(node.inputs[1]);
    if (!w || w->dtype() != DType::kFloat32 || w->rank() != 4) return std::nullopt;
    const int64_t group = node.attr_int("group", 1);
    if (group < 1 || w->dim(0) % group != 0) return std::nullopt;
    std::optional<Tensor> b;
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
      b = constant_or_dq(node.inputs[2]);
      if (!b || b->dtype() != DType::kFloat32 || b->numel() != w->dim(1) * group) return std::nullopt;
    }
    const std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
    const std::vector<int64_t> output_shape = node.attr_ints("output_shape");
    const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
    auto all_at_least = [](const std::vector<int64_t>& v, int64_t lo) {
      return std::all_of(v.begin(), v.end(), [lo](int64_t x) { return x >= lo; });
    };
    const std::vector<int64_t> strides = node.attr_ints("strides", {1, 1});
    const std::vector<int64_t> dilations = node.attr_ints("dilations", {1, 1});
    const std::vector<int64_t> pads = node.attr_ints("pads", {0, 0, 0, 0});
    const std::vector<int64_t> output_padding = node.attr_ints("output_padding", {0, 0});
    if ((!kernel.empty() && (kernel.size() != 2 || kernel[0] != w->dim(2) || kernel[1] != w->dim(3))) ||
        strides.size() != 2 || dilations.size() != 2 || pads.size() != 4 || output_padding.size() != 2 ||
        (!output_shape.empty() && output_shape.size() != 2 && output_shape.size() != 4) || !all_at_least(strides, 1) ||
        !all_at_least(dilations, 1) || !all_at_least(pads, 0) || !all_at_least(output_padding, 0) ||
        !(auto_pad == "NOTSET" || auto_pad == "VALID" || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER")) {
      return std::nullopt;
    }
    for (size_t i = 1; i < node.inputs.size() && i < 3; ++i) {
      if (!node.inputs[i].empty() && constant(node.inputs[i]) == nullptr) ++absorbed_reads_[node.inputs[i]];
    }
    return single_step(node, make_conv_transpose_step(node, *w, b ? &*b : nullptr), {node.inputs[0]});
  }

  // FP32 Conv1D, x [N, C, L], W const [M, C/group, K] [, bias const] [-> Relu|Clip]:
  // the 2-D sconv on [N, C, 1, L] with W as [M, C/group, 1, K] (the same
  // products and sums), between two views that add and drop the unit dim.
  std::optional<Fusion> match_conv1d(const Node& node) {
    if (!node.domain.empty() || node.inputs.size() < 2 || node.outputs.size() != 1 || constant(node.inputs[0]))
      return std::nullopt;
    // A constant weight, or the DQ of constants (dequantized once, as in match_sconv).
    const std::optional<Tensor> wt = constant_or_dq(node.inputs[1]);
    const Tensor* w = wt ? &*wt : nullptr;
    if (w == nullptr || w->dtype() != DType::kFloat32 || w->rank() != 3) return std::nullopt;
    std::optional<Tensor> bt;  // likewise (a static file's int32 bias)
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
      bt = constant_or_dq(node.inputs[2]);
      if (!bt || bt->dtype() != DType::kFloat32 || bt->numel() != w->dim(0)) return std::nullopt;
    }
    const Tensor* b = bt ? &*bt : nullptr;
    const std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
    const std::vector<int64_t> strides = node.attr_ints("strides", {1});
    const std::vector<int64_t> dilations = node.attr_ints("dilations", {1});
    const std::vector<int64_t> pads = node.attr_ints("pads", {0, 0});
    if ((!kernel.empty() && (kernel.size() != 1 || kernel[0] != w->dim(2))) || strides.size() != 1 ||
        dilations.size() != 1 || pads.size() != 2) {
      return std::nullopt;
    }
    QConvFacts c;
    c.strides = {1, strides[0]};
    c.dilations = {1, dilations[0]};
    c.pads = {0, pads[0], 0, pads[1]};
    c.auto_pad = node.attr_string("auto_pad", "NOTSET");
    c.group = node.attr_int("group", 1);
    if (c.group < 1 || strides[0] < 1 || dilations[0] < 1 || pads[0] < 0 || pads[1] < 0 ||
        !(c.auto_pad == "NOTSET" || c.auto_pad == "VALID" || c.auto_pad == "SAME_UPPER" ||
          c.auto_pad == "SAME_LOWER")) {
      return std::nullopt;
    }
    const Tensor w4 = w->reshaped({w->dim(0), w->dim(1), 1, w->dim(2)});
    FloatClamp clamp;
    std::vector<const Node*> nodes = {&node};
    std::string tail = node.outputs[0];
    if (const Node* act = activation_after(tail, clamp)) {
      nodes.push_back(act);
      tail = act->outputs[0];
    }
    auto conv = make_sconv_step(c, w4, b, clamp, m_.options_.threads);
    if (!conv) return std::nullopt;
    for (const Node* n : nodes) consumed_.insert(n);
    for (size_t i = 1; i < node.inputs.size() && i < 3; ++i) {
      if (!node.inputs[i].empty() && constant(node.inputs[i]) == nullptr) ++absorbed_reads_[node.inputs[i]];
    }
    // Named after the Conv's own output, so two 1-D Convs never share them.
    const std::string x4 = unique_value_name(g_, node.outputs[0] + "_x2d");
    const std::string y4 = unique_value_name(g_, node.outputs[0] + "_y2d");
    Fusion f;
    f.nodes = {&node};
    f.step = make_unit_dim_view_step(2, true);
    f.inputs = {node.inputs[0]};
    f.outputs = {x4};
    Fusion body;
    body.nodes = nodes;
    body.step = std::move(conv);
    body.inputs = {x4};
    body.outputs = {y4};
    Fusion back;
    back.nodes = {nodes.back()};
    back.step = make_unit_dim_view_step(2, false);
    back.inputs = {y4};
    back.outputs = {tail};
    f.then.push_back(std::move(body));
    f.then.push_back(std::move(back));
    return f;
  }

  // BatchNormalization (inference, constant parameters, one per channel):
  //   DQ(x) -> BN -> [Relu|Clip] -> Q, one scale each  => a table per channel on the codes
  //   float x -> BN [-> Relu|Clip]                     => batchnorm_f32 (x * a[c] + b[c])
  // `nhwc`: the layout pass's NhwcBatchNormalization twin on float32
  // [N, H, W, C], the same a, b and float expression (batchnorm_nhwc_f32).
  std::optional<Fusion> match_batchnorm(const Node& bn, bool nhwc = false) {
    const int64_t opset = m_.model_.opset();
    if (bn.inputs.size() != 5 || !output_unused(bn, 1) || !output_unused(bn, 2) || !output_unused(bn, 3) ||
        !output_unused(bn, 4) || (opset >= 14 && bn.attr_int("training_mode", 0) != 0) ||
        (opset < 9 && bn.attr_int("spatial", 1) == 0)) {
      return std::nullopt;
    }
    const Tensor* p[4];
    for (size_t i = 0; i < 4; ++i) {
      p[i] = constant(bn.inputs[i + 1]);
      if (p[i] == nullptr || p[i]->dtype() != DType::kFloat32 || p[i]->rank() != 1 ||
          p[i]->numel() != constant(bn.inputs[1])->numel()) {
        return std::nullopt;
      }
    }
    const int64_t channels = p[0]->numel();
    FloatClamp clamp;
    const Node* act = activation_after(bn.outputs[0], clamp);
    // The quantized form: a table per channel, from the reference ops.
    QuantScalar xq, yq;
    const Node* dq = nhwc ? nullptr : activation_dq(bn.inputs[0], xq);
    const Node* q = dq != nullptr && sole_reader(dq->outputs[0]) == &bn
                        ? quantize_after(act != nullptr ? act->outputs[0] : bn.outputs[0], yq)
                        : nullptr;
    if (q != nullptr && channels > 0 && channels <= (int64_t{1} << 20)) {
      Tensor codes(DType::kFloat32, {1, channels, 256});
      for (int64_t c = 0; c < channels; ++c) {
        for (int v = 0; v < 256; ++v) {
          const int32_t code = xq.is_signed ? v - 128 : v;
          codes.data<float>()[c * 256 + v] = static_cast<float>(code - xq.zero_point) * xq.scale;
        }
      }
      std::optional<Tensor> value;
      try {
        value = run_node_on(bn, codes);
        if (value && act != nullptr) value = run_node_on(*act, *value);
      } catch (const Error&) {
        value.reset();
      }
      if (value && value->dtype() == DType::kFloat32 && value->numel() == channels * 256) {
        std::vector<uint8_t> tables(static_cast<size_t>(channels * 256));
        for (int64_t c = 0; c < channels; ++c) {
          for (int v = 0; v < 256; ++v) {
            const float r = value->data<float>()[c * 256 + v] / yq.scale;
            const int32_t out =
                std::isnan(r) ? std::clamp(0, yq.qmin(), yq.qmax())
                              : static_cast<int32_t>(std::clamp<double>(
                                    std::nearbyint(static_cast<double>(r)) + yq.zero_point, yq.qmin(), yq.qmax()));
            const int index = xq.is_signed ? (v ^ 0x80) : v;  // indexed by the input's raw byte
            tables[static_cast<size_t>(c * 256 + index)] = static_cast<uint8_t>(out);
          }
        }
        Fusion f;
        f.nodes = {dq, &bn};
        if (act != nullptr) f.nodes.push_back(act);
        f.nodes.push_back(q);
        for (const Node* n : f.nodes) consumed_.insert(n);
        f.step = make_channel_lookup_step(std::move(tables), channels, xq.is_signed, yq.is_signed, m_.options_.isa);
        f.inputs = {dq->inputs[0]};
        f.outputs = {q->outputs[0]};
        return f;
      }
    }
    if (!is_float_value_depth(bn.inputs[0], 0)) return std::nullopt;
    const double eps = bn.attr_float("epsilon", 1e-5f);
    std::vector<float> a(static_cast<size_t>(channels)), b(static_cast<size_t>(channels));
    for (int64_t c = 0; c < channels; ++c) {
      const double scale =
          static_cast<double>(p[0]->data<float>()[c]) / std::sqrt(static_cast<double>(p[3]->data<float>()[c]) + eps);
      a[static_cast<size_t>(c)] = static_cast<float>(scale);
      b[static_cast<size_t>(c)] = static_cast<float>(static_cast<double>(p[1]->data<float>()[c]) -
                                                     static_cast<double>(p[2]->data<float>()[c]) * scale);
    }
    Fusion f = single_step(bn, make_batchnorm_step(std::move(a), std::move(b), clamp, nhwc), {bn.inputs[0]});
    if (act != nullptr) {
      f.nodes.push_back(act);
      f.outputs = {act->outputs[0]};
      for (const Node* n : f.nodes) consumed_.insert(n);
    }
    return f;
  }
  // The reference op of `node` on `x` (its other inputs constants): output 0.
  Tensor run_node_on(const Node& node, const Tensor& x) const {
    KernelContext ctx{node, m_.model_.opset(node.domain), {&x}, {}, nullptr};
    for (size_t i = 1; i < node.inputs.size(); ++i) {
      ctx.inputs.push_back(node.inputs[i].empty() ? nullptr : constant(node.inputs[i]));
    }
    ctx.outputs.resize(node.outputs.size());
    find_op(node.domain, node.op_type)->run(ctx);
    return ctx.outputs[0];
  }

  // A constant, or the DequantizeLinear of constants (evaluated here).
  std::optional<Tensor> constant_or_dq(const std::string& name) const {
    if (const Tensor* t = constant(name)) return *t;
    const Node* dq = producer(name);
    if (dq == nullptr || dq->op_type != "DequantizeLinear" || !dq->domain.empty()) return std::nullopt;
    KernelContext ctx{*dq, m_.model_.opset(), {}, {}, nullptr};
    for (const auto& in : dq->inputs) {
      if (in.empty()) {
        ctx.inputs.push_back(nullptr);
        continue;
      }
      const Tensor* t = constant(in);
      if (t == nullptr) return std::nullopt;
      ctx.inputs.push_back(t);
    }
    ctx.outputs.resize(1);
    try {
      find_op("", "DequantizeLinear")->run(ctx);
    } catch (const Error&) {
      return std::nullopt;
    }
    return ctx.outputs[0];
  }

  // A recurrent weight [dirs, G*H, H] given as a symmetric DQ(int8) with one
  // scale or one per row (axis 1): its int8 rows per direction; else empty.
  std::vector<W8Matrix> int8_rows(const std::string& name, int dirs) const {
    const Node* dq = producer(name);
    if (dq == nullptr || dq->op_type != "DequantizeLinear" || dq->inputs.size() < 2) return {};
    const Tensor* q = constant(dq->inputs[0]);
    const Tensor* s = constant(dq->inputs[1]);
    if (q == nullptr || s == nullptr || q->dtype() != DType::kInt8 || q->rank() != 3 || s->dtype() != DType::kFloat32)
      return {};
    if (dq->inputs.size() > 2 && !dq->inputs[2].empty()) {
      const Tensor* z = constant(dq->inputs[2]);
      if (z == nullptr) return {};
      for (int64_t i = 0; i < z->numel(); ++i) {
        if (z->get_as_int64(i) != 0) return {};
      }
    }
    int64_t axis = dq->attr_int("axis", 1);
    if (axis < 0) axis += 3;
    const int64_t rows = q->dim(1), k = q->dim(2);
    if (s->numel() != 1 && (axis != 1 || s->numel() != rows)) return {};
    std::vector<W8Matrix> out(static_cast<size_t>(dirs));
    for (int d = 0; d < dirs; ++d) {
      W8Matrix& m = out[static_cast<size_t>(d)];
      m.n = static_cast<int>(rows);
      m.k = static_cast<int>(k);
      const int8_t* src = q->data<int8_t>() + d * rows * k;
      m.w.assign(src, src + rows * k);
      for (int64_t j = 0; j < rows; ++j) m.scale.push_back(s->data<float>()[s->numel() == 1 ? 0 : j]);
    }
    return out;
  }

  std::optional<Fusion> match_lstm(const Node& node) {
    if (node.inputs.size() < 3 || node.attr_int("layout", 0) != 0 || node.has_attr("clip") ||
        node.attr_int("input_forget", 0) != 0 || constant(node.inputs[0])) {
      return std::nullopt;
    }
    const std::string direction = node.attr_string("direction", "forward");
    const int dirs = direction == "bidirectional" ? 2 : 1;
    auto input = [&](size_t i) { return node.inputs.size() > i ? node.inputs[i] : std::string(); };
    if (!input(7).empty()) return std::nullopt;  // peepholes
    const auto rw = rnn_weights(node, 4, dirs);
    if (!rw) return std::nullopt;
    Fusion f;
    f.nodes = {&node};
    f.step = make_lstm_step(rw->w, rw->r, rw->b ? &*rw->b : nullptr, direction == "reverse", int8_rows(input(2), dirs));
    f.inputs = {node.inputs[0], input(5), input(6)};
    f.outputs = node.outputs;
    f.outputs.resize(3);
    return f;
  }

  std::optional<Fusion> match_qadd(const Node& node) {
    if (node.inputs.size() != 2) return std::nullopt;
    QuantScalar a, b, y;
    const Node* da = activation_dq(node.inputs[0], a);
    const Node* db = activation_dq(node.inputs[1], b);
    if (da == nullptr || db == nullptr) return std::nullopt;
    Fusion f;
    f.nodes = {&node};
    std::string tail = node.outputs[0];
    FloatClamp clamp;
    if (const Node* act = activation_after(tail, clamp)) {
      f.nodes.push_back(act);
      tail = act->outputs[0];
    }
    const Node* q = quantize_after(tail, y);
    if (q == nullptr || a.is_signed != b.is_signed || a.is_signed != y.is_signed) return std::nullopt;
    f.nodes.push_back(q);
    for (const Node* n : f.nodes) consumed_.insert(n);
    ++absorbed_reads_[da->outputs[0]];
    ++absorbed_reads_[db->outputs[0]];
    f.step = make_qadd_step(a, b, y, clamp, m_.options_.isa, node.op_type == "Mul");
    f.inputs = {da->inputs[0], db->inputs[0]};
    f.outputs = {q->outputs[0]};
    return f;
  }

  std::optional<Fusion> match_qmaxpool(const Node& node, bool nhwc = false) {
    QuantScalar x, y;
    const Node* dx = activation_dq(node.inputs[0], x);
    if (dx == nullptr || node.outputs.size() > 1 || node.attr_int("storage_order", 0) != 0) return std::nullopt;
    if (node.attr_ints("kernel_shape").size() != 2) return std::nullopt;
    const std::string pad = node.attr_string("auto_pad", "NOTSET");
    if (!nhwc && pad != "NOTSET" && pad != "VALID") return std::nullopt;
    const Node* q = quantize_after(node.outputs[0], y);
    if (q == nullptr || x.scale != y.scale || x.zero_point != y.zero_point || x.is_signed != y.is_signed) {
      return std::nullopt;
    }
    Fusion f;
    f.nodes = {&node, q};
    for (const Node* n : f.nodes) consumed_.insert(n);
    ++absorbed_reads_[dx->outputs[0]];
    f.step = make_qmaxpool_step(node, m_.model_.opset(), x.is_signed, nhwc);
    f.inputs = {dx->inputs[0]};
    f.outputs = {q->outputs[0]};
    return f;
  }

  std::optional<Fusion> match_qgap(const Node& node, bool nhwc = false) {
    QuantScalar x, y;
    const Node* dx = activation_dq(node.inputs[0], x);
    if (dx == nullptr) return std::nullopt;
    const Node* q = quantize_after(node.outputs[0], y);
    if (q == nullptr || x.is_signed != y.is_signed) return std::nullopt;
    Fusion f;
    f.nodes = {&node, q};
    for (const Node* n : f.nodes) consumed_.insert(n);
    ++absorbed_reads_[dx->outputs[0]];
    f.step = make_qglobal_avgpool_step(x, y, nhwc, m_.options_.isa);
    f.inputs = {dx->inputs[0]};
    f.outputs = {q->outputs[0]};
    return f;
  }

  // Add/Sub/Mul/Div of the chain's value and a rank-0 float32 constant
  // (GELU's x / sqrt(2), 1 + erf, 0.5 * y): still a function of the one
  // input code, and the output keeps the input's shape.
  // Returns which input (0 or 1) is `tail`, or -1.
  int scalar_binary_side(const Node& node, const std::string& tail) const {
    if (node.op_type != "Add" && node.op_type != "Sub" && node.op_type != "Mul" && node.op_type != "Div") return -1;
    if (node.inputs.size() != 2 || node.outputs.size() != 1) return -1;
    const int side = node.inputs[0] == tail ? 0 : (node.inputs[1] == tail ? 1 : -1);
    if (side < 0 || node.inputs[0] == node.inputs[1]) return -1;
    const Tensor* c = constant(node.inputs[static_cast<size_t>(1 - side)]);
    if (c == nullptr || c->dtype() != DType::kFloat32 || c->numel() != 1 || c->rank() != 0) return -1;
    return side;
  }

  static bool lookup_unary(const std::string& op) {
    static const std::set<std::string> kUnary = {"Relu",      "Clip", "Sigmoid", "Tanh",     "HardSigmoid", "HardSwish",
                                                 "LeakyRelu", "Elu",  "Selu",    "Softplus", "Gelu",        "Erf",
                                                 "Neg",       "Abs",  "Exp",     "Mish",     "Softsign"};
    return kUnary.count(op) != 0;
  }

  // DQ -> (elementwise unary | view)* -> Q: a lookup table over the 256
  // input codes, then the views on the codes. first == nullptr: the DQ's
  // only reader starts the chain and the DQ is part of the fusion. Otherwise
  // `first` (one of several readers of the DQ, e.g. the Sigmoid of a SiLU
  // whose Mul also reads x) starts it and takes its read of the DQ, which
  // stays for the other readers unless they too take the codes.
  std::optional<Fusion> match_lookup(const Node& dq, const Node* first = nullptr) {
    static const std::set<std::string> kViews = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"};
    QuantScalar x, y;
    if (constant(dq.inputs[0]) || !quant_scalar(dq, x)) return std::nullopt;
    std::vector<const Node*> chain, unary, views;
    std::vector<int> chain_side;  // per unary op, which input is the chain's value
    std::string tail = dq.outputs[0];
    const Node* q = nullptr;
    for (;;) {
      const Node* next = first != nullptr && chain.empty() ? first : sole_reader(tail);
      if (next == nullptr || !next->domain.empty() || consumed_.count(next)) return std::nullopt;
      if (next->op_type == "QuantizeLinear") {
        if (!quant_scalar(*next, y) || next->inputs.size() < 2) return std::nullopt;
        q = next;
        break;
      }
      const bool is_view = kViews.count(next->op_type) != 0;
      const int scalar_side = scalar_binary_side(*next, tail);
      if (!is_view && !lookup_unary(next->op_type) && scalar_side < 0) return std::nullopt;
      if (scalar_side < 0 && (next->inputs.empty() || next->inputs[0] != tail)) return std::nullopt;
      for (size_t i = scalar_side == 1 ? 0 : 1; i < next->inputs.size(); ++i) {
        if (static_cast<int>(i) == scalar_side) continue;
        if (!next->inputs[i].empty() && constant(next->inputs[i]) == nullptr) return std::nullopt;
      }
      if (!is_view) chain_side.push_back(std::max(scalar_side, 0));
      (is_view ? views : unary).push_back(next);
      chain.push_back(next);
      tail = next->outputs[0];
    }
    if (chain.empty() ||
        (unary.empty() && (x.scale != y.scale || x.zero_point != y.zero_point || x.is_signed != y.is_signed))) {
      if (chain.empty()) return std::nullopt;
    }
    // The table: DQ of every code, through the unary ops, then Q.
    Tensor codes(DType::kFloat32, {256});
    for (int v = 0; v < 256; ++v) {
      const int32_t code = x.is_signed ? v - 128 : v;
      codes.data<float>()[v] = static_cast<float>(code - x.zero_point) * x.scale;
    }
    Tensor value = codes;
    for (size_t u = 0; u < unary.size(); ++u) {
      const Node* op = unary[u];
      KernelContext ctx{*op, m_.model_.opset(op->domain), {}, {}, nullptr};
      for (size_t i = 0; i < op->inputs.size(); ++i) {
        if (static_cast<int>(i) == chain_side[u]) {
          ctx.inputs.push_back(&value);
        } else {
          ctx.inputs.push_back(op->inputs[i].empty() ? nullptr : constant(op->inputs[i]));
        }
      }
      ctx.outputs.resize(op->outputs.size());
      try {
        find_op("", op->op_type)->run(ctx);
      } catch (const Error&) {
        return std::nullopt;
      }
      value = ctx.outputs[0];
    }
    std::vector<int32_t> table(256);
    for (int v = 0; v < 256; ++v) {
      const float r = value.data<float>()[v] / y.scale;
      int32_t out = std::isnan(r) ? 0
                                  : static_cast<int32_t>(std::clamp<double>(
                                        std::nearbyint(static_cast<double>(r)) + y.zero_point, y.qmin(), y.qmax()));
      out = std::clamp(out, y.qmin(), y.qmax());
      const int index = x.is_signed ? (v ^ 0x80) : v;  // the table is indexed by the input's raw byte
      table[static_cast<size_t>(index)] = out;
    }
    // x * f(x), as SiLU = x * Sigmoid(x): the Q above is read by a DQ whose
    // only reader is a Mul of it and this chain's DQ output, and a Q follows
    // the Mul. Everything is still a function of x's code: one table, with
    // the simulation's float Mul and both roundings.
    std::vector<const Node*> gate;  // DQ, Mul, Q after the chain's Q
    if (first != nullptr && views.empty()) {
      QuantScalar g, z;
      const Node* d2 = sole_reader(q->outputs[0]);
      const Node* mul = d2 == nullptr ? nullptr : sole_reader(d2->outputs[0]);
      const Node* q3 = mul == nullptr ? nullptr : quantize_after(mul->outputs[0], z);
      if (q3 != nullptr && d2->op_type == "DequantizeLinear" && d2->domain.empty() && quant_scalar(*d2, g) &&
          g.is_signed == y.is_signed && mul->op_type == "Mul" && mul->domain.empty() && mul->inputs.size() == 2 &&
          !consumed_.count(mul) &&
          ((mul->inputs[0] == dq.outputs[0] && mul->inputs[1] == d2->outputs[0]) ||
           (mul->inputs[1] == dq.outputs[0] && mul->inputs[0] == d2->outputs[0]))) {
        for (int v = 0; v < 256; ++v) {
          const int index = x.is_signed ? (v ^ 0x80) : v;
          const float gated = static_cast<float>(table[static_cast<size_t>(index)] - g.zero_point) * g.scale;
          const float r = (codes.data<float>()[v] * gated) / z.scale;
          table[static_cast<size_t>(index)] =
              std::isnan(r) ? 0
                            : static_cast<int32_t>(std::clamp<double>(
                                  std::nearbyint(static_cast<double>(r)) + z.zero_point, z.qmin(), z.qmax()));
        }
        gate = {d2, mul, q3};
        y = z;
      }
    }
    Fusion f;
    if (first == nullptr) f.nodes = {&dq};
    for (const Node* n : chain) f.nodes.push_back(n);
    f.nodes.push_back(q);
    for (const Node* n : gate) f.nodes.push_back(n);
    for (const Node* n : f.nodes) consumed_.insert(n);
    if (first != nullptr) absorbed_reads_[dq.outputs[0]] += gate.empty() ? 1 : 2;
    std::string what;
    for (const Node* n : unary) what += (what.empty() ? "" : ", ") + n->op_type;
    if (!gate.empty()) what = "x * " + what;
    f.step = make_lookup_step(table, x.is_signed, y.is_signed, what.empty() ? "requantize" : what, m_.options_.isa);
    f.inputs = {dq.inputs[0]};
    std::string current =
        views.empty() ? (gate.empty() ? q : gate.back())->outputs[0] : unique_value_name(g_, dq.outputs[0] + "_lut");
    f.outputs = {current};
    for (size_t i = 0; i < views.size(); ++i) {
      const Node* v = views[i];
      Fusion part;
      part.nodes = {v};
      part.step = make_view_step(*v, m_.model_.opset());
      part.inputs = {current};
      for (size_t j = 1; j < v->inputs.size(); ++j) part.inputs.push_back(v->inputs[j]);
      current = i + 1 == views.size() ? q->outputs[0] : v->outputs[0];
      part.outputs = {current};
      f.then.push_back(std::move(part));
    }
    return f;
  }

  // Gemm's attributes allow a plain x W (+ bias): returns trans_b.
  static bool plain_gemm(const Node& node, bool& trans_b) {
    trans_b = false;
    if (node.op_type == "MatMul") return true;
    if (node.attr_float("alpha", 1.0f) != 1.0f || node.attr_float("beta", 1.0f) != 1.0f) return false;
    if (node.attr_int("transA", 0) != 0) return false;
    trans_b = node.attr_int("transB", 0) != 0;
    return true;
  }

  // The bias of a Gemm (input 2) or of an Add after a MatMul: N floats.
  // `tail` is the value after the anchor (+Add); `nodes` gets the Add.
  bool float_bias(const Node& node, int64_t n, std::vector<float>& bias, std::string& tail,
                  std::vector<const Node*>& nodes, const Node** bias_dq) {
    tail = node.outputs[0];
    std::string name;
    if (node.op_type == "Gemm" && node.inputs.size() > 2 && !node.inputs[2].empty()) {
      name = node.inputs[2];
    } else if (node.op_type == "MatMul") {
      const Node* add = sole_reader(node.outputs[0]);
      if (add != nullptr && add->op_type == "Add" && add->domain.empty() && add->inputs.size() == 2) {
        const std::string other = add->inputs[0] == node.outputs[0] ? add->inputs[1] : add->inputs[0];
        const Tensor* t = constant(other);
        const Node* dq = producer(other);
        if ((t != nullptr || (dq && dq->op_type == "DequantizeLinear" && constant(dq->inputs[0]))) &&
            add->inputs[0] != add->inputs[1]) {
          name = other;
          nodes.push_back(add);
          tail = add->outputs[0];
        }
      }
    }
    if (name.empty()) return true;
    const Tensor* t = constant(name);
    if (t == nullptr) {
      const Node* dq = producer(name);
      if (dq == nullptr || dq->op_type != "DequantizeLinear" || bias_dq == nullptr) return false;
      *bias_dq = dq;
      return true;  // the caller reads the quantized bias
    }
    if (t->dtype() != DType::kFloat32 || t->numel() != n) {
      if (!(t->dtype() == DType::kFloat32 && t->numel() == 1)) return false;
    }
    bias.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) bias[static_cast<size_t>(j)] = t->data<float>()[t->numel() == 1 ? 0 : j];
    return true;
  }

  // Weight-only INT4/INT8 (steps_wq.h): MatMulNBits with 4- or 8-bit
  // constant weights, or MatMul|Gemm whose weight is DQ(int4/uint4 const,
  // blocked along K) or DQ(int8/uint8 const, symmetric) [-> Add(bias const)].
  // The weight stays 4- or 8-bit; W4A8 when a MatMulNBits asks for int8
  // compute (accuracy_level 4), else FP32 activations.
  std::optional<Fusion> match_wq(const Node& node) {
    if (node.inputs.size() < 2 || node.outputs.empty() || constant(node.inputs[0])) return std::nullopt;
    WqGemmParams p;
    p.isa = m_.options_.isa;
    Fusion f;
    f.nodes = {&node};
    std::string tail = node.outputs[0];
    if (node.domain == "com.microsoft") {
      auto input = [&](size_t i) { return node.inputs.size() > i ? node.inputs[i] : std::string(); };
      const int64_t bits = node.attr_int("bits", 4);
      if ((bits != 4 && bits != 8) || node.inputs.size() < 3 || !input(4).empty()) return std::nullopt;
      const Tensor* b = constant(input(1));
      const Tensor* scales = constant(input(2));
      const Tensor* zp = input(3).empty() ? nullptr : constant(input(3));
      const Tensor* bias = input(5).empty() ? nullptr : constant(input(5));
      if (b == nullptr || scales == nullptr || (!input(3).empty() && zp == nullptr) ||
          (!input(5).empty() && bias == nullptr)) {
        return std::nullopt;
      }
      const int64_t n = node.attr_int("N", -1), k = node.attr_int("K", -1), block = node.attr_int("block_size", -1);
      if (bits == 8) {
        p.w8 = w8_from_matmul_nbits(k, n, block, *b, *scales, zp);
        if (!p.w8) return std::nullopt;
      } else {
        auto w = w4_from_matmul_nbits(k, n, block, *b, *scales, zp);
        if (!w) return std::nullopt;
        p.w = std::move(*w);
        p.int8_activations = node.attr_int("accuracy_level", 0) == 4;
      }
      if (bias != nullptr) {
        if (bias->dtype() != DType::kFloat32 || bias->numel() != n) return std::nullopt;
        p.bias.assign(bias->data<float>(), bias->data<float>() + n);
      }
    } else {
      bool trans_b = false;
      if (!plain_gemm(node, trans_b)) return std::nullopt;
      const Node* dq = producer(node.inputs[1]);
      if (dq == nullptr || dq->op_type != "DequantizeLinear" || !dq->domain.empty() || dq->inputs.size() < 2)
        return std::nullopt;
      const Tensor* q = constant(dq->inputs[0]);
      const Tensor* scale = constant(dq->inputs[1]);
      const bool has_zp = dq->inputs.size() > 2 && !dq->inputs[2].empty();
      const Tensor* zp = has_zp ? constant(dq->inputs[2]) : nullptr;
      if (q == nullptr || scale == nullptr || (has_zp && zp == nullptr)) return std::nullopt;
      const int64_t axis = dq->attr_int("axis", 1), block = m_.model_.opset() >= 21 ? dq->attr_int("block_size", 0) : 0;
      if (q->dtype() == DType::kInt8 || q->dtype() == DType::kUInt8) {
        p.w8 = w8_from_dq(*q, *scale, zp, axis, block, trans_b);
        if (!p.w8) return std::nullopt;
      } else {
        auto w = w4_from_blocked_dq(*q, *scale, zp, axis, block, trans_b);
        if (!w) return std::nullopt;
        p.w = std::move(*w);
      }
      if (!float_bias(node, p.w8 ? p.w8->n : p.w.n, p.bias, tail, f.nodes, nullptr)) return std::nullopt;
      ++absorbed_reads_[node.inputs[1]];
    }
    for (const Node* x : f.nodes) consumed_.insert(x);
    f.step = make_wq_gemm_step(std::move(p));
    f.inputs = {node.inputs[0]};
    f.outputs = {tail};
    return f;
  }

  std::optional<Fusion> match_sgemm(const Node& node) {
    bool trans_b = false;
    if (!plain_gemm(node, trans_b) || node.inputs.size() < 2) return std::nullopt;
    // A constant weight, or the DQ of constants (weight-only INT4/INT8: dequantized once here).
    const std::optional<Tensor> wt = constant_or_dq(node.inputs[1]);
    const Tensor* w = wt ? &*wt : nullptr;
    if (w == nullptr || w->dtype() != DType::kFloat32 || w->rank() != 2 || constant(node.inputs[0]))
      return std::nullopt;
    const int64_t n = trans_b ? w->dim(0) : w->dim(1);
    Fusion f;
    f.nodes = {&node};
    std::vector<float> bias;
    std::string tail;
    if (!float_bias(node, n, bias, tail, f.nodes, nullptr)) return std::nullopt;
    FloatClamp clamp;
    if (const Node* act = activation_after(tail, clamp)) {
      f.nodes.push_back(act);
      tail = act->outputs[0];
    }
    for (const Node* x : f.nodes) consumed_.insert(x);
    if (constant(node.inputs[1]) == nullptr) ++absorbed_reads_[node.inputs[1]];
    f.step = make_sgemm_step(*w, trans_b, std::move(bias), clamp);
    f.inputs = {node.inputs[0]};
    f.outputs = {tail};
    return f;
  }

  // Weight DQ: constant 8-bit values, constant scale (1 or per `axis`
  // channel), optional constant zero point. Returns the pieces as int8.
  bool weight_dq(const std::string& name, int channel_axis, std::vector<int8_t>& values, Shape& shape,
                 std::vector<float>& scale, std::vector<int32_t>& zp) const {
    const Node* dq = producer(name);
    if (dq == nullptr || dq->op_type != "DequantizeLinear" || !dq->domain.empty()) return false;
    const Tensor* q = constant(dq->inputs[0]);
    const Tensor* s = dq->inputs.size() > 1 ? constant(dq->inputs[1]) : nullptr;
    // 4-bit codes (static W4A8 files) are int8 codes of the same value: the
    // INT8 kernels run them exactly (blocked ones are weight-only W4 steps').
    const bool four_bit = q != nullptr && (q->dtype() == DType::kInt4 || q->dtype() == DType::kUInt4);
    if (q == nullptr || s == nullptr || !(is_8bit(q->dtype()) || four_bit) || s->dtype() != DType::kFloat32)
      return false;
    if (dq->attr_int("block_size", 0) != 0) return false;
    const Tensor* z = dq->inputs.size() > 2 && !dq->inputs[2].empty() ? constant(dq->inputs[2]) : nullptr;
    if (dq->inputs.size() > 2 && !dq->inputs[2].empty() && z == nullptr) return false;
    const int64_t channels = q->rank() > channel_axis ? q->dim(channel_axis) : 0;
    if (s->numel() != 1) {
      int64_t axis = dq->attr_int("axis", 1);
      if (axis < 0) axis += q->rank();
      if (axis != channel_axis || s->numel() != channels) return false;
    }
    if (z != nullptr && z->numel() != s->numel()) return false;
    const bool u8 = q->dtype() == DType::kUInt8;
    values.resize(static_cast<size_t>(q->numel()));
    for (int64_t i = 0; i < q->numel(); ++i)
      values[static_cast<size_t>(i)] = static_cast<int8_t>(q->get_as_int64(i) - (u8 ? 128 : 0));
    shape = q->shape();
    scale.assign(s->data<float>(), s->data<float>() + s->numel());
    zp.clear();
    if (z != nullptr) {
      bool any = false;
      for (int64_t i = 0; i < z->numel(); ++i) {
        zp.push_back(static_cast<int32_t>(z->get_as_int64(i) - (u8 ? 128 : 0)));
        any = any || zp.back() != 0;
      }
      if (!any) zp.clear();
    } else if (u8) {
      zp.assign(static_cast<size_t>(s->numel()), -128);
    }
    return true;
  }

  // A quantized bias DQ(int32 const, scale const [, zp 0]) as values in the
  // accumulator's scale x_scale * w_scale[j].
  bool int32_bias(const Node& dq, int64_t n, float x_scale, const std::vector<float>& w_scale,
                  std::vector<int32_t>& out) const {
    const Tensor* q = constant(dq.inputs[0]);
    const Tensor* s = dq.inputs.size() > 1 ? constant(dq.inputs[1]) : nullptr;
    if (q == nullptr || s == nullptr || q->numel() != n || s->dtype() != DType::kFloat32) return false;
    if (q->dtype() != DType::kInt32 && q->dtype() != DType::kInt8 && q->dtype() != DType::kUInt8) return false;
    if (s->numel() != 1 && s->numel() != n) return false;
    if (dq.inputs.size() > 2 && !dq.inputs[2].empty()) {
      const Tensor* z = constant(dq.inputs[2]);
      if (z == nullptr) return false;
      for (int64_t i = 0; i < z->numel(); ++i) {
        if (z->get_as_int64(i) != 0) return false;
      }
    }
    out.resize(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      const float bs = s->data<float>()[s->numel() == 1 ? 0 : j];
      const float acc_scale = x_scale * w_scale[w_scale.size() == 1 ? 0 : static_cast<size_t>(j)];
      const int64_t v = q->get_as_int64(j);
      // Exact when the bias scale is the accumulator's, as quantizers write it.
      if (std::abs(bs - acc_scale) <= 1e-6f * acc_scale) {
        out[static_cast<size_t>(j)] = static_cast<int32_t>(v);
      } else if (!bias_in_acc(static_cast<double>(v) * bs, acc_scale, out[static_cast<size_t>(j)])) {
        return false;
      }
    }
    return true;
  }

  std::optional<Fusion> match_qgemm(const Node& node) {
    bool trans_b = false;
    if (!plain_gemm(node, trans_b) || node.inputs.size() < 2) return std::nullopt;
    QGemmParams p;
    const Node* x_dq = activation_dq(node.inputs[0], p.x);
    if (x_dq == nullptr) return std::nullopt;
    std::vector<int8_t> w;
    Shape w_shape;
    std::vector<int32_t> w_zp;
    // Per-channel along N: axis 1 of a [K, N] weight, axis 0 of a transposed [N, K].
    if (!weight_dq(node.inputs[1], trans_b ? 0 : 1, w, w_shape, p.w_scale, w_zp) || w_shape.size() != 2) {
      return std::nullopt;
    }
    p.k = static_cast<int>(trans_b ? w_shape[1] : w_shape[0]);
    p.n = static_cast<int>(trans_b ? w_shape[0] : w_shape[1]);
    if (trans_b) {
      p.weight.resize(w.size());
      for (int j = 0; j < p.n; ++j) {
        for (int kk = 0; kk < p.k; ++kk)
          p.weight[static_cast<size_t>(kk) * p.n + j] = w[static_cast<size_t>(j) * p.k + kk];
      }
    } else {
      p.weight = std::move(w);
    }
    if (!w_zp.empty()) {
      for (int j = 0; j < p.n; ++j) {
        p.w_zp.push_back(static_cast<int8_t>(w_zp[w_zp.size() == 1 ? 0 : static_cast<size_t>(j)]));
      }
    }
    Fusion f;
    f.nodes = {&node};
    std::vector<float> fbias;
    std::string tail;
    const Node* bias_dq = nullptr;
    if (!float_bias(node, p.n, fbias, tail, f.nodes, &bias_dq)) return std::nullopt;
    if (bias_dq != nullptr) {
      if (!int32_bias(*bias_dq, p.n, p.x.scale, p.w_scale, p.bias_q)) return std::nullopt;
    } else if (!fbias.empty()) {
      p.bias_q.resize(static_cast<size_t>(p.n));
      for (int j = 0; j < p.n; ++j) {
        const float acc_scale = p.x.scale * p.w_scale[p.w_scale.size() == 1 ? 0 : static_cast<size_t>(j)];
        if (!bias_in_acc(fbias[static_cast<size_t>(j)], acc_scale, p.bias_q[static_cast<size_t>(j)])) {
          return std::nullopt;
        }
      }
    }
    if (const Node* act = activation_after(tail, p.clamp)) {
      f.nodes.push_back(act);
      tail = act->outputs[0];
    }
    QuantScalar y;
    if (const Node* q = quantize_after(tail, y)) {
      p.y = y;
      f.nodes.push_back(q);
      tail = q->outputs[0];
    }
    p.isa = m_.options_.isa;
    for (const Node* x : f.nodes) consumed_.insert(x);
    ++absorbed_reads_[x_dq->outputs[0]];
    ++absorbed_reads_[node.inputs[1]];
    if (bias_dq != nullptr) ++absorbed_reads_[bias_dq->outputs[0]];
    f.step = make_qgemm_step(std::move(p));
    f.inputs = {x_dq->inputs[0]};
    f.outputs = {tail};
    return f;
  }

  // DQ(a) , DQ(b) -> MatMul -> Q with both operands computed (attention's
  // Q K^T and probabilities x V), one scale each => the integer batched GEMM.
  std::optional<Fusion> match_qmatmul(const Node& node) {
    if (node.op_type != "MatMul" || node.inputs.size() != 2 || node.outputs.size() != 1) return std::nullopt;
    QuantScalar a, b, y;
    const Node* a_dq = activation_dq(node.inputs[0], a);
    const Node* b_dq = activation_dq(node.inputs[1], b);
    if (a_dq == nullptr || b_dq == nullptr) return std::nullopt;
    const Node* q = quantize_after(node.outputs[0], y);
    if (q == nullptr) return std::nullopt;
    Fusion f;
    f.nodes = {&node, q};
    f.step = make_qmatmul_step(a, b, y, m_.options_.isa, m_.options_.threads);
    for (const Node* n : f.nodes) consumed_.insert(n);
    ++absorbed_reads_[a_dq->outputs[0]];
    ++absorbed_reads_[b_dq->outputs[0]];
    f.inputs = {a_dq->inputs[0], b_dq->inputs[0]};
    f.outputs = {q->outputs[0]};
    return f;
  }

  std::optional<Fusion> match_qconv(const Node& node, bool nhwc = false) {
    QConvFacts c;
    if (!conv_facts(node, c)) return std::nullopt;
    QuantScalar x;
    const Node* x_dq = activation_dq(node.inputs[0], x);
    if (x_dq == nullptr) return std::nullopt;
    std::vector<int8_t> w;
    Shape w_shape;
    std::vector<float> w_scale;
    std::vector<int32_t> w_zp;
    if (!weight_dq(node.inputs[1], 0, w, w_shape, w_scale, w_zp) || w_shape.size() != 4) return std::nullopt;
    std::vector<int32_t> bias;
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
      const Node* bias_dq = producer(node.inputs[2]);
      const Tensor* fb = constant(node.inputs[2]);
      if (bias_dq != nullptr && bias_dq->op_type == "DequantizeLinear") {
        if (!int32_bias(*bias_dq, w_shape[0], x.scale, w_scale, bias)) return std::nullopt;
      } else if (fb != nullptr && fb->dtype() == DType::kFloat32 && fb->numel() == w_shape[0]) {
        for (int64_t j = 0; j < w_shape[0]; ++j) {
          const float acc_scale = x.scale * w_scale[w_scale.size() == 1 ? 0 : static_cast<size_t>(j)];
          if (!bias_in_acc(fb->data<float>()[j], acc_scale, bias.emplace_back())) return std::nullopt;
        }
      } else {
        return std::nullopt;
      }
    }
    Fusion f;
    f.nodes = {&node};
    std::string tail = node.outputs[0];
    FloatClamp clamp;
    if (const Node* act = activation_after(tail, clamp)) {
      f.nodes.push_back(act);
      tail = act->outputs[0];
    }
    QuantScalar y;
    const Node* q = quantize_after(tail, y);
    if (q == nullptr) return std::nullopt;  // a float-output conv stays unfused
    f.nodes.push_back(q);
    tail = q->outputs[0];
    auto step =
        make_qconv_step(c, x, y, w, w_shape, w_scale, w_zp, bias, clamp, m_.options_.isa, m_.options_.threads, nhwc);
    if (!step) return std::nullopt;
    for (const Node* n : f.nodes) consumed_.insert(n);
    ++absorbed_reads_[x_dq->outputs[0]];
    ++absorbed_reads_[node.inputs[1]];
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) ++absorbed_reads_[node.inputs[2]];
    f.step = std::move(step);
    f.inputs = {x_dq->inputs[0]};
    f.outputs = {tail};
    return f;
  }

  // A per-channel vector of a Conv's NCHW output (`spatial` dims after C: 2,
  // or 1 for a Conv1D's [N, C, L]): one value, or M values shaped [M, 1, 1] /
  // [1, M, 1, 1] (a shape that broadcasts along C alone and leaves the
  // output's rank).
  bool channel_vector(const std::string& name, int64_t m, std::vector<float>& out, int spatial = 2) const {
    const Tensor* t = constant(name);
    if (t == nullptr || t->dtype() != DType::kFloat32 || t->rank() > spatial + 2) return false;
    if (t->numel() != 1) {
      if (t->rank() < spatial + 1 || t->dim(t->rank() - spatial - 1) != m || t->numel() != m) return false;
    }
    out.assign(t->data<float>(), t->data<float>() + t->numel());
    return true;
  }

  // channel_vector for NHWC values: one value, or m along the last of 4 axes.
  bool nhwc_channel_vector(const std::string& name, int64_t m, std::vector<float>& out) const {
    const Tensor* t = constant(name);
    if (t == nullptr || t->dtype() != DType::kFloat32 || t->rank() > 4) return false;
    if (t->numel() != 1 && (t->rank() != 4 || t->dim(3) != m || t->numel() != m)) return false;
    out.assign(t->data<float>(), t->data<float>() + t->numel());
    return true;
  }

  // A 1-D Conv/ConvInteger's attributes as the 2-D facts of the same
  // convolution on [N, C, 1, L]; false when kvant does not compile them.
  static bool conv1d_facts(const Node& node, QConvFacts& c) {
    const std::vector<int64_t> kernel = node.attr_ints("kernel_shape");
    const std::vector<int64_t> strides = node.attr_ints("strides", {1});
    const std::vector<int64_t> dilations = node.attr_ints("dilations", {1});
    const std::vector<int64_t> pads = node.attr_ints("pads", {0, 0});
    if ((!kernel.empty() && kernel.size() != 1) || strides.size() != 1 || dilations.size() != 1 || pads.size() != 2)
      return false;
    c.strides = {1, strides[0]};
    c.dilations = {1, dilations[0]};
    c.pads = {0, pads[0], 0, pads[1]};
    c.auto_pad = node.attr_string("auto_pad", "NOTSET");
    c.group = node.attr_int("group", 1);
    return c.group >= 1 && strides[0] >= 1 && dilations[0] >= 1 && pads[0] >= 0 && pads[1] >= 0 &&
           (c.auto_pad == "NOTSET" || c.auto_pad == "VALID" || c.auto_pad == "SAME_UPPER" ||
            c.auto_pad == "SAME_LOWER");
  }

  // DynamicQuantizeLinear -> ConvInteger(W const) -> Cast -> Mul(., x_scale * w_scale) [-> Add bias] [-> act]
  // Anchored at the DynamicQuantizeLinear when the conv is its only reader;
  // at the ConvInteger (`shared`) when several read it: each such step then
  // quantizes x itself (the same codes), and the DynamicQuantizeLinear is
  // dropped once every reader is fused (run()).
  std::optional<Fusion> match_dynamic_conv(const Node& d, const Node* shared = nullptr) {
    if (d.outputs.size() < 3 || d.op_type != "DynamicQuantizeLinear" || !d.domain.empty()) return std::nullopt;
    const Node* conv = shared != nullptr ? shared : sole_reader(d.outputs[0]);
    // The layout pass's NHWC twin: x and y [N, H, W, C], the scale and bias
    // constants permuted to [1, 1, 1, M].
    const bool nhwc = conv != nullptr && conv->op_type == "NhwcConvInteger" && conv->domain == "com.kvant";
    if (conv == nullptr || ((conv->op_type != "ConvInteger" || !conv->domain.empty()) && !nhwc) ||
        conv->inputs.size() < 3 || conv->inputs[0] != d.outputs[0] || conv->inputs[2] != d.outputs[2] ||
        (shared == nullptr && sole_reader(d.outputs[2]) != conv)) {
      return std::nullopt;
    }
    const Tensor* w = constant(conv->inputs[1]);
    if (w == nullptr || (w->rank() != 4 && w->rank() != 3) || !is_8bit(w->dtype())) return std::nullopt;
    // A Conv1D (x [N, C, L], W [M, C/group, K]) runs as the 2-D step on
    // [N, C, 1, L] with W as [M, C/group, 1, K] between two views, as the
    // FP32 Conv1D does (match_conv1d): the same products and sums.
    const bool conv1d = w->rank() == 3;
    if (nhwc && conv1d) return std::nullopt;
    const int spatial = conv1d ? 1 : 2;
    QConvFacts facts;
    if (conv1d ? !conv1d_facts(*conv, facts) : !conv_facts(*conv, facts)) return std::nullopt;
    if (const std::vector<int64_t> k = conv->attr_ints("kernel_shape"); conv1d && !k.empty() && k[0] != w->dim(2))
      return std::nullopt;
    const int64_t m = w->dim(0);
    const bool has_wz = conv->inputs.size() > 3 && !conv->inputs[3].empty();
    const Tensor* wz = has_wz ? constant(conv->inputs[3]) : nullptr;
    if (has_wz && (wz == nullptr || wz->dtype() != w->dtype() || (wz->numel() != 1 && wz->numel() != m)))
      return std::nullopt;
    const Node* cast = sole_reader(conv->outputs[0]);
    if (cast == nullptr || cast->op_type != "Cast" || cast->attr_int("to", 0) != 1) return std::nullopt;
    // Mul(float(acc), Mul(x_scale, w_scale)), either operand order.
    const Node* out_mul = sole_reader(cast->outputs[0]);
    if (out_mul == nullptr || out_mul->op_type != "Mul" || !out_mul->domain.empty() || out_mul->inputs.size() != 2)
      return std::nullopt;
    const Node* scale_mul = producer(out_mul->inputs[0] == cast->outputs[0] ? out_mul->inputs[1] : out_mul->inputs[0]);
    if (scale_mul == nullptr || scale_mul->op_type != "Mul" || !scale_mul->domain.empty() ||
        scale_mul->inputs.size() != 2 || sole_reader(scale_mul->outputs[0]) != out_mul ||
        (scale_mul->inputs[0] != d.outputs[1] && scale_mul->inputs[1] != d.outputs[1]) ||
        (shared == nullptr && sole_reader(d.outputs[1]) != scale_mul)) {
      return std::nullopt;
    }
    DynamicConvParams p;
    const std::string ws_name = scale_mul->inputs[0] == d.outputs[1] ? scale_mul->inputs[1] : scale_mul->inputs[0];
    if (nhwc ? !nhwc_channel_vector(ws_name, m, p.w_scale) : !channel_vector(ws_name, m, p.w_scale, spatial))
      return std::nullopt;
    p.facts = facts;
    p.nhwc = nhwc;
    p.w_shape = w->shape();
    if (conv1d) p.w_shape = {w->dim(0), w->dim(1), 1, w->dim(2)};
    const bool u8 = w->dtype() == DType::kUInt8;
    p.weight.resize(static_cast<size_t>(w->numel()));
    for (int64_t i = 0; i < w->numel(); ++i)
      p.weight[static_cast<size_t>(i)] = static_cast<int8_t>(w->get_as_int64(i) - (u8 ? 128 : 0));
    bool any_zp = false;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t z = (wz ? wz->get_as_int64(wz->numel() == 1 ? 0 : j) : 0) - (u8 ? 128 : 0);
      p.w_zp.push_back(static_cast<int32_t>(z));
      any_zp = any_zp || z != 0;
    }
    if (!any_zp) p.w_zp.clear();
    Fusion f;
    f.nodes = {&d, conv, cast, scale_mul, out_mul};
    if (shared != nullptr) f.nodes.erase(f.nodes.begin());
    std::string tail = out_mul->outputs[0];
    if (const Node* add = sole_reader(tail); add != nullptr && add->op_type == "Add" && add->domain.empty() &&
                                             add->inputs.size() == 2 && add->inputs[0] != add->inputs[1]) {
      std::vector<float> b;
      const std::string& b_name = add->inputs[0] == tail ? add->inputs[1] : add->inputs[0];
      if (nhwc ? nhwc_channel_vector(b_name, m, b) : channel_vector(b_name, m, b, spatial)) {
        p.bias.assign(static_cast<size_t>(m), b[0]);
        if (b.size() != 1) p.bias = std::move(b);
        f.nodes.push_back(add);
        tail = add->outputs[0];
      }
    }
    // Relu -> Clip (ReLU6 as TensorFlow exports it): one clamp, the bounds' intersection.
    while (const Node* act = activation_after(tail, p.clamp)) {
      f.nodes.push_back(act);
      tail = act->outputs[0];
    }
    p.isa = m_.options_.isa;
    p.threads = m_.options_.threads;
    auto step = make_dynamic_conv_step(std::move(p));
    if (!step) return std::nullopt;
    for (const Node* x : f.nodes) consumed_.insert(x);
    if (conv1d) {  // view -> the 2-D step -> view, named after the ConvInteger's output
      const std::string x4 = unique_value_name(g_, conv->outputs[0] + "_x2d");
      const std::string y4 = unique_value_name(g_, conv->outputs[0] + "_y2d");
      Fusion body;
      body.nodes = f.nodes;
      body.step = std::move(step);
      body.inputs = {x4};
      body.outputs = {y4};
      body.dynamic_conv = true;
      // x written by a 1-D dynamic conv matched earlier (through its view):
      // its step also writes x's range for this one, as below for 2-D.
      for (auto& [anchor, prior] : fusions_) {
        if (prior.then.size() != 2 || !prior.then[0].dynamic_conv || prior.then[1].outputs.empty() ||
            prior.then[1].outputs[0] != d.inputs[0]) {
          continue;
        }
        Fusion& producer = prior.then[0];
        if (!link_dynamic_conv_range(*producer.step, *body.step)) break;
        if (producer.outputs.size() == 1) producer.outputs.push_back(unique_value_name(g_, d.inputs[0] + "_range"));
        body.inputs.push_back(producer.outputs[1]);
        break;
      }
      Fusion back;
      back.nodes = {f.nodes.back()};
      back.step = make_unit_dim_view_step(2, false);
      back.inputs = {y4};
      back.outputs = {tail};
      f.nodes = {f.nodes.front()};
      f.step = make_unit_dim_view_step(2, true);
      f.inputs = {d.inputs[0]};
      f.outputs = {x4};
      f.then.push_back(std::move(body));
      f.then.push_back(std::move(back));
      return f;
    }
    f.step = std::move(step);
    f.inputs = {d.inputs[0]};
    f.outputs = {tail};
    f.dynamic_conv = true;
    // x written by another dynamic conv (matched earlier: graph order): its
    // range comes with it, and this step skips its own pass over x.
    for (auto& [anchor, prior] : fusions_) {
      if (!prior.dynamic_conv || prior.outputs.empty() || prior.outputs[0] != d.inputs[0]) continue;
      if (!link_dynamic_conv_range(*prior.step, *f.step)) break;
      if (prior.outputs.size() == 1) prior.outputs.push_back(unique_value_name(g_, d.inputs[0] + "_range"));
      f.inputs.push_back(prior.outputs[1]);
      break;
    }
    return f;
  }

  std::optional<Fusion> match_sconv(const Node& node, bool nhwc = false) {
    QConvFacts c;
    if (!conv_facts(node, c) || constant(node.inputs[0])) return std::nullopt;
    // A constant weight, or the DQ of constants (weight-only INT4/INT8: dequantized once here).
    const std::optional<Tensor> wt = constant_or_dq(node.inputs[1]);
    const Tensor* w = wt ? &*wt : nullptr;
    if (w == nullptr || w->dtype() != DType::kFloat32 || w->rank() != 4) return std::nullopt;
    const Tensor* b = nullptr;
    if (node.inputs.size() > 2 && !node.inputs[2].empty()) {
      b = constant(node.inputs[2]);
      if (b == nullptr || b->dtype() != DType::kFloat32 || b->numel() != w->dim(0)) return std::nullopt;
    }
    Fusion f;
    f.nodes = {&node};
    std::string tail = node.outputs[0];
    FloatClamp clamp;
    const bool depthwise = c.group > 1 && w->dim(1) == 1 && w->dim(0) == c.group;
    std::string other;
    if (const Node* add = depthwise ? nullptr : residual_add_after(tail, other)) {
      f.nodes.push_back(add);
      tail = add->outputs[0];
    }
    bool silu = false;
    if (const Node* act = activation_after(tail, clamp)) {
      f.nodes.push_back(act);
      tail = act->outputs[0];
    } else if (const Node* mul = other.empty() ? silu_after(tail) : nullptr) {
      // Conv -> SiLU: the silu step's math in the conv's store (sconv.h).
      f.nodes.push_back(producer(mul->inputs[0] == tail ? mul->inputs[1] : mul->inputs[0]));
      f.nodes.push_back(mul);
      tail = mul->outputs[0];
      silu = true;
    }
    std::optional<HardSwishParams> hard_swish;
    HardSwishParams hs;
    if (!silu && other.empty()) {
      if (const Node* mul = hard_swish_after(tail, hs)) {
        // Conv [-> Relu|Clip] -> HardSigmoid -> Mul: the x_hard_sigmoid_f32
        // step's function in the conv's store (sconv.h).
        f.nodes.push_back(producer(mul->inputs[0] == tail ? mul->inputs[1] : mul->inputs[0]));
        f.nodes.push_back(mul);
        tail = mul->outputs[0];
        hard_swish = hs;
      } else if (const Node* op = sole_reader_of(tail, "HardSwish"); op != nullptr && op->inputs.size() == 1) {
        // Conv [-> Relu|Clip] -> HardSwish (opset 14): the hard_swish_f32
        // step's function in the conv's store.
        f.nodes.push_back(op);
        tail = op->outputs[0];
        hard_swish = HardSwishParams{.alpha = 1.0f / 6.0f, .beta = 0.5f, .divide6 = true};
      }
    }
    // A residual Add and a SiLU or hard swish are not fused together (the
    // epilogue would run before the Add in the store).
    auto step = make_sconv_step(c, *w, b, clamp, m_.options_.threads, !other.empty(), silu, nhwc, hard_swish);
    if (!step) return std::nullopt;
    for (const Node* n : f.nodes) consumed_.insert(n);
    if (constant(node.inputs[1]) == nullptr) ++absorbed_reads_[node.inputs[1]];
    f.step = std::move(step);
    f.inputs = {node.inputs[0]};
    if (!other.empty()) f.inputs.push_back(other);
    f.outputs = {tail};
    return f;
  }

  // The residual Add of a conv's output `value` (a ResNet block's end):
  // Add(value, other) reading `value` alone, where `other` is already
  // computed when the conv's step runs (a graph input or the output of a
  // fusion matched before: steps run in graph order) and is known to have
  // the same shape as `value` (inferred shapes; a broadcasting Add is not
  // fused). Sets `other`; nullptr when not.
  const Node* residual_add_after(const std::string& value, std::string& other) const {
    const Node* add = sole_reader(value);
    if (add == nullptr || add->op_type != "Add" || !add->domain.empty() || add->inputs.size() != 2) return nullptr;
    if ((add->inputs[0] == value) == (add->inputs[1] == value)) return nullptr;  // Add(value, value) or neither
    const std::string& o = add->inputs[0] == value ? add->inputs[1] : add->inputs[0];
    if (o.empty() || constant(o) != nullptr || !computed_before(o) || !same_known_shape(value, o)) return nullptr;
    other = o;
    return add;
  }
  bool computed_before(const std::string& name) const {
    if (const ValueInfo* in = g_.find_input(name); in != nullptr && !g_.initializers.count(name)) return true;
    for (const auto& [anchor, prior] : fusions_) {
      if (std::find(prior.outputs.begin(), prior.outputs.end(), name) != prior.outputs.end()) return true;
    }
    return false;
  }
  const TypeInfo* known_type(const std::string& name) const {
    if (auto it = g_.value_info.find(name); it != g_.value_info.end()) return &it->second.type;
    if (const ValueInfo* in = g_.find_input(name)) return &in->type;
    return nullptr;
  }
  // Float32 values whose inferred shapes are equal: every dim known and
  // equal, or unknown with the same symbolic name.
  bool same_known_shape(const std::string& a, const std::string& b) const {
    const TypeInfo* ta = known_type(a);
    const TypeInfo* tb = known_type(b);
    if (ta == nullptr || tb == nullptr || !ta->has_shape || !tb->has_shape || ta->dims.size() != tb->dims.size())
      return false;
    if (ta->dtype != DType::kFloat32 || tb->dtype != DType::kFloat32) return false;
    for (size_t i = 0; i < ta->dims.size(); ++i) {
      const Dim& da = ta->dims[i];
      const Dim& db = tb->dims[i];
      const bool same =
          da.known() ? db.known() && da.value == db.value : !db.known() && !da.param.empty() && da.param == db.param;
      if (!same) return false;
    }
    return true;
  }

  CompiledModel& m_;
  Graph& g_;
  std::unordered_map<std::string, int> reads_;
  std::unordered_map<std::string, const Node*> producer_;
  std::set<const Node*> consumed_;
  std::unordered_map<std::string, int> absorbed_reads_;
  std::unordered_map<const Node*, Fusion> fusions_;
};

void CompiledModel::compile() { Compiler(*this).run(); }

}  // namespace kvant
