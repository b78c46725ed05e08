// Static post-training quantization (INT8 weights and activations).
//
// 1. Plan: which nodes run in integer form and which tensors need
//    quantization parameters.
//      compute      Conv, Gemm, MatMul: activation inputs and output quantized;
//                   weights per output channel (symmetric int8), bias int32
//                   with scale = input_scale * weight_scale[c].
//      fused        Relu/Clip right after a compute node (or an Add/Mul of two
//                   activations) whose output has no other reader: Q/DQ go
//                   after the activation, not between (the integer kernel
//                   applies it while requantizing; ONNX Runtime's QDQ
//                   selectors fuse the same node groups).
//      own params   Add, Mul of two activations, AveragePool,
//                   GlobalAveragePool: inputs and output quantized (not an
//                   Add/Mul read only by Softmax, e.g. scores + attention
//                   mask: it stays FP32, design decision 52).
//      same params  MaxPool, Reshape, Flatten, Transpose, Squeeze, Unsqueeze,
//                   Concat, Slice, Identity: when their input is quantized,
//                   their output shares its parameters (exact: these ops only
//                   move or select values), so no requantization is needed.
//                   Concat's inputs and output share one range, except
//                   that a non-negative input (a Relu/Clip(min >= 0)/Sigmoid
//                   output, through same-param ops) of a Concat that also
//                   has inputs of either sign keeps its own parameters: the
//                   Concat requantizes it, and its Relu keeps zero point 0
//                   (design decision 41).
//      recurrent    LSTM, GRU, RNN with constant float32 W and R: W and R
//                   int8 symmetric, one scale per gate row (as in dynamic
//                   mode and inside If/Loop/Scan bodies, decision 62: the
//                   recurrent kernels read int8 weights), the bias FP32, Q/DQ
//                   on the sequence input X and the output Y (not on Y_h,
//                   Y_c, nor on a Y that is a graph output) (decision 69).
//      float logits A Gemm/MatMul whose output is a graph output keeps that
//                   output float (no Q/DQ): kvant's qgemm writes float
//                   directly and ONNX Runtime still fuses such a Gemm into
//                   QGemm, while 8-bit logits turn near-ties into exact ties
//                   that flip the top-1 (design decision 68).
// 2. Calibrate: run the FP32 model on the samples and feed every planned
//    tensor to its group's observer (streaming: memory does not grow with the
//    number of samples).
//    With rounding kAdaRound, each layer's input patch Gram matrix is
//    collected too; with bias_correction, each Conv/Gemm input's mean.
// 3. Rewrite: AdaRound's weights and corrected biases first (still float,
//    adaround.h, bias_correction.h), then Q/DQ on every planned tensor, DQ in
//    front of every weight and bias (quant/qdq.h).
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "kvant/status.h"
#include "onnx/opset_upgrade.h"
#include "passes/pass.h"
#include "quant/algorithms/adaround.h"
#include "quant/algorithms/bias_correction.h"
#include "quant/calibration_run.h"
#include "quant/qdq.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

const std::set<std::string> kComputeOps = {"Conv", "Gemm", "MatMul"};
const std::set<std::string> kRecurrentOps = {"LSTM", "GRU", "RNN"};
const std::set<std::string> kFusableActivations = {"Relu", "Clip"};
const std::set<std::string> kOwnParamOps = {"Add", "Mul", "AveragePool", "GlobalAveragePool"};
const std::set<std::string> kSameParamOps = {"MaxPool",   "Reshape", "Flatten", "Transpose", "Squeeze",
                                             "Unsqueeze", "Concat",  "Slice",   "Identity"};
const std::set<std::string> kQuantizedOps = {
    "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
    "MatMulInteger",  "ConvInteger",      "MatMulNBits",           "QLinearAdd",  "QLinearMul"};

// Union-find over tensor names: tensors in one group share parameters.
class Groups {
 public:
  std::string find(const std::string& t) {
    auto it = parent_.find(t);
    if (it == parent_.end()) {
      parent_[t] = t;
      return t;
    }
    if (it->second == t) return t;
    std::string root = find(it->second);
    parent_[t] = root;
    return root;
  }
  void unite(const std::string& a, const std::string& b) {
    const std::string ra = find(a), rb = find(b);
    if (ra != rb) parent_[rb] = ra;
  }

 private:
  std::unordered_map<std::string, std::string> parent_;
};

