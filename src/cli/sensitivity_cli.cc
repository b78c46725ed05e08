#include "cli/sensitivity_cli.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

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

Json scores_json(const OutputScores& s, TaskMetric metric) {
  Json j = Json::object();
  j.set("value", s.value(metric));
  j.set("output_sqnr_db", s.sqnr_db());
  j.set("mse", s.mse());
  if (s.classifier_rows > 0) j.set("agreement", s.agreement());
  if (s.labelled_rows > 0) {
    j.set("top1", s.top1());
    j.set("top5", s.top5());
  }
  return j;
}

Json sensitivity_json(const SensitivityResult& r) {
  Json j = Json::object();
  j.set("metric", task_metric_name(r.metric));
  j.set("higher_is_better", higher_is_better(r.metric));
  j.set("output", r.output);
  j.set("samples", r.samples);
  j.set("fp32", scores_json(r.fp32, r.metric));
  j.set("quantized", scores_json(r.quantized, r.metric));
  Json layers = Json::array();
  int64_t rank = 0;
  for (const LayerSensitivity& ls : r.layers) {
    Json l = Json::object();
    l.set("node", ls.layer.node);
    l.set("op", ls.layer.op_type);
    l.set("tensor", ls.layer.tensor);
    l.set("measured", ls.measured);
    if (ls.measured) {
      l.set("rank", ++rank);
      l.set("only", scores_json(ls.only, r.metric));
      if (ls.all_but.samples > 0) l.set("all_but", scores_json(ls.all_but, r.metric));
      l.set("partial_nodes", ls.partial_nodes);
    } else {
      l.set("note", ls.note);
    }
    layers.push(l);
  }
  j.set("layers", layers);
  return j;
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

}  // namespace kvant::cli
