// Static quantization inside If/Loop/Scan bodies (design decision 25).
//
// After quantize_static has rewritten the main graph:
// 1. Plan: every body is copied, the enclosing-graph initializers it reads
//    are copied into it and its constants folded (quant/subgraphs.h); each
//    Conv/Gemm/MatMul in it with a constant float32 weight is a layer, with
//    its activation input and output to calibrate; so is each LSTM/GRU/RNN
//    whose W and R are constant float32 (its sequence input X and output Y).
// 2. Calibrate: the FP32 model (the part kvant can run) runs the calibration
//    samples once more; the observer sees the nodes of whichever branch
//    each sample takes, and every Loop iteration. A Loop body input (a
//    carried state) is observed through its two sources: the Loop's input
//    and the body output that feeds the next iteration.
// 3. Rewrite: weights per channel as in the main graph, bias int32, Q/DQ on
//    the input and output. An LSTM/GRU/RNN's W and R become int8 per gate
//    row as in dynamic mode (its bias stays FP32), with Q/DQ on X and Y
//    (design decision 62; in the main graph static mode leaves them FP32). A value the body reads from an enclosing
//    graph that the main graph already dequantizes keeps that one set of parameters (no second Q/DQ); any other
//    captured value gets a Q/DQ at the top of the body. A layer whose values were never computed during calibration (a
//    branch no sample took) stays FP32, with that reason.
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "kvant/status.h"
#include "passes/pass.h"
#include "quant/qdq.h"
#include "quant/quantize.h"
#include "quant/subgraphs.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

struct BodyLayer {
  Graph* body = nullptr;
  std::string node;
  std::string input, output;
  bool captured = false;   // the input is a value of an enclosing graph
  bool recurrent = false;  // LSTM/GRU/RNN: W and R int8 per gate row, the bias FP32
};

struct BodyPlan {
  std::vector<BodyLayer> layers;
  std::unordered_map<std::string, std::string> key_of;  // observed value -> the observer it feeds
  std::vector<std::pair<std::string, std::string>> reasons;
  std::unordered_set<std::string> dequantized_outer;  // enclosing values a DequantizeLinear produces
};

int weight_axis(const Node& n, const Tensor& w) {
  if (n.op_type == "Conv") return 0;
  if (n.op_type == "Gemm") return n.attr_int("transB", 0) ? 0 : 1;
  return w.rank() == 2 ? 1 : -1;
}

void plan_bodies(Graph& g, std::vector<const Graph*> outer, int64_t opset, const std::set<std::string>& excluded,
                 std::unordered_set<std::string>& used, BodyPlan& plan) {
  static const std::set<std::string> kCompute = {"Conv", "Gemm", "MatMul"};
  static const std::set<std::string> kRecurrent = {"LSTM", "GRU", "RNN"};
  outer.push_back(&g);
  for (const Node& n : g.nodes) {
    if (n.op_type == "DequantizeLinear" && !n.outputs.empty()) plan.dequantized_outer.insert(n.outputs[0]);
  }
  for (Node& node : g.nodes) {
    if (excluded.count(node.name)) continue;
    for (Graph* body : unshare_bodies(node)) {
      Graph& b = *body;
      localize_outer_constants(b, outer, opset, used);
      plan_bodies(b, outer, opset, excluded, used, plan);
      std::unordered_set<std::string> local;
      for (const Node& n : b.nodes) local.insert(n.outputs.begin(), n.outputs.end());
      for (size_t i = 0; i < b.inputs.size(); ++i) {
        const std::string& in = b.inputs[i].name;
        local.insert(in);
        // Loop body inputs (iteration, condition, carried states...): state k
        // comes from the Loop's input k + 2 first, then from body output k + 1.
        if (node.op_type == "Loop" && i >= 2) {
          if (i < node.inputs.size() && !node.inputs[i].empty()) plan.key_of[node.inputs[i]] = in;
          if (i - 1 < b.outputs.size()) plan.key_of[b.outputs[i - 1].name] = in;
        }
      }
      for (const Node& n : b.nodes) {
        const bool recurrent = n.domain.empty() && kRecurrent.count(n.op_type) != 0;
        if (!n.domain.empty() || (!kCompute.count(n.op_type) && !recurrent) || n.inputs.size() < 2) continue;
        if (excluded.count(n.name)) {
          plan.reasons.emplace_back(n.name, "inside a " + node.op_type + " body: excluded (--exclude)");
          continue;
        }
        if (recurrent) {
          // W and R, both constant float32 [directions, gates x hidden, ...].
          bool constant = n.inputs.size() >= 3;
          for (size_t k = 1; constant && k <= 2; ++k) {
            auto t = b.initializers.find(n.inputs[k]);
            constant = t != b.initializers.end() && t->second.dtype() == DType::kFloat32 && t->second.rank() == 3;
          }
          if (!constant) {
            plan.reasons.emplace_back(n.name, "inside a " + node.op_type +
                                                  " body: its W and R are not constant "
                                                  "float32 tensors");
            continue;
          }
          if (n.inputs[0].empty() || b.initializers.count(n.inputs[0])) continue;
          const bool captured = !local.count(n.inputs[0]);
          const std::string y = n.outputs.empty() ? std::string() : n.outputs[0];
          plan.layers.push_back({&b, n.name, n.inputs[0], y, captured, true});
          for (const std::string& t : {n.inputs[0], y}) {
            if (!t.empty() && !plan.key_of.count(t)) plan.key_of[t] = t;
          }
          continue;
        }
        auto w = b.initializers.find(n.inputs[1]);
        if (w == b.initializers.end() || w->second.dtype() != DType::kFloat32) {
          plan.reasons.emplace_back(n.name, "inside a " + node.op_type + " body: its weight is not a constant float32");
          continue;
        }
        if (b.initializers.count(n.inputs[0]) || n.outputs.empty()) continue;
        const bool captured = !local.count(n.inputs[0]);
        plan.layers.push_back({&b, n.name, n.inputs[0], n.outputs[0], captured});
        for (const std::string& t : {n.inputs[0], n.outputs[0]}) {
          if (!plan.key_of.count(t)) plan.key_of[t] = t;
        }
      }
    }
  }
}

