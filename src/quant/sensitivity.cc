// Per-layer sensitivity with partial runs (quant/sensitivity.h has the
// definitions).
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
#include "quant/sensitivity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "ir/limits.h"
#include "kvant/status.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

constexpr size_t kMaxLayerNodes = 64;  // a quantized layer bigger than this is not a layer

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

bool has_subgraph(const Node& n) {
  for (const auto& [key, attr] : n.attributes) {
    if (attr.kind == Attribute::Kind::kGraph || attr.kind == Attribute::Kind::kGraphs) return true;
  }
  return false;
}

// Name -> producing node index, and every value name, of a main graph.
struct Index {
  std::unordered_map<std::string, size_t> producer;
  std::unordered_set<std::string> values;  // graph inputs and node outputs
  explicit Index(const Graph& g) {
    for (const auto& in : g.inputs) values.insert(in.name);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      for (const auto& o : g.nodes[i].outputs) {
        producer[o] = i;
        values.insert(o);
      }
    }
  }
};

// Runs a model compiled or on the reference executor.
class Runner {
 public:
  Runner(const Model& model, bool reference, int threads) : model_(std::make_unique<Model>(model)) {
    if (reference) {
      reference_ = std::make_unique<ReferenceExecutor>(*model_);
    } else {
      compiled_ = std::make_unique<CompiledModel>(*model_, default_compile_options(threads));
    }
  }
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& feeds) {
    return reference_ ? reference_->run(feeds) : compiled_->run(feeds);
  }

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<ReferenceExecutor> reference_;
  std::unique_ptr<CompiledModel> compiled_;
};

// A partial model and where its inputs come from.
struct Partial {
  Model model;
  std::vector<std::pair<std::string, std::string>> feeds;  // partial input <- base value
  bool affects_output = true;                              // false: the output is the base model's
  int64_t nodes = 0;
  int64_t work = 0;  // estimated multiply-adds (for the time left)
};