struct Plan {
  std::vector<std::string> tensors;  // activations to quantize, in graph order
  std::unordered_set<std::string> tensor_set;
  Groups groups;
  std::vector<size_t> compute_nodes;    // indices of quantized Conv/Gemm/MatMul
  std::vector<size_t> recurrent_nodes;  // indices of quantized LSTM/GRU/RNN
  std::vector<std::pair<std::string, std::string>> layer_outputs;
  std::vector<std::string> excluded;
  std::vector<std::pair<std::string, std::string>> fp32_reasons;  // compute nodes left FP32, with why
  std::vector<std::string> counted;                               // nodes planned in integer form

  void add(const std::string& t) {
    if (t.empty() || tensor_set.count(t)) return;
    tensor_set.insert(t);
    tensors.push_back(t);
    groups.find(t);
  }
};

bool is_float_activation(const Graph& g, const std::string& name) {
  if (name.empty() || g.initializers.count(name)) return false;
  auto vi = g.value_info.find(name);
  if (vi != g.value_info.end() && vi->second.type.dtype != DType::kUndefined)
    return vi->second.type.dtype == DType::kFloat32;
  if (const ValueInfo* in = g.find_input(name)) return in->type.dtype == DType::kFloat32;
  return true;  // unknown type: the calibration run checks it is float
}

// Main-graph node indices of the excluded names (resolve_excluded_nodes
// also names nodes inside bodies, which quantize_static_bodies skips).
std::set<size_t> resolve_exclusions(const Graph& g, const std::set<std::string>& names) {
  std::set<size_t> out;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (names.count(g.nodes[i].name)) out.insert(i);
  }
  return out;
}

