#include "cli/sensitivity_cli.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "quant/observers/observer.h"

namespace kvant::cli {

namespace {

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string duration(double s) {
  if (s < 0) return "?";
  const auto total = static_cast<long long>(std::llround(s));
  char buf[32];
  if (total < 60) {
    std::snprintf(buf, sizeof buf, "%llds", total);
  } else if (total < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", total / 60, total % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", total / 3600, total % 3600 / 60);
  }
  return buf;
}

}  // namespace

void print_table(std::ostream& os, const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      std::string cell = r[c];
      if (c + 1 < r.size()) cell.resize(width[c], ' ');
      line += cell + "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    os << line << "\n";
  }
}

Json scores_json(const MetricScores& s) {
  Json j = Json::object();
  j.set("value", s.value);
  j.set("output_sqnr_db", s.output_sqnr_db);
  j.set("mse", s.mse);
  if (s.agreement) j.set("agreement", *s.agreement);
  if (s.top1) j.set("top1", *s.top1);
  if (s.top5) j.set("top5", *s.top5);
  return j;
}

Json sensitivity_json(const SensitivityReport& r) {
  Json j = Json::object();
  j.set("metric", metric_name(r.metric));
  j.set("higher_is_better", higher_is_better(task_metric_of(r.metric, "metric")));
  j.set("output", r.output);
  j.set("samples", r.samples);
  j.set("fp32", scores_json(r.fp32_scores));
  j.set("quantized", scores_json(r.quantized_scores));
  Json layers = Json::array();
  int64_t rank = 0;
  for (const LayerScore& ls : r.layers) {
    Json l = Json::object();
    l.set("node", ls.node);
    l.set("op", ls.op_type);
    l.set("tensor", ls.tensor);
    l.set("measured", ls.measured);
    if (ls.measured) {
      l.set("rank", ++rank);
      l.set("only", scores_json(ls.scores));
      if (ls.all_but_scores) l.set("all_but", scores_json(*ls.all_but_scores));
      l.set("partial_nodes", ls.partial_nodes);
    } else {
      l.set("note", ls.note);
    }
    layers.push(l);
  }
  j.set("layers", layers);
  return j;
}

ProgressCallback api_progress_printer() {
  auto sensitivity = progress_printer("sensitivity");
  const bool tty = isatty(STDERR_FILENO);
  auto started = std::make_shared<std::optional<std::chrono::steady_clock::time_point>>();
  return [sensitivity, tty, started](const Progress& p) {
    if (p.stage == ProgressStage::kSensitivity) {
      const auto now = std::chrono::steady_clock::now();
      if (!*started) *started = now;
      SensitivityProgress s;
      s.done = p.done;
      s.total = p.total;
      s.layer = p.layer;
      s.elapsed_s = std::chrono::duration<double>(now - **started).count();
      s.remaining_s = p.done > 0 && p.total > 0
                          ? s.elapsed_s * static_cast<double>(p.total - p.done) / static_cast<double>(p.done)
                          : -1;
      sensitivity(s);
      return true;
    }
    if (!tty || p.stage == ProgressStage::kAccuracyTarget) return true;  // the search logs its steps itself
    const char* what = p.stage == ProgressStage::kCalibration ? "calibrating"
                       : p.stage == ProgressStage::kAwq       ? "AWQ statistics"
                       : p.stage == ProgressStage::kGptq      ? "GPTQ statistics"
                                                              : "SmoothQuant statistics";
    std::cerr << "\r" << what << " " << p.done;
    if (p.total > 0) std::cerr << "/" << p.total;
    std::cerr << std::flush;
    if (p.done == p.total) std::cerr << "\n";
    return true;
  };
}

std::function<void(const SensitivityProgress&)> progress_printer(const std::string& what) {
  const bool tty = isatty(STDERR_FILENO);
  auto last = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  return [what, tty, last](const SensitivityProgress& p) {
    const auto now = std::chrono::steady_clock::now();
    const bool end = p.total > 0 && p.done >= p.total;
    if (!end && now - *last < (tty ? std::chrono::milliseconds(200) : std::chrono::milliseconds(10000))) return;
    *last = now;
    std::ostringstream line;
    line << what << ": ";
    if (p.total > 0) line << fixed(100.0 * static_cast<double>(p.done) / static_cast<double>(p.total), 0) << "%, ";
    line << "layer " << p.layer << ", " << duration(p.elapsed_s) << " elapsed";
    if (p.remaining_s >= 0) line << ", ~" << duration(p.remaining_s) << " left";
    if (tty) {
      std::cerr << "\r" << line.str() << "\033[K" << (end ? "\n" : "") << std::flush;
    } else {
      std::cerr << line.str() << "\n";
    }
  };
}

Calibrator public_calibrator(const std::string& name) {
  switch (parse_calibration_method(name)) {
    case CalibrationMethod::kMinMax: return Calibrator::kMinMax;
    case CalibrationMethod::kMovingAverage: return Calibrator::kMovingAverage;
    case CalibrationMethod::kPercentile: return Calibrator::kPercentile;
    case CalibrationMethod::kEntropy: return Calibrator::kEntropy;
    case CalibrationMethod::kMse: return Calibrator::kMse;
    default: break;
  }
  throw Error(ErrorCode::kInvalidArgument, "--calibrator: \"" + name + "\" has no counterpart in the API");
}

MetricCallback public_metric_callback(
    const std::function<double(const std::vector<std::vector<float>>&, const std::string&)>& custom) {
  return [custom](const std::vector<TensorView>& outputs, const std::vector<int64_t>&, const std::string& variant) {
    std::vector<std::vector<float>> values;
    values.reserve(outputs.size());
    for (const TensorView& y : outputs) {
      int64_t n = 1;
      for (int64_t d : y.shape) n *= d;
      const auto* f = static_cast<const float*>(y.data);
      values.emplace_back(f, f + n);
    }
    return custom(values, variant);
  };
}

std::optional<Tensors> DatasetReader::get_next() {
  std::optional<std::map<std::string, Tensor>> sample = source_.next();
  if (!sample) return std::nullopt;
  Tensors out;
  for (const auto& [name, tensor] : *sample) out.emplace(name, ApiAccess::wrap(tensor));
  return out;
}

bool DatasetReader::rewind() {
  source_.reset();
  return true;
}

int64_t DatasetReader::size() { return source_.size(); }

}  // namespace kvant::cli
