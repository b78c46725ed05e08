// Per-layer sensitivity with partial runs (quant/sensitivity.h has the
// definitions; quant/partial_model.h builds the partial models).
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
#include "quant/partial_model.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

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

struct Sample {
  std::map<std::string, Tensor> fp32;       // kept FP32 values (and the inputs)
  std::map<std::string, Tensor> quantized;  // kept quantized values (leave-one-out)
  std::vector<float> reference;             // the FP32 output
  std::vector<float> quantized_output;
  int64_t label = -1;
  bool classifier = false;
  ClassMap map;
  TokenIds tokens;  // perplexity: the sample's ids
  size_t bytes = 0;
};

std::vector<float> scored(const std::map<std::string, Tensor>& out, const std::string& name, bool* classifier,
                          ClassMap* map = nullptr) {
  auto it = out.find(name);
  if (it == out.end()) fail("the model computed no output \"" + name + "\"");
  if (!is_float(it->second.dtype())) fail("output \"" + name + "\" is " + it->second.describe() + ", not float");
  *classifier = is_classifier_output(it->second);
  if (map != nullptr) *map = class_map_of(it->second);
  return it->second.to_float_vector();
}

std::map<std::string, Tensor> feeds_for(const PartialModel& p, const std::map<std::string, Tensor>& kept) {
  std::map<std::string, Tensor> feeds;
  for (const auto& [in, source] : p.feeds) feeds[in] = kept.at(source);
  return feeds;
}

}  // namespace

std::vector<QuantizedLayer> quantized_layers(const Model& fp32, const Model& quantized) {
  static const std::set<std::string> kCompute = {"Conv", "Gemm", "MatMul"};
  const Graph& f = fp32.graph;
  const Graph& q = quantized.graph;
  const GraphIndex qi(q);
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
  const GraphIndex fi(f), qi(quantized.graph);

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
  std::vector<std::optional<PartialModel>> only(layers.size()), all_but(layers.size());
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
      s.reference = scored(out, output, &classifier, &s.map);
      if (needs_classifier(options.metric) && !classifier) {
        fail(std::string("--metric ") + task_metric_name(options.metric) +
             " needs one row of class scores per sample; output \"" + output + "\" is " + out.at(output).describe() +
             " (use --metric sqnr or mse)");
      }
      if (needs_tokens(options.metric)) {
        s.tokens = token_ids_of(*feed);
        if (s.tokens.ids.empty()) {
          fail("--metric perplexity needs token ids: an int64 input \"input_ids\" (or the only int64 input)");
        }
      }
      if (needs_class_map(options.metric) && s.map.classes == 0) {
        fail("--metric miou needs a per-pixel class score map [N, C, H, W] with C > 1; output \"" + output + "\" is " +
             out.at(output).describe() + " (use --metric sqnr or mse)");
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
      result.fp32.add(s.reference.data(), s.reference.data(), n, classifier, s.label, s.map, &s.tokens);
      result.quantized.add(s.reference.data(), s.quantized_output.data(), n, classifier, s.label, s.map, &s.tokens);
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
        const PartialModel& p = pass == 0 ? *only[i] : *all_but[i];
        OutputScores& scores = pass == 0 ? ls.only : ls.all_but;
        if (!p.affects_output) {  // the output is the base model's
          for (const Sample& s : chunk) {
            const auto& y = pass == 0 ? s.reference : s.quantized_output;
            scores.add(s.reference.data(), y.data(), static_cast<int64_t>(y.size()), s.classifier, s.label, s.map,
                       &s.tokens);
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
          scores.add(s.reference.data(), y.data(), static_cast<int64_t>(y.size()), classifier, s.label, s.map,
                     &s.tokens);
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