Plan make_plan(const Graph& g, const std::set<size_t>& excluded) {
  Plan plan;
  std::unordered_map<std::string, int> readers;
  for (const Node& n : g.nodes) {
    for (const auto& in : n.inputs) readers[in]++;
  }
  std::unordered_set<std::string> graph_outputs;
  for (const auto& o : g.outputs) graph_outputs.insert(o.name);
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (const auto& o : g.nodes[i].outputs) producer[o] = i;
  }
  // Tensors read by Softmax nodes only. An Add/Mul producing one stays FP32:
  // Softmax runs in float, so quantizing its input only adds error, and in
  // attention that input is scores + mask, whose range the mask's -1e9 (or
  // the float minimum) sets: one scale for both rounds every score to the
  // same value (issue 12: a trained decoder's perplexity went 8.3 -> 62).
  std::unordered_map<std::string, bool> softmax_only;
  for (const Node& n : g.nodes) {
    for (const auto& in : n.inputs) {
      auto it = softmax_only.emplace(in, true).first;
      it->second = it->second && n.op_type == "Softmax";
    }
  }
  // Values known to be non-negative, from their producers alone.
  std::unordered_set<std::string> non_negative;
  for (const Node& n : g.nodes) {
    if (n.outputs.empty() || n.inputs.empty()) continue;
    bool nn = false;
    if (n.op_type == "Relu" || n.op_type == "Sigmoid") {
      nn = true;
    } else if (n.op_type == "Clip") {
      auto lo = n.inputs.size() > 1 ? g.initializers.find(n.inputs[1]) : g.initializers.end();
      nn = lo != g.initializers.end() && lo->second.numel() == 1 && is_float(lo->second.dtype()) &&
           lo->second.get_as_double(0) >= 0.0;
    } else if (kSameParamOps.count(n.op_type) || n.op_type == "AveragePool" || n.op_type == "GlobalAveragePool") {
      nn = true;
      const size_t data_inputs = n.op_type == "Concat" ? n.inputs.size() : 1;
      for (size_t k = 0; k < data_inputs; ++k) nn = nn && non_negative.count(n.inputs[k]) != 0;
    }
    if (nn) non_negative.insert(n.outputs[0]);
  }
  // Compute outputs whose only reader is a fusable activation.
  std::unordered_set<std::string> fused_outputs;
  std::unordered_set<size_t> fused_activations;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (!kFusableActivations.count(n.op_type) || excluded.count(i) || n.inputs.empty()) continue;
    auto p = producer.find(n.inputs[0]);
    if (p == producer.end() || excluded.count(p->second)) continue;
    const Node& src = g.nodes[p->second];
    // Add/Mul of two activations -> Relu: quantized after the Relu, as ONNX
    // Runtime's QLinearAdd and kvant's qadd step apply it while requantizing.
    const bool binary = (src.op_type == "Add" || src.op_type == "Mul") && src.inputs.size() == 2 &&
                        is_float_activation(g, src.inputs[0]) && is_float_activation(g, src.inputs[1]);
    if (!kComputeOps.count(src.op_type) && !binary) continue;
    if (readers[n.inputs[0]] != 1 || graph_outputs.count(n.inputs[0])) continue;
    if (n.op_type == "Clip") {  // only constant bounds can be folded into requantization
      bool constant = true;
      for (size_t k = 1; k < n.inputs.size(); ++k)
        constant = constant && (n.inputs[k].empty() || g.initializers.count(n.inputs[k]));
      if (!constant) continue;
    }
    fused_outputs.insert(n.inputs[0]);
    fused_activations.insert(i);
  }
  // A Gemm/MatMul writing a graph output (logits), directly or through its
  // fused activation, leaves it float: see "float logits" above.
  auto float_output = [&](const Node& compute) {
    if (compute.op_type != "Gemm" && compute.op_type != "MatMul") return false;
    const std::string& out = compute.outputs[0];
    if (graph_outputs.count(out)) return true;
    if (!fused_outputs.count(out)) return false;
    for (const Node& r : g.nodes) {
      if (!r.inputs.empty() && r.inputs[0] == out) return graph_outputs.count(r.outputs[0]) != 0;
    }
    return false;
  };
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = g.nodes[i];
    if (excluded.count(i)) {
      if (kComputeOps.count(n.op_type) || kRecurrentOps.count(n.op_type)) plan.excluded.push_back(n.name);
      continue;
    }
    const std::string& op = n.op_type;
    if (kRecurrentOps.count(op) && n.domain.empty()) {
      bool constant = n.inputs.size() >= 3;
      for (size_t k = 1; constant && k <= 2; ++k) {
        auto t = g.initializers.find(n.inputs[k]);
        constant = t != g.initializers.end() && t->second.dtype() == DType::kFloat32 && t->second.rank() == 3;
      }
      if (!constant) {
        plan.fp32_reasons.emplace_back(n.name, "its W and R are not constant float32 tensors");
        continue;
      }
      if (n.inputs[0].empty() || !is_float_activation(g, n.inputs[0])) {
        plan.fp32_reasons.emplace_back(n.name, "its input is not a float32 activation");
        continue;
      }
      plan.add(n.inputs[0]);
      if (!n.outputs.empty() && !n.outputs[0].empty()) {
        if (!graph_outputs.count(n.outputs[0])) plan.add(n.outputs[0]);
        plan.layer_outputs.emplace_back(n.name, n.outputs[0]);
      }
      plan.recurrent_nodes.push_back(i);
      plan.counted.push_back(n.name);
    } else if (kComputeOps.count(op)) {
      if (n.inputs.size() < 2 || !is_float_activation(g, n.inputs[0])) {
        plan.fp32_reasons.emplace_back(n.name, "its input is not a float32 activation");
        continue;
      }
      const bool weight_const = g.initializers.count(n.inputs[1]) != 0;
      if (op != "MatMul" && !weight_const) {  // Conv/Gemm with runtime weights stay FP32
        plan.fp32_reasons.emplace_back(n.name, "its weight \"" + n.inputs[1] + "\" is not a constant");
        continue;
      }
      if (g.initializers.count(n.inputs[1]) && g.initializers.at(n.inputs[1]).dtype() != DType::kFloat32) {
        plan.fp32_reasons.emplace_back(
            n.name,
            std::string("its weight is ") + dtype_name(g.initializers.at(n.inputs[1]).dtype()) + ", not float32");
        continue;
      }
      plan.add(n.inputs[0]);
      if (!weight_const) plan.add(n.inputs[1]);
      if (!fused_outputs.count(n.outputs[0])) {
        if (!float_output(n)) plan.add(n.outputs[0]);
        plan.layer_outputs.emplace_back(n.name, n.outputs[0]);
      }
      plan.compute_nodes.push_back(i);
      plan.counted.push_back(n.name);
    } else if (fused_activations.count(i)) {
      if (!float_output(g.nodes[producer.at(n.inputs[0])])) plan.add(n.outputs[0]);
      plan.layer_outputs.emplace_back(n.name, n.outputs[0]);
      plan.counted.push_back(n.name);
    } else if (kOwnParamOps.count(op)) {
      const size_t data_inputs = (op == "Add" || op == "Mul") ? 2 : 1;
      if (n.inputs.size() < data_inputs) continue;
      bool ok = true;
      for (size_t k = 0; k < data_inputs; ++k) ok = ok && is_float_activation(g, n.inputs[k]);
      if (!ok) continue;
      if (n.outputs.size() == 1 && !graph_outputs.count(n.outputs[0]) && softmax_only[n.outputs[0]]) continue;
      for (size_t k = 0; k < data_inputs; ++k) plan.add(n.inputs[k]);
      if (!fused_outputs.count(n.outputs[0])) {
        plan.add(n.outputs[0]);
        plan.layer_outputs.emplace_back(n.name, n.outputs[0]);
      }
      plan.counted.push_back(n.name);
    } else if (kSameParamOps.count(op)) {
      if (n.inputs.empty() || !plan.tensor_set.count(n.inputs[0]) || n.outputs.size() != 1) continue;
      if (op == "Concat") {
        bool all = true, all_non_negative = true;
        for (const auto& in : n.inputs) {
          all = all && plan.tensor_set.count(in);
          all_non_negative = all_non_negative && non_negative.count(in);
        }
        if (!all) continue;
        // Sharing one range would give a non-negative input (and the Relu
        // behind it) a signed range: half its codes unused, and a zero
        // point that stops ONNX Runtime fusing the Relu into its Conv.
        plan.add(n.outputs[0]);
        for (const auto& in : n.inputs) {
          if (all_non_negative || !non_negative.count(in)) plan.groups.unite(in, n.outputs[0]);
        }
        plan.counted.push_back(n.name);
        continue;
      }
      plan.add(n.outputs[0]);
      plan.groups.unite(n.inputs[0], n.outputs[0]);
      plan.counted.push_back(n.name);
    }
  }
  return plan;
}

