#include "cli/speed_check.h"

#include <algorithm>
#include <chrono>
#include <random>

#include "runtime/compiled_model.h"

namespace kvant::cli {

namespace {

using Clock = std::chrono::steady_clock;

double best_ms(CompiledModel& model, const std::map<std::string, Tensor>& sample) {
  model.run(sample);  // plans for these shapes
  double best = 1e300, spent = 0;
  for (int i = 0; i < 5 && spent < 2.0; ++i) {
    const auto start = Clock::now();
    model.run(sample);
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    best = std::min(best, s);
    spent += s;
  }
  return best * 1e3;
}

}  // namespace

std::optional<SpeedCheck> check_speed(const Model& fp32, const Model& quantized,
                                      const std::map<std::string, Tensor>& sample, std::string& why) {
  SpeedCheck check;
  try {
    {
      // One compiled model at a time: the FP32 one is gone before the other is built.
      CompiledModel f(fp32, default_compile_options(check.threads));
      check.fp32_ms = best_ms(f, sample);
    }
    CompiledModel q(quantized, default_compile_options(check.threads));
    check.quantized_ms = best_ms(q, sample);
    std::map<std::string, int> counts;
    for (const auto& step : q.steps()) {
      if (step->kind() != Step::Kind::kFallback) continue;
      ++check.fallback_steps;
      std::string op = step->kernel();
      for (const char* prefix : {"fallback ", "reference "}) {
        if (op.starts_with(prefix)) op = op.substr(std::string(prefix).size());
      }
      ++counts[op];
    }
    std::vector<std::pair<int, std::string>> sorted;
    for (const auto& [op, n] : counts) sorted.emplace_back(-n, op);
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [n, op] : sorted) check.fallbacks.push_back(op + " x" + std::to_string(-n));
  } catch (const std::exception& e) {
    why = e.what();
    return std::nullopt;
  }
  return check;
}

std::optional<std::map<std::string, Tensor>> synthetic_sample(const Graph& graph, std::string& why) {
  std::map<std::string, Tensor> feeds;
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (const auto& in : graph.inputs) {
    if (graph.initializers.count(in.name)) continue;
    if (!in.type.has_shape || (in.type.dtype != DType::kFloat32 && !is_integer(in.type.dtype))) {
      why = "input \"" + in.name + "\" has no declared shape or is not float32/integer";
      return std::nullopt;
    }
    Shape shape;
    for (size_t i = 0; i < in.type.dims.size(); ++i) {
      const Dim& d = in.type.dims[i];
      if (!d.known() && i > 0) {
        why = "input \"" + in.name + "\" has an unknown dim other than the batch";
        return std::nullopt;
      }
      shape.push_back(d.known() ? d.value : 1);
    }
    Tensor t(in.type.dtype, shape);
    if (t.dtype() == DType::kFloat32) {
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = uniform(rng);
    }
    feeds[in.name] = t;
  }
  return feeds;
}

}  // namespace kvant::cli
