// The accuracy-target search (accuracy_target.h has the algorithm).
#include "quant/accuracy_target.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <set>
#include <sstream>

#include "kvant/status.h"
#include "onnx/writer.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

struct Reference {
  std::vector<std::vector<float>> outputs;
  std::vector<bool> classifier;
  std::vector<ClassMap> maps;
  std::vector<int64_t> labels;
};

// Runs `model` over the evaluation set; `ref` null: this is the FP32 model,
// whose outputs are recorded in `record`.
OutputScores measure(const Model& model, SampleSource& data, const std::string& output, const TargetOptions& o,
                     const Reference* ref, Reference* record, double* ms_per_sample,
                     std::vector<std::vector<float>>* outputs) {
  auto copy = std::make_unique<Model>(model);
  std::unique_ptr<ReferenceExecutor> reference;
  std::unique_ptr<CompiledModel> compiled;
  if (o.reference) {
    reference = std::make_unique<ReferenceExecutor>(*copy);
  } else {
    compiled = std::make_unique<CompiledModel>(*copy, default_compile_options(o.threads));
  }
  OutputScores scores;
  data.reset();
  size_t n = 0;
  double seconds = 0;
  while (o.limit < 0 || static_cast<int64_t>(n) < o.limit) {
    auto feed = data.next();
    if (!feed) break;
    const auto t0 = std::chrono::steady_clock::now();
    std::map<std::string, Tensor> out;
    try {
      out = reference ? reference->run(*feed) : compiled->run(*feed);
    } catch (const Error& e) {
      throw Error(e.code(), "sample " + std::to_string(n) + ": " + e.what());
    }
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    auto it = out.find(output);
    if (it == out.end() || !is_float(it->second.dtype())) fail("output \"" + output + "\" is missing or not float");
    std::vector<float> y = it->second.to_float_vector();
    if (outputs) outputs->push_back(y);
    if (record) {
      const bool classifier = is_classifier_output(it->second);
      const ClassMap map = class_map_of(it->second);
      const int64_t label = n < record->labels.size() ? record->labels[n] : -1;
      if (classifier && label >= static_cast<int64_t>(y.size())) {
        fail("label " + std::to_string(n) + " is class " + std::to_string(label) + ", but the model scores " +
             std::to_string(y.size()) + " classes");
      }
      const TokenIds tokens = needs_tokens(o.metric) ? token_ids_of(*feed) : TokenIds{};
      scores.add(y.data(), y.data(), static_cast<int64_t>(y.size()), classifier, label, map, &tokens);
      record->outputs.push_back(std::move(y));
      record->classifier.push_back(classifier);
      record->maps.push_back(map);
    } else {
      if (n >= ref->outputs.size() || ref->outputs[n].size() != y.size()) fail("the quantized output differs in size");
      const int64_t label = n < ref->labels.size() ? ref->labels[n] : -1;
      const TokenIds tokens = needs_tokens(o.metric) ? token_ids_of(*feed) : TokenIds{};
      scores.add(ref->outputs[n].data(), y.data(), static_cast<int64_t>(y.size()), ref->classifier[n], label,
                 ref->maps[n], &tokens);
    }
    ++n;
  }
  if (n == 0) fail("the evaluation data holds no samples");
  *ms_per_sample = 1000 * seconds / static_cast<double>(n);
  return scores;
}

int64_t serialized_bytes(const Model& model) {
  Model m = model;
  m.graph.value_info.clear();
  auto s = serialize_onnx(m);
  return s.ok() ? static_cast<int64_t>(s->size()) : -1;
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "-" : out;
}

}  // namespace

std::string format_target_value(const TargetOptions& o, double value) {
  if (!o.custom) return format_metric(o.metric, value);
  std::ostringstream s;
  s << value;
  return s.str();
}