int weight_axis(const Node& n, const Tensor& w) {
  if (n.op_type == "Conv") return 0;
  if (n.op_type == "Gemm") return n.attr_int("transB", 0) ? 0 : 1;
  return w.rank() == 2 ? 1 : -1;  // MatMul [K, N]: per column
}

}  // namespace

bool is_quantized_model(const Model& model) {
  for (const Node& n : model.graph.nodes) {
    if (kQuantizedOps.count(n.op_type)) return true;
  }
  return false;
}

Model quantize_static(const Model& model, SampleSource& calibration, const QuantizeOptions& options,
                      QuantizeSummary* summary) {
  if (is_quantized_model(model)) {
    throw Error(ErrorCode::kInvalidArgument,
                "the model is already quantized (it has QuantizeLinear/DequantizeLinear or integer operators); "
                "quantize its FP32 original instead");
  }
  if (model.opset() < 13) {  // no per-axis QuantizeLinear before 13: upgrade (passes/upgrade_opset13.cc)
    Model upgraded = model;
    upgrade_to_opset13(upgraded);
    return quantize_static(upgraded, calibration, options, summary);
  }
  const bool four_bit = options.weight_type == DType::kInt4 || options.weight_type == DType::kUInt4;
  if (four_bit && model.opset() < 21) {  // int4 DequantizeLinear needs opset 21 (onnx/opset_upgrade.h)
    Model upgraded = model;
    upgrade_opset(upgraded, 21);
    return quantize_static(upgraded, calibration, options, summary);
  }
  if (four_bit && options.reduce_range)
    throw Error(ErrorCode::kInvalidArgument, "reduce_range applies to 8-bit weights, not 4-bit ones");
  const Graph& g = model.graph;
  const std::set<std::string> excluded_names = resolve_excluded_nodes(g, options.exclude, kComputeOps);
  const std::set<size_t> excluded = resolve_exclusions(g, excluded_names);
  Plan plan = make_plan(g, excluded);
  if (plan.compute_nodes.empty() && plan.recurrent_nodes.empty()) {  // only layers inside control flow, or none
    Model out = model;
    std::vector<std::pair<std::string, std::string>> reasons = plan.fp32_reasons;
    const int64_t inside = quantize_static_bodies(model, out, calibration, options, excluded_names, &reasons);
    if (summary) summary->fp32_reasons = reasons;
    if (inside > 0) {
      if (summary) {
        summary->quantized_nodes = inside;
        summary->kept_fp32 = plan.excluded;
        summary->notes.push_back(std::to_string(inside) + " layer(s) inside If/Loop/Scan bodies quantized");
      }
      return out;
    }
    if (summary) {  // written unchanged, with a warning (design decision 24)
      summary->warnings.push_back(
          "nothing to quantize: the model has no Conv, Gemm or MatMul with FP32 weights outside the excluded "
          "nodes; it is written unchanged (FP32)");
      summary->kept_fp32 = plan.excluded;
    }
    return model;
  }

  // Calibrate: one observer per parameter group.
  std::unordered_map<std::string, std::unique_ptr<Observer>> observers;
  for (const auto& t : plan.tensors) {
    const std::string root = plan.groups.find(t);
    if (!observers.count(root)) observers[root] = make_observer(options.calibration);
  }
  // Bias correction needs each Conv/Gemm input's mean per channel.
  ChannelMeans input_means;
  if (options.bias_correction) {
    for (size_t idx : plan.compute_nodes) {
      const Node& n = g.nodes[idx];
      if (n.op_type == "Conv") input_means.track(n.inputs[0], ChannelMeans::Axis::kOne);
      if (n.op_type == "Gemm") input_means.track(n.inputs[0], ChannelMeans::Axis::kLast);
    }
  }
  // AdaRound needs each layer's input patch statistics.
  const AdaRoundOptions adaround_options;
  std::map<size_t, LayerGram> grams;
  std::unordered_map<std::string, std::vector<size_t>> gram_inputs;
  std::vector<std::string> adaround_notes;
  if (options.rounding == WeightRounding::kAdaRound) {
    for (size_t idx : plan.compute_nodes) {
      const Node& n = g.nodes[idx];
      auto w = g.initializers.find(n.inputs[1]);
      if (w == g.initializers.end()) continue;
      std::string why;
      if (auto lg = LayerGram::make(n, w->second, adaround_options, &why)) {
        grams.emplace(idx, std::move(*lg));
        gram_inputs[n.inputs[0]].push_back(idx);
      } else {
        adaround_notes.push_back("AdaRound left " + n.describe() + " at nearest: " + why);
      }
    }
  }
  auto observe = [&](const std::string& name, const Tensor& t) {
    if (options.bias_correction) input_means.observe(name, t);
    if (auto r = gram_inputs.find(name); r != gram_inputs.end()) {
      for (size_t idx : r->second) grams.at(idx).observe(t);
    }
    if (!plan.tensor_set.count(name)) return;
    if (t.dtype() != DType::kFloat32) {
      throw Error(ErrorCode::kInvalidArgument, "tensor \"" + name + "\" is " + dtype_name(t.dtype()) + ", not float32");
    }
    try {
      observers.at(plan.groups.find(name))->observe(t.data<float>(), t.numel());
    } catch (const Error& e) {
      throw Error(e.code(), "calibration: tensor \"" + name + "\": " + e.what());
    }
  };
  // Non-finite weights are refused before calibration would trip on the
  // NaN they compute (check_finite_weight names the initializer).
  for (size_t idx : plan.recurrent_nodes) {  // W and R
    const Node& n = g.nodes[idx];
    for (size_t k = 1; k < 3; ++k)
      check_finite_weight(g.initializers.at(n.inputs[k]), n.inputs[k], options.allow_nonfinite);
  }
  for (size_t idx : plan.compute_nodes) {
    const Node& n = g.nodes[idx];
    for (size_t k = 1; k < n.inputs.size() && k < 3; ++k) {
      auto w = g.initializers.find(n.inputs[k]);
      if (w != g.initializers.end()) check_finite_weight(w->second, n.inputs[k], options.allow_nonfinite);
    }
  }
  // Nodes kvant cannot run, and what reads their values, are left out of
  // calibration: their tensors get no range and stay FP32 (calibration_scope.cc).
  // A node whose kernel refuses the first sample is left out the same way.
  std::vector<std::pair<std::string, std::string>> blocked;
  calibration.reset();
  const auto first = calibration.next();
  const Model runnable = runnable_for_calibration(model, first ? &*first : nullptr, &blocked);
  ReferenceExecutor exec(runnable);
  exec.set_observer([&](const Node& node, const std::vector<Tensor>& outputs) {
    for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
      if (outputs[i].defined()) observe(node.outputs[i], outputs[i]);
    }
  });
  const int64_t done = run_calibration_samples(exec, calibration, options, observe);

  std::unordered_map<std::string, QuantParams> params;  // by group root
  for (const auto& [root, obs] : observers) {
    Range r;
    try {
      r = obs->range();
    } catch (const Error&) {
      continue;  // a tensor never computed (e.g. inside an untaken branch): left in FP32
    }
    QuantParams p;
    p.storage = options.activation_type;
    p.scale.resize(1);
    p.zero_point.resize(1);
    choose_qparams(r.min, r.max, options.activation_type, options.activation_symmetry, false, &p.scale[0],
                   &p.zero_point[0]);
    params[root] = p;
  }

  Model out = model;
  Graph& q = out.graph;
  const bool per_axis_ok = options.per_channel && model.opset() >= 13;
  if (options.per_channel && !per_axis_ok) {
    if (summary) summary->notes.push_back("opset " + std::to_string(model.opset()) + " < 13: per-tensor weight scales");
  }
  // A bias initializer read by several nodes (exporters alias equal
  // initializers, e.g. the zero biases of BatchNorm-folded Convs) gets a copy
  // per node: its int32 form depends on the node's input and weight scales,
  // and ONNX Runtime fuses a Conv into QLinearConv only with a bias DQ in its
  // own scale. Done before any node is inserted, so indices still match g.
  std::unordered_map<std::string, int> init_readers;
  for (const Node& n : g.nodes) {
    for (const auto& in : n.inputs) {
      if (g.initializers.count(in)) ++init_readers[in];
    }
  }
  for (size_t idx : plan.compute_nodes) {
    Node& n = q.nodes[idx];
    if (n.op_type == "MatMul" || n.inputs.size() < 3 || init_readers[n.inputs[2]] < 2) continue;
    std::string copy = n.inputs[2] + "/" + std::to_string(idx);
    while (q.initializers.count(copy)) copy += "_";
    q.initializers[copy] = q.initializers.at(n.inputs[2]);
    n.inputs[2] = copy;
  }
  for (auto& [name, readers] : init_readers) {
    if (readers < 2) continue;
    bool read = false;
    for (const Node& n : q.nodes) read = read || std::find(n.inputs.begin(), n.inputs.end(), name) != n.inputs.end();
    for (const auto& o : q.outputs) read = read || o.name == name;
    if (!read) q.initializers.erase(name);
  }
  std::vector<std::string> bias_of(g.nodes.size());
  for (size_t idx : plan.compute_nodes) {
    if (q.nodes[idx].inputs.size() > 2) bias_of[idx] = q.nodes[idx].inputs[2];
  }
  // AdaRound and bias correction change float weights and biases before any
  // node is inserted (q.nodes[idx] is still g.nodes[idx]); the loop below
  // quantizes them with the same params (adaround.h, bias_correction.h).
  const std::set<std::string> int8_layers(options.int8_weight_layers.begin(), options.int8_weight_layers.end());
  auto weight_type_of = [&](const Node& n) {
    if (!four_bit || !int8_layers.count(n.name)) return options.weight_type;
    return options.weight_type == DType::kUInt4 ? DType::kUInt8 : DType::kInt8;
  };
  auto weight_params_of = [&](size_t idx) -> std::optional<QuantParams> {
    const Node& n = g.nodes[idx];
    auto w = g.initializers.find(n.inputs[1]);
    if (!params.count(plan.groups.find(n.inputs[0])) || w == g.initializers.end()) return std::nullopt;
    check_finite_weight(w->second, n.inputs[1], options.allow_nonfinite);
    return weight_params(w->second, per_axis_ok ? weight_axis(n, w->second) : -1, weight_type_of(n),
                         options.weight_symmetry, options.reduce_range);
  };
  const std::map<size_t, Tensor> rounded =
      apply_adaround(g, q, grams, weight_params_of, options.reduce_range, adaround_options, &adaround_notes);
  const int64_t corrected = options.bias_correction ? apply_bias_correction(g, q, plan.compute_nodes, input_means,
                                                                            rounded, weight_params_of, bias_of)
                                                    : 0;
  // Weights and biases first (they need the input scale), read from the FP32 graph.
  for (size_t idx : plan.compute_nodes) {
    const Node& n = g.nodes[idx];
    const std::string& bias = bias_of[idx];
    auto in_params = params.find(plan.groups.find(n.inputs[0]));
    if (in_params == params.end()) continue;
    if (!g.initializers.count(n.inputs[1])) continue;  // MatMul of two activations
    const Tensor& w = g.initializers.at(n.inputs[1]);
    check_finite_weight(w, n.inputs[1], options.allow_nonfinite);
    const int axis = per_axis_ok ? weight_axis(n, w) : -1;
    // reduce_range: 7-bit weights, as ONNX Runtime's quantizer does for CPUs
    // without VNNI (u8 x s7 pair sums fit int16: exact vpmaddubsw kernels).
    QuantParams wp = weight_params(w, axis, weight_type_of(n), options.weight_symmetry, options.reduce_range);
    if (q.initializers.count(n.inputs[1])) insert_weight_dq(q, n.inputs[1], wp, /*explicit_zero_point=*/true);
    if (n.op_type != "MatMul" && !bias.empty() && q.initializers.count(bias)) {
      const Tensor& b = q.initializers.at(bias);
      const int64_t channels = n.op_type == "Conv" ? w.dim(0) : (n.attr_int("transB", 0) ? w.dim(0) : w.dim(1));
      if (b.rank() == 1 && b.numel() == channels && b.dtype() == DType::kFloat32 &&
          n.attr_float("alpha", 1.0f) == 1.0f && n.attr_float("beta", 1.0f) == 1.0f) {
        check_finite_weight(b, bias, options.allow_nonfinite);
        if (!insert_bias_dq(q, bias, in_params->second.scale[0], wp.scale) && summary) {
          summary->warnings.push_back("bias \"" + bias +
                                      "\" kept in FP32: input scale x weight scale is below the smallest normal float");
        }
      }
    }
  }
  // LSTM/GRU/RNN: W and R int8 symmetric per gate row (axis 1), as dynamic
  // mode and the bodies write them; the bias stays FP32 (the gates add it in
  // float: no int32 accumulator to match). Only when X was calibrated.
  for (size_t idx : plan.recurrent_nodes) {
    const Node& n = g.nodes[idx];
    if (!params.count(plan.groups.find(n.inputs[0]))) continue;
    for (size_t k : {size_t{1}, size_t{2}}) {
      const std::string& name = n.inputs[k];
      auto w = q.initializers.find(name);
      if (w == q.initializers.end() || w->second.dtype() != DType::kFloat32) continue;  // shared: done
      const Tensor weights = w->second;
      insert_weight_dq(
          q, name,
          weight_params(weights, per_axis_ok ? 1 : -1, DType::kInt8, Symmetry::kSymmetric, options.reduce_range));
    }
  }
  for (const auto& t : plan.tensors) {
    auto p = params.find(plan.groups.find(t));
    if (p != params.end()) insert_activation_qdq(q, t, p->second, p->first);  // one scale per group
  }
  std::vector<std::pair<std::string, std::string>> body_reasons;
  const int64_t inside = quantize_static_bodies(model, out, calibration, options, excluded_names, &body_reasons);
  if (summary) {
    for (auto& w : minimum_scale_warnings(q)) summary->warnings.push_back(std::move(w));
    std::set<std::string> not_calibrated;
    for (const auto& b : blocked) not_calibrated.insert(b.first);
    summary->quantized_nodes = 0;
    for (const auto& name : plan.counted) summary->quantized_nodes += !not_calibrated.count(name);
    summary->kept_fp32 = plan.excluded;
    summary->fp32_reasons = plan.fp32_reasons;
    summary->fp32_reasons.insert(summary->fp32_reasons.end(), blocked.begin(), blocked.end());
    summary->fp32_reasons.insert(summary->fp32_reasons.end(), body_reasons.begin(), body_reasons.end());
    summary->quantized_nodes += inside;
    if (inside > 0) summary->notes.push_back(std::to_string(inside) + " layer(s) inside If/Loop/Scan bodies quantized");
    summary->calibration_samples = done;
    summary->notes.insert(summary->notes.end(), adaround_notes.begin(), adaround_notes.end());
    if (options.bias_correction) {
      summary->notes.push_back("bias correction: " + std::to_string(corrected) +
                               " Conv/Gemm bias(es) corrected for the mean shift of weight rounding");
    }
    for (const auto& layer : plan.layer_outputs) {
      if (!not_calibrated.count(layer.first)) summary->layer_outputs.push_back(layer);
    }
  }
  return out;
}

}  // namespace kvant