// Layer i's quantized subgraph in `q`: the nodes from T back to the float
// values its QuantizeLinears read (as layer_report.cc's own layer).
std::optional<std::vector<Node>> quantized_subgraph(const Model& q, const Index& qi, const Index& fi,
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

// See the header comment. `other` holds the replacement's initializers and
// value types.
std::optional<Partial> build_partial(const Model& base, const Index& bi, const Model& other,
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
  Partial p;
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

struct Sample {
  std::map<std::string, Tensor> fp32;       // kept FP32 values (and the inputs)
  std::map<std::string, Tensor> quantized;  // kept quantized values (leave-one-out)
  std::vector<float> reference;             // the FP32 output
  std::vector<float> quantized_output;
  int64_t label = -1;
  bool classifier = false;
  size_t bytes = 0;
};

std::vector<float> scored(const std::map<std::string, Tensor>& out, const std::string& name, bool* classifier) {
  auto it = out.find(name);
  if (it == out.end()) fail("the model computed no output \"" + name + "\"");
  if (!is_float(it->second.dtype())) fail("output \"" + name + "\" is " + it->second.describe() + ", not float");
  *classifier = is_classifier_output(it->second);
  return it->second.to_float_vector();
}

std::map<std::string, Tensor> feeds_for(const Partial& p, const std::map<std::string, Tensor>& kept) {
  std::map<std::string, Tensor> feeds;
  for (const auto& [in, source] : p.feeds) feeds[in] = kept.at(source);
  return feeds;
}

}  // namespace

std::vector<QuantizedLayer> quantized_layers(const Model& fp32, const Model& quantized) {
  static const std::set<std::string> kCompute = {"Conv", "Gemm", "MatMul"};
  const Graph& f = fp32.graph;
  const Graph& q = quantized.graph;
  const Index qi(q);
  std::unordered_map<std::string, size_t> q_by_name;
  for (size_t i = 0; i < q.nodes.size(); ++i) {
    if (!q.nodes[i].name.empty()) q_by_name[q.nodes[i].name] = i;
  }
  std::unordered_map<std::string, std::vector<size_t>> readers;
  for (size_t i = 0; i < f.nodes.size(); ++i) {
    for (const auto& in : f.nodes[i].inputs) readers[in].push_back(i);
  }
  auto dq_made = [&](const std::string& t) {
    auto p = qi.producer.find(t);
    return p != qi.producer.end() && q.nodes[p->second].op_type == "DequantizeLinear";
  };
  std::vector<QuantizedLayer> out;
  for (const Node& n : f.nodes) {
    if (!kCompute.count(n.op_type) || n.name.empty() || n.outputs.empty()) continue;
    auto qn = q_by_name.find(n.name);
    if (qn == q_by_name.end() || q.nodes[qn->second].op_type != n.op_type) continue;
    bool from_dq = false;
    for (const auto& in : q.nodes[qn->second].inputs) from_dq = from_dq || dq_made(in);
    if (!from_dq) continue;
    QuantizedLayer layer{n.name, n.op_type, n.outputs[0], ""};
    const auto& r = readers[n.outputs[0]];
    if (r.size() == 1) {
      const Node& act = f.nodes[r[0]];
      if ((act.op_type == "Relu" || act.op_type == "Clip") && !act.outputs.empty() && dq_made(act.outputs[0]) &&
          qi.values.count(act.outputs[0] + "/float") && !dq_made(n.outputs[0])) {
        layer.tensor = act.outputs[0];
        layer.activation = act.name;
      }
    }
    out.push_back(layer);
  }
  return out;
}

void rank_layers(std::vector<LayerSensitivity>& layers, TaskMetric metric, int custom) {
  const bool higher = custom != 0 ? custom > 0 : higher_is_better(metric);
  std::stable_sort(layers.begin(), layers.end(), [&](const LayerSensitivity& a, const LayerSensitivity& b) {
    if (a.measured != b.measured) return a.measured;
    if (!a.measured) return false;
    const double va = custom != 0 ? a.custom_only : a.only.value(metric);
    const double vb = custom != 0 ? b.custom_only : b.only.value(metric);
    if (va != vb) return higher ? va < vb : va > vb;
    return a.only.sqnr_db() < b.only.sqnr_db();
  });
}

SensitivityResult analyze_sensitivity(const Model& fp32, const Model& quantized,
                                      const std::vector<QuantizedLayer>& layers, SampleSource& eval,
                                      const std::vector<int64_t>& labels, const SensitivityOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  SensitivityResult result;
  result.metric = options.metric;
  const Graph& f = fp32.graph;
  if (f.outputs.empty()) fail("the model has no outputs");
  result.output = options.output.empty() ? f.outputs[0].name : options.output;
  const std::string& output = result.output;
  {
    bool found = false;
    for (const auto& o : f.outputs) found = found || o.name == output;
    if (!found) fail("the model has no output named \"" + output + "\"");
  }
  if (needs_labels(options.metric) && labels.empty()) {
    fail(std::string("--metric ") + task_metric_name(options.metric) + " needs labels (--labels FILE)");
  }
  int64_t total_samples = eval.size();
  if (total_samples >= 0 && options.max_samples >= 0) total_samples = std::min(total_samples, options.max_samples);
  if (!labels.empty() && total_samples >= 0) {
    const bool limited = options.max_samples >= 0 && options.max_samples < eval.size();
    if (limited ? static_cast<int64_t>(labels.size()) < total_samples
                : static_cast<int64_t>(labels.size()) != total_samples) {
      fail("the labels hold " + std::to_string(labels.size()) + " entries for " + std::to_string(total_samples) +
           " samples");
    }
  }
  const Index fi(f), qi(quantized.graph);

  // The partial models' recipes: replacement nodes per layer.
  struct Recipe {
    std::vector<Node> only, all_but;
  };
  std::vector<Recipe> recipes(layers.size());
  result.layers.resize(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) {
    LayerSensitivity& ls = result.layers[i];
    ls.layer = layers[i];
    auto sub = quantized_subgraph(quantized, qi, fi, layers[i].tensor);
    if (!sub) {
      ls.note = "its quantized form is not a small subgraph of the quantized model";
      continue;
    }
    recipes[i].only = std::move(*sub);
    for (const Node& n : f.nodes) {
      if (n.name == layers[i].node || (!layers[i].activation.empty() && n.name == layers[i].activation)) {
        recipes[i].all_but.push_back(n);
      }
    }
    ls.measured = true;
  }
  // Build once to learn what each partial run reads from the kept values.
  std::set<std::string> keep_fp32 = {output}, keep_q = {output};
  std::vector<std::optional<Partial>> only(layers.size()), all_but(layers.size());
  auto build = [&](size_t i) {
    LayerSensitivity& ls = result.layers[i];
    if (!ls.measured) return;
    std::string why;
    only[i] = build_partial(fp32, fi, quantized, recipes[i].only, output, &why);
    if (only[i] && options.leave_one_out)
      all_but[i] = build_partial(quantized, qi, fp32, recipes[i].all_but, output, &why);
    if (!only[i] || (options.leave_one_out && !all_but[i])) {
      ls.measured = false;
      ls.note = why;
      only[i].reset();
      all_but[i].reset();
      return;
    }
    ls.partial_nodes = only[i]->nodes;
    for (const auto& fd : only[i]->feeds) keep_fp32.insert(fd.second);
    if (all_but[i]) {
      for (const auto& fd : all_but[i]->feeds) keep_q.insert(fd.second);
    }
  };
  for (size_t i = 0; i < layers.size(); ++i) build(i);

  Runner fp32_runner(with_outputs(fp32, keep_fp32), options.reference, options.threads);
  Runner q_runner(options.leave_one_out ? with_outputs(quantized, keep_q) : quantized, options.reference,
                  options.threads);

  int64_t budget = options.cache_bytes;
  if (budget <= 0) budget = std::min<int64_t>(int64_t{4} << 30, memory_budget_bytes() / 4);
  // Work per layer and sample, for the estimate: the multiply-adds it runs.
  int64_t work_per_sample = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (only[i] && only[i]->affects_output) work_per_sample += only[i]->work;
    if (all_but[i] && all_but[i]->affects_output) work_per_sample += all_but[i]->work;
  }
  const int64_t total_work = total_samples >= 0 ? work_per_sample * total_samples : -1;
  int64_t done_work = 0;
  double layer_seconds = 0;  // time spent in partial runs

  // Every variant's outputs, for the custom metric.
  const bool custom = static_cast<bool>(options.custom_metric);
  std::vector<std::vector<float>> fp32_outputs, q_outputs;
  std::vector<std::vector<std::vector<float>>> layer_outputs(custom ? layers.size() : 0);

  eval.reset();
  int64_t sample_index = 0;
  bool exhausted = false;
  std::vector<Sample> chunk;
  while (!exhausted) {
    // 1. Read a chunk, keeping the values the partial runs read.
    chunk.clear();
    size_t bytes = 0, per_sample = 0;
    while (true) {
      if (options.max_samples >= 0 && sample_index >= options.max_samples) {
        exhausted = true;
        break;
      }
      if (!chunk.empty() && bytes + per_sample > static_cast<size_t>(budget)) break;
      auto feed = eval.next();
      if (!feed) {
        exhausted = true;
        break;
      }
      Sample s;
      std::map<std::string, Tensor> out;
      try {
        out = fp32_runner.run(*feed);
      } catch (const Error& e) {
        throw Error(e.code(), "sample " + std::to_string(sample_index) + ": " + e.what());
      }
      bool classifier = false;
      s.reference = scored(out, output, &classifier);
      if (needs_classifier(options.metric) && !classifier) {
        fail(std::string("--metric ") + task_metric_name(options.metric) +
             " needs one row of class scores per sample; output \"" + output + "\" is " + out.at(output).describe() +
             " (use --metric sqnr or mse)");
      }
      if (!labels.empty()) {
        if (sample_index >= static_cast<int64_t>(labels.size())) {
          fail("the labels hold " + std::to_string(labels.size()) + " entries, but the data has more samples");
        }
        s.label = labels[static_cast<size_t>(sample_index)];
        const auto classes = static_cast<int64_t>(s.reference.size());
        if (s.label < 0 || s.label >= classes) {
          fail("label " + std::to_string(sample_index) + " is class " + std::to_string(s.label) +
               ", but the model scores " + std::to_string(classes) + " classes");
        }
      }
      s.classifier = classifier;
      for (const auto& name : keep_fp32) {
        auto it = out.find(name);
        if (it != out.end()) {
          s.fp32[name] = it->second;
        } else if (auto fit = feed->find(name); fit != feed->end()) {
          s.fp32[name] = fit->second;
        } else {
          fail("the FP32 run did not compute \"" + name + "\"");
        }
        s.bytes += s.fp32[name].nbytes();
      }
      std::map<std::string, Tensor> qout;
      try {
        qout = q_runner.run(*feed);
      } catch (const Error& e) {
        throw Error(e.code(), "quantized model, sample " + std::to_string(sample_index) + ": " + e.what());
      }
      bool q_classifier = false;
      s.quantized_output = scored(qout, output, &q_classifier);
      if (s.quantized_output.size() != s.reference.size()) fail("the quantized model's output differs in size");
      if (options.leave_one_out) {
        for (const auto& name : keep_q) {
          auto it = qout.find(name);
          if (it != qout.end()) {
            s.quantized[name] = it->second;
          } else if (auto fit = feed->find(name); fit != feed->end()) {
            s.quantized[name] = fit->second;
          } else {
            fail("the quantized run did not compute \"" + name + "\"");
          }
          s.bytes += s.quantized[name].nbytes();
        }
      }
      const auto n = static_cast<int64_t>(s.reference.size());
      result.fp32.add(s.reference.data(), s.reference.data(), n, classifier, s.label);
      result.quantized.add(s.reference.data(), s.quantized_output.data(), n, classifier, s.label);
      per_sample = std::max(per_sample, s.bytes);
      bytes += s.bytes;
      chunk.push_back(std::move(s));
      ++sample_index;
    }
    if (chunk.empty()) break;
    ++result.chunks;
    if (custom) {
      for (const Sample& s : chunk) {
        fp32_outputs.push_back(s.reference);
        q_outputs.push_back(s.quantized_output);
      }
      if (result.chunks == 1) result.custom_fp32 = options.custom_metric(fp32_outputs, "fp32");
    }
    // 2. Every layer's partial runs over the chunk.
    for (size_t i = 0; i < layers.size(); ++i) {
      LayerSensitivity& ls = result.layers[i];
      if (!ls.measured) continue;
      for (int pass = 0; pass < (options.leave_one_out ? 2 : 1); ++pass) {
        const Partial& p = pass == 0 ? *only[i] : *all_but[i];
        OutputScores& scores = pass == 0 ? ls.only : ls.all_but;
        if (!p.affects_output) {  // the output is the base model's
          for (const Sample& s : chunk) {
            const auto& y = pass == 0 ? s.reference : s.quantized_output;
            scores.add(s.reference.data(), y.data(), static_cast<int64_t>(y.size()), s.classifier, s.label);
            if (custom && pass == 0) layer_outputs[i].push_back(y);
          }
          continue;
        }
        const auto t0 = std::chrono::steady_clock::now();
        std::unique_ptr<Runner> runner;
        try {
          runner = std::make_unique<Runner>(p.model, options.reference, options.threads);
        } catch (const Error& e) {
          throw Error(e.code(), "layer \"" + ls.layer.node + "\": " + e.what());
        }
        for (const Sample& s : chunk) {
          std::map<std::string, Tensor> out;
          try {
            out = runner->run(feeds_for(p, pass == 0 ? s.fp32 : s.quantized));
          } catch (const Error& e) {
            throw Error(e.code(), "layer \"" + ls.layer.node + "\": " + e.what());
          }
          bool classifier = false;
          const std::vector<float> y = scored(out, output, &classifier);
          if (y.size() != s.reference.size()) fail("layer \"" + ls.layer.node + "\": the output changed size");
          scores.add(s.reference.data(), y.data(), static_cast<int64_t>(y.size()), classifier, s.label);
          if (custom && pass == 0) layer_outputs[i].push_back(y);
          done_work += p.work;
          if (options.progress) {
            SensitivityProgress pr;
            pr.done = done_work;
            pr.total = total_work;
            pr.layer = ls.layer.node;
            const double in_layers =
                layer_seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            pr.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            if (total_work > 0 && done_work > 0) {
              pr.remaining_s = in_layers / static_cast<double>(done_work) * static_cast<double>(total_work - done_work);
            }
            options.progress(pr);
          }
        }
        layer_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
    }
  }
  if (sample_index == 0) fail("the evaluation data holds no samples");
  if (!labels.empty() && options.max_samples < 0 && static_cast<int64_t>(labels.size()) != sample_index) {
    fail("the labels hold " + std::to_string(labels.size()) + " entries for " + std::to_string(sample_index) +
         " samples");
  }
  result.samples = sample_index;
  if (custom) {
    if (result.chunks > 1) result.custom_fp32 = options.custom_metric(fp32_outputs, "fp32");
    result.custom_quantized = options.custom_metric(q_outputs, "quantized");
    for (size_t i = 0; i < layers.size(); ++i) {
      if (result.layers[i].measured) {
        result.layers[i].custom_only = options.custom_metric(layer_outputs[i], result.layers[i].layer.node);
      }
    }
  }
  rank_layers(result.layers, options.metric, custom ? (options.custom_higher_is_better ? 1 : -1) : 0);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace kvant