Model quantize_mix(const Model& fp32, SampleSource* calibration, const QuantizeOptions& options, int bits,
                   const std::vector<std::string>& keep, const std::vector<std::string>& int8, QuantizeSummary* sum) {
  QuantizeOptions o = options;
  o.exclude.insert(o.exclude.end(), keep.begin(), keep.end());
  o.progress = nullptr;
  if (o.mode == QuantMode::kStatic) {  // W4A8: the `int8` layers keep 8-bit weights
    o.int8_weight_layers.insert(o.int8_weight_layers.end(), int8.begin(), int8.end());
    return quantize_static(fp32, *calibration, o, sum);
  }
  // INT4 for all but `keep` and `int8`; the `int8` layers' weight DequantizeLinear
  // (and what it reads) taken from an 8-bit quantization of those layers alone.
  QuantizeOptions all = o;
  all.exclude.insert(all.exclude.end(), int8.begin(), int8.end());
  if (int8.empty()) return quantize_weight_only(fp32, bits, all, sum, calibration);
  const std::set<std::string> up(int8.begin(), int8.end());
  QuantizeOptions only = o;
  bool int4_left = false;  // a layer the INT4 pass would still quantize
  for (const Node& n : fp32.graph.nodes) {
    static const std::set<std::string> kWeighted = {"Conv", "Gemm", "MatMul", "LSTM", "GRU", "RNN"};
    if (!kWeighted.count(n.op_type) || up.count(n.name)) continue;
    const bool excluded = std::find(o.exclude.begin(), o.exclude.end(), n.name) != o.exclude.end();
    int4_left = int4_left || !excluded;
    if (!excluded && !n.name.empty()) only.exclude.push_back(n.name);
  }
  QuantizeSummary second;
  const Model m8 = quantize_weight_only(fp32, 8, only, &second, calibration);
  if (!int4_left) {
    *sum = second;
    return m8;
  }
  Model m = quantize_weight_only(fp32, bits, all, sum, calibration);
  std::vector<Node> dqs;
  for (const Node& n : m8.graph.nodes) {
    if (n.op_type != "DequantizeLinear" || n.outputs.empty() || !m.graph.initializers.count(n.outputs[0])) continue;
    m.graph.initializers.erase(n.outputs[0]);
    for (const auto& in : n.inputs) {
      if (!in.empty()) m.graph.initializers[in] = m8.graph.initializers.at(in);
    }
    dqs.push_back(n);
  }
  m.graph.nodes.insert(m.graph.nodes.begin(), dqs.begin(), dqs.end());
  sum->quantized_nodes += static_cast<int64_t>(dqs.size());
  sum->layer_outputs.insert(sum->layer_outputs.end(), second.layer_outputs.begin(), second.layer_outputs.end());
  std::erase_if(sum->kept_fp32, [&](const std::string& name) { return up.count(name) != 0; });
  return m;
}