// Q -> DQ at the top of `b` on `value`, a value of an enclosing graph; the
// body's reads of it are re-pointed. Returns the dequantized name.
std::string insert_captured_qdq(Graph& b, const std::string& value, const QuantParams& p) {
  const std::string dq_name = value + "/" + b.name + "/dq";
  for (const Node& n : b.nodes) {
    if (!n.outputs.empty() && n.outputs[0] == dq_name) return dq_name;
  }
  for (Node& n : b.nodes) {
    for (std::string& in : n.inputs) {
      if (in == value) in = dq_name;
    }
  }
  // Scale and zero point: initializers of the body, under body-local names.
  const std::string base = value + "/" + b.name;
  b.initializers[base + "/scale"] = Tensor::scalar<float>(p.scale[0]);
  Tensor zp(p.storage, {});
  if (p.storage == DType::kUInt8) {
    zp.data<uint8_t>()[0] = static_cast<uint8_t>(p.zero_point[0]);
  } else {
    zp.data<int8_t>()[0] = static_cast<int8_t>(p.zero_point[0]);
  }
  b.initializers[base + "/zero_point"] = zp;
  Node q = make_node(base + "/QuantizeLinear", "QuantizeLinear", {value, base + "/scale", base + "/zero_point"},
                     {base + "/q"});
  Node dq = make_node(base + "/DequantizeLinear", "DequantizeLinear",
                      {base + "/q", base + "/scale", base + "/zero_point"}, {dq_name});
  b.nodes.insert(b.nodes.begin(), {q, dq});
  return dq_name;
}

}  // namespace

int64_t quantize_static_bodies(const Model& fp32, Model& out, SampleSource& calibration, const QuantizeOptions& options,
                               const std::set<std::string>& excluded,
                               std::vector<std::pair<std::string, std::string>>* reasons) {
  std::unordered_set<std::string> used;
  collect_names(out.graph, used);
  BodyPlan plan;
  plan_bodies(out.graph, {}, out.opset(), excluded, used, plan);
  if (reasons) reasons->insert(reasons->end(), plan.reasons.begin(), plan.reasons.end());
  // The enclosing-graph constants the bodies now hold copies of, if nothing
  // else reads them.
  eliminate_dead_nodes(out.graph);
  if (plan.layers.empty()) return 0;

  // Calibrate the bodies' values on the FP32 model.
  std::unordered_map<std::string, std::unique_ptr<Observer>> observers;
  for (const auto& [value, key] : plan.key_of) {
    if (!observers.count(key)) observers[key] = make_observer(options.calibration);
  }
  auto observe = [&](const std::string& name, const Tensor& t) {
    auto k = plan.key_of.find(name);
    if (k == plan.key_of.end() || t.dtype() != DType::kFloat32) return;
    observers.at(k->second)->observe(t.data<float>(), t.numel());
  };
  calibration.reset();
  const auto first = calibration.next();
  const Model runnable = runnable_for_calibration(fp32, first ? &*first : nullptr, nullptr);
  ReferenceExecutor exec(runnable);
  exec.set_observer([&](const Node& node, const std::vector<Tensor>& outputs) {
    for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
      if (outputs[i].defined()) observe(node.outputs[i], outputs[i]);
    }
  });
  calibration.reset();
  for (int64_t done = 0; done < options.max_samples; ++done) {
    auto feed = calibration.next();
    if (!feed) break;
    for (const auto& [name, t] : *feed) observe(name, t);
    exec.run(*feed);
  }
  auto params_of = [&](const std::string& value) -> std::optional<QuantParams> {
    auto k = plan.key_of.find(value);
    if (k == plan.key_of.end()) return std::nullopt;
    Range r;
    try {
      r = observers.at(k->second)->range();
    } catch (const Error&) {
      return std::nullopt;  // never computed: a branch no sample took
    }
    QuantParams p;
    p.storage = options.activation_type;
    p.scale.resize(1);
    p.zero_point.resize(1);
    choose_qparams(r.min, r.max, options.activation_type, options.activation_symmetry, false, &p.scale[0],
                   &p.zero_point[0]);
    return p;
  };

  int64_t quantized = 0;
  for (const BodyLayer& layer : plan.layers) {
    Graph& b = *layer.body;
    const auto in_params = params_of(layer.input);
    // An LSTM/GRU/RNN whose Y output nothing reads has no output to quantize.
    const auto out_params = layer.output.empty() ? std::optional<QuantParams>(QuantParams{}) : params_of(layer.output);
    if (!in_params || !out_params) {
      if (reasons) {
        reasons->emplace_back(layer.node,
                              "its values inside the body were never computed during calibration (a branch no "
                              "sample took, or a Scan input): stays FP32");
      }
      continue;
    }
    size_t index = 0;
    while (index < b.nodes.size() && b.nodes[index].name != layer.node) ++index;
    if (index == b.nodes.size()) continue;
    const Node n = b.nodes[index];
    if (layer.recurrent) {
      // As dynamic mode does (the recurrent kernels read int8 W and R): int8
      // symmetric, one scale per gate row (axis 1) unless --per-tensor; the
      // bias stays FP32 (the gates add it in float). The sequence input X
      // and the output Y get Q/DQ with the calibrated parameters.
      for (size_t k : {size_t{1}, size_t{2}}) {
        const std::string& name = n.inputs[k];
        if (!b.initializers.count(name) || b.initializers.at(name).dtype() != DType::kFloat32) continue;  // shared
        const Tensor w = b.initializers.at(name);
        check_finite_weight(w, name, options.allow_nonfinite);
        insert_weight_dq(
            b, name,
            weight_params(w, options.per_channel ? 1 : -1, DType::kInt8, Symmetry::kSymmetric, options.reduce_range));
      }
    } else {
      const std::string wname = n.inputs[1];
      const Tensor w = b.initializers.at(wname);
      check_finite_weight(w, wname, options.allow_nonfinite);
      const int axis = options.per_channel ? weight_axis(n, w) : -1;
      const QuantParams wp = weight_params(w, axis, options.weight_type, options.weight_symmetry, options.reduce_range);
      insert_weight_dq(b, wname, wp);
      if (n.op_type != "MatMul" && n.inputs.size() > 2 && b.initializers.count(n.inputs[2])) {
        const Tensor& bias = b.initializers.at(n.inputs[2]);
        const int64_t channels = n.op_type == "Conv" ? w.dim(0) : (n.attr_int("transB", 0) ? w.dim(0) : w.dim(1));
        if (bias.rank() == 1 && bias.numel() == channels && bias.dtype() == DType::kFloat32 &&
            n.attr_float("alpha", 1.0f) == 1.0f && n.attr_float("beta", 1.0f) == 1.0f) {
          check_finite_weight(bias, n.inputs[2], options.allow_nonfinite);
          insert_bias_dq(b, n.inputs[2], in_params->scale[0], wp.scale);
        }
      }
    }
    if (!layer.captured) {
      insert_activation_qdq(b, layer.input, *in_params);
    } else if (!plan.dequantized_outer.count(layer.input)) {
      insert_captured_qdq(b, layer.input, *in_params);
    }  // else: the main graph's DequantizeLinear output, one set of parameters
    if (!layer.output.empty()) insert_activation_qdq(b, layer.output, *out_params);
    ++quantized;
  }
  return quantized;
}

}  // namespace kvant