TargetSearch search_accuracy_target(const Model& fp32, Model first, const QuantizeSummary& first_summary,
                                    const QuantizeWith& quantize, SampleSource& eval_source,
                                    const std::vector<int64_t>& labels, const TargetOptions& o, std::ostream* log_to) {
  std::ostringstream discarded;
  std::ostream& log = log_to ? *log_to : discarded;
  if (!(o.drop >= 0) || !std::isfinite(o.drop)) fail("--accuracy-target must be a number >= 0");
  const std::string output = o.output.empty() ? fp32.graph.outputs.at(0).name : o.output;
  TargetSearch s;
  Reference ref;
  ref.labels = labels;
  double ms = 0;
  std::vector<std::vector<float>> outputs;
  std::vector<std::vector<float>>* keep = o.custom ? &outputs : nullptr;
  s.fp32 = measure(fp32, eval_source, output, o, nullptr, &ref, &ms, keep);
  s.fp32_value = o.custom ? o.custom(outputs, "fp32") : s.fp32.value(o.metric);
  if (needs_classifier(o.metric) && s.fp32.classifier_rows != s.fp32.samples) {
    fail(std::string("--metric ") + task_metric_name(o.metric) +
         " needs one row of class scores per sample; output \"" + output + "\" is not (use --metric sqnr or mse)");
  }
  if (needs_tokens(o.metric) && s.fp32.scored_tokens == 0) {
    fail(
        "--metric perplexity needs token ids (an int64 input \"input_ids\", or the only int64 input) and logits [.., "
        "T, V] as output \"" +
        output + "\"; none were scored");
  }
  if (needs_class_map(o.metric) && s.fp32.map_samples != s.fp32.samples) {
    fail("--metric miou needs a per-pixel class score map [N, C, H, W] with C > 1 per sample; output \"" + output +
         "\" is not (use --metric sqnr or mse)");
  }
  const bool higher = o.custom ? o.custom_higher_is_better : higher_is_better(o.metric);
  switch (o.metric) {
    case TaskMetric::kTop1:
    case TaskMetric::kTop5: s.threshold = s.fp32.value(o.metric) - o.drop / 100; break;
    case TaskMetric::kAgreement:
    case TaskMetric::kMiou: s.threshold = 1 - o.drop / 100; break;
    case TaskMetric::kPerplexity: s.threshold = s.fp32.value(o.metric) * (1 + o.drop / 100); break;
    case TaskMetric::kSqnr:
    case TaskMetric::kMse: s.threshold = o.drop; break;
  }
  if (o.custom) s.threshold = higher ? s.fp32_value - o.drop : s.fp32_value + o.drop;
  // Shares are counts over n samples: compare with a tolerance far below 1/n.
  auto meets = [&](double v) { return higher ? v >= s.threshold - 1e-9 : v <= s.threshold + 1e-12; };
  log << "accuracy target: " << (o.custom ? "--metric-cmd" : task_metric_name(o.metric)) << (higher ? " >= " : " <= ")
      << format_target_value(o, s.threshold) << " (FP32 " << format_target_value(o, s.fp32_value) << ", "
      << s.fp32.samples << " samples)\n";
  auto walk = [&](Model model, const QuantizeSummary& summary, std::vector<std::string> kept,
                  std::vector<std::string> int8, std::string moved) {
    FrontierStep step;
    step.kept = std::move(kept);
    step.int8 = std::move(int8);
    step.moved = std::move(moved);
    step.bytes = serialized_bytes(model);
    outputs.clear();
    step.scores = measure(model, eval_source, output, o, &ref, nullptr, &step.ms_per_sample, keep);
    step.value = o.custom ? o.custom(outputs, "step " + std::to_string(s.steps.size())) : step.scores.value(o.metric);
    step.meets = meets(step.value);
    const size_t index = s.steps.size();
    log << "  step " << index << ": " << step.kept.size() << " kept FP32"
        << (o.int8_ladder ? ", " + std::to_string(step.int8.size()) + " INT8" : std::string())
        << (step.moved.empty() ? "" : " (" + step.moved + ")") << ", " << format_target_value(o, step.value)
        << (step.meets ? ": met\n" : "\n");
    if (o.on_step) o.on_step(step, index);
    const double best = s.steps.empty() ? 0 : s.steps[s.chosen].value;
    const double v = step.value;
    if (s.steps.empty() || step.meets || (higher ? v > best : v < best)) {
      s.chosen = index;
      s.model = std::move(model);
      s.summary = summary;
    }
    s.steps.push_back(std::move(step));
    return s.steps.back().meets;
  };
  if (walk(std::move(first), first_summary, {}, {}, "")) {
    s.met = true;
    return s;
  }
  const std::vector<QuantizedLayer> layers = quantized_layers(fp32, s.model);
  if (layers.empty()) fail("--accuracy-target: the quantized model has no Conv/Gemm/MatMul layers to keep in FP32");
  SensitivityOptions so;
  so.metric = o.metric;
  so.output = output;
  so.reference = o.reference;
  so.threads = o.threads;
  so.max_samples = o.limit;
  so.progress = o.progress;
  so.custom_metric = o.custom;
  so.custom_higher_is_better = o.custom_higher_is_better;
  const SensitivityResult r = analyze_sensitivity(fp32, s.model, layers, eval_source, labels, so);
  for (const LayerSensitivity& ls : r.layers) {
    if (ls.measured) s.ranking.push_back(ls.layer.node);
  }
  log << "  ranking (most sensitive first): " << join(s.ranking) << "\n";
  auto first_k = [&](size_t k) {
    return std::vector<std::string>(s.ranking.begin(), s.ranking.begin() + static_cast<std::ptrdiff_t>(k));
  };
  const size_t n = s.ranking.size();
  // One rung: step(k) quantizes with the k most sensitive layers moved up and
  // says whether the target is met; k from 1 to `last`.
  auto climb = [&](size_t last, const std::function<bool(size_t)>& step) {
    if (!o.bisect) {
      for (size_t k = 1; k <= last && !s.met; ++k) s.met = step(k);
      return;
    }
    // Bisection: `lo` misses (0 is step 0), `hi` meets once tried.
    if (last == 0 || !step(last)) return;
    s.met = true;
    size_t lo = 0, hi = last;
    while (hi - lo > 1) {
      const size_t mid = lo + (hi - lo) / 2;
      (step(mid) ? hi : lo) = mid;
    }
  };
  auto moved = [&](size_t k, const char* to) {
    if (!o.bisect) return s.ranking[k - 1] + " -> " + to;
    return std::to_string(k) + " most sensitive -> " + to;
  };
  if (o.int8_ladder) {  // INT4 -> INT8 first, every layer
    climb(n, [&](size_t k) {
      QuantizeSummary summary;
      Model model = quantize({}, first_k(k), &summary);
      return walk(std::move(model), summary, {}, first_k(k), moved(k, "INT8"));
    });
  }
  if (!s.met) {
    climb(std::min(n, layers.size() - 1), [&](size_t k) {
      std::vector<std::string> kept = first_k(k);
      std::vector<std::string> int8;
      if (o.int8_ladder) int8.assign(s.ranking.begin() + static_cast<std::ptrdiff_t>(k), s.ranking.end());
      QuantizeSummary summary;
      Model model = quantize(kept, int8, &summary);
      return walk(std::move(model), summary, kept, int8, moved(k, "FP32"));
    });
  }
  return s;
}

}  // namespace kvant
