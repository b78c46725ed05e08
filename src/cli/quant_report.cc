#include "cli/quant_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <map>
#include <set>
#include <sstream>

#include "cli/cli_common.h"
#include "io/atomic_file.h"

namespace kvant::cli {

namespace {

namespace fs = std::filesystem;

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

}  // namespace

int64_t model_bytes_on_disk(const std::string& path) {
  std::error_code ec;
  int64_t bytes = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec) return 0;
  // kvant's writer puts external data in "<file>.data" (onnx/writer.h).
  const auto side = static_cast<int64_t>(fs::file_size(path + ".data", ec));
  if (!ec) bytes += side;
  return bytes;
}

void add_findings(QuantReport& r, const Model& fp32) {
  static const std::set<std::string> kCompute = {"Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM", "GRU", "RNN"};
  std::set<std::string> handled(r.summary.kept_fp32.begin(), r.summary.kept_fp32.end());
  for (const auto& [node, tensor] : r.summary.layer_outputs) handled.insert(node);
  for (const auto& [node, why] : r.summary.fp32_reasons) handled.insert(node);  // listed with their reason
  // A compute node whose output only feeds a fused activation is reported
  // under the activation's name (static mode: Conv -> Relu is one layer).
  std::map<std::string, std::vector<const Node*>> readers;
  for (const Node& n : fp32.graph.nodes) {
    for (const auto& in : n.inputs) readers[in].push_back(&n);
  }
  for (const Node& n : fp32.graph.nodes) {
    if (n.outputs.empty()) continue;
    const auto& rd = readers[n.outputs[0]];
    if (rd.size() == 1 && handled.count(rd[0]->name) && (rd[0]->op_type == "Relu" || rd[0]->op_type == "Clip"))
      handled.insert(n.name);
  }
  for (const Node& n : fp32.graph.nodes) {
    if (n.domain.empty() && kCompute.count(n.op_type) && !handled.count(n.name)) {
      r.skipped.push_back(n.name + " (" + n.op_type + ")");
    }
  }
  // The model's output, as far as the report measured it.
  std::set<std::string> outputs;
  for (const auto& o : fp32.graph.outputs) outputs.insert(o.name);
  for (const LayerError& e : r.layers) {
    if (!outputs.count(e.tensor) || e.near_constant || !(e.sqnr_db < kOutputSqnrWarningDb)) continue;
    r.warnings.push_back("output \"" + e.tensor + "\" has an SQNR of " + fixed(e.sqnr_db, 1) +
                         " dB against FP32, below " + fixed(kOutputSqnrWarningDb, 0) +
                         " dB: check the accuracy (kvant eval with labels) before using this model");
  }
  if (r.speed && r.speed->slower()) {
    std::string w = "the quantized model runs slower than FP32 here (" + fixed(r.speed->quantized_ms, 2) + " ms vs " +
                    fixed(r.speed->fp32_ms, 2) + " ms on one sample, compiled)";
    if (r.speed->fallback_steps > 0) {
      w += ": " + std::to_string(r.speed->fallback_steps) +
           (r.speed->fallback_steps == 1 ? " step has" : " steps have") +
           " no fast kernel yet and run on reference kernels (";
      for (size_t i = 0; i < r.speed->fallbacks.size() && i < 6; ++i) w += (i ? ", " : "") + r.speed->fallbacks[i];
      if (r.speed->fallbacks.size() > 6) w += ", ...";
      w += ")";
    }
    r.warnings.push_back(w);
  }
}

void print_quant_report(std::ostream& os, const QuantReport& r) {
  const QuantizeSummary& s = r.summary;
  os << "quantized   " << r.input << " -> " << r.output << " (" << r.mode << ", " << fixed(r.seconds, 1) << " s)\n";
  const double ratio = r.fp32_bytes > 0 ? 100.0 * static_cast<double>(r.quantized_bytes) / r.fp32_bytes : 0;
  os << "size        " << format_bytes(r.fp32_bytes) << " -> " << format_bytes(r.quantized_bytes) << " ("
     << fixed(ratio, 1) << "% of FP32)\n";
  os << "nodes       " << s.quantized_nodes << " quantized, " << s.kept_fp32.size() << " kept in FP32";
  if (!s.kept_fp32.empty()) {
    os << " (";
    for (size_t i = 0; i < s.kept_fp32.size(); ++i) os << (i ? ", " : "") << printable(s.kept_fp32[i]);
    os << ")";
  }
  if (!r.skipped.empty()) {
    os << ", " << r.skipped.size() << " skipped (not quantized by this mode: ";
    for (size_t i = 0; i < r.skipped.size() && i < 5; ++i) os << (i ? ", " : "") << printable(r.skipped[i]);
    if (r.skipped.size() > 5) os << ", and " << r.skipped.size() - 5 << " more; --report lists all";
    os << ")";
  }
  os << "\n";
  const size_t reasons_shown = std::min<size_t>(s.fp32_reasons.size(), 8);
  for (size_t i = 0; i < reasons_shown; ++i) {
    os << "fp32        \"" << printable(s.fp32_reasons[i].first) << "\": " << printable(s.fp32_reasons[i].second)
       << "\n";
  }
  if (s.fp32_reasons.size() > reasons_shown) {
    os << "fp32        and " << s.fp32_reasons.size() - reasons_shown << " more nodes; --report lists all\n";
  }
  if (r.speed) {
    os << "speed       FP32 " << fixed(r.speed->fp32_ms, 2) << " ms -> " << fixed(r.speed->quantized_ms, 2)
       << " ms on one sample (compiled, " << r.speed->threads << " thread)\n";
  }
  if (s.calibration_samples > 0) os << "calibration " << s.calibration_samples << " samples\n";
  for (const auto& n : s.notes) os << "note        " << n << "\n";
  for (const auto& n : r.notes) os << "note        " << n << "\n";
  for (const auto& w : s.warnings) os << "warning     " << printable(w) << "\n";
  for (const auto& w : r.warnings) os << "warning     " << printable(w) << "\n";
  if (r.layers.empty()) return;
  const size_t shown = std::min<size_t>(r.layers.size(), 10);
  size_t width = 5;
  for (size_t i = 0; i < shown; ++i) width = std::max(width, r.layers[i].node.size());
  width = std::min<size_t>(width, 48);
  os << "per-layer error vs FP32 on " << r.layer_samples << " samples, worst first ("
     << (shown < r.layers.size()
             ? std::to_string(shown) + " of " + std::to_string(r.layers.size()) + "; --report has all"
             : std::to_string(shown))
     << "; own: the layer alone on FP32 inputs, accumulated: everything up to it quantized)\n";
  os << "  " << std::left << std::setw(static_cast<int>(width)) << "layer"
     << "  " << std::right << std::setw(10) << "own dB"
     << "  " << std::setw(10) << "accum dB"
     << "  " << std::setw(8) << "cosine"
     << "\n";
  auto db = [](double v) {
    return std::isnan(v) ? std::string("n/a") : std::isfinite(v) ? fixed(v, 1) : std::string("exact");
  };
  for (size_t i = 0; i < shown; ++i) {
    const LayerError& e = r.layers[i];
    std::string name = e.node.size() > width ? e.node.substr(0, width - 1) + "~" : e.node;
    os << "  " << std::left << std::setw(static_cast<int>(width)) << name << "  " << std::right << std::setw(10)
       << db(e.own_sqnr_db) << "  " << std::setw(10) << db(e.sqnr_db) << "  " << std::setw(8) << fixed(e.cosine, 5);
    if (e.near_constant) {
      std::ostringstream std_text;
      std_text << std::setprecision(3) << e.fp32_std;
      os << "  near-constant (FP32 std " << std_text.str() << ")";
    }
    os << "\n";
  }
}

Json quant_report_json(const QuantReport& r) {
  Json j = Json::object();
  j.set("report", "quantize");
  j.set("mode", r.mode);
  j.set("input", r.input);
  j.set("output", r.output);
  j.set("fp32_bytes", r.fp32_bytes);
  j.set("quantized_bytes", r.quantized_bytes);
  j.set("size_ratio", r.fp32_bytes > 0 ? static_cast<double>(r.quantized_bytes) / r.fp32_bytes : 0.0);
  j.set("quantized_nodes", r.summary.quantized_nodes);
  Json kept = Json::array();
  for (const auto& k : r.summary.kept_fp32) kept.push(k);
  j.set("kept_fp32", kept);
  Json reasons = Json::array();
  for (const auto& [node, why] : r.summary.fp32_reasons) {
    Json e = Json::object();
    e.set("node", node);
    e.set("reason", why);
    reasons.push(std::move(e));
  }
  j.set("fp32_reasons", reasons);
  j.set("calibration_samples", r.summary.calibration_samples);
  Json notes = Json::array();
  for (const auto& n : r.summary.notes) notes.push(n);
  for (const auto& n : r.notes) notes.push(n);
  j.set("notes", notes);
  Json warnings = Json::array();
  for (const auto& w : r.summary.warnings) warnings.push(w);
  for (const auto& w : r.warnings) warnings.push(w);
  j.set("warnings", warnings);
  Json skipped = Json::array();
  for (const auto& n : r.skipped) skipped.push(n);
  j.set("skipped", skipped);
  if (r.speed) {
    Json speed = Json::object();
    speed.set("fp32_ms", r.speed->fp32_ms);
    speed.set("quantized_ms", r.speed->quantized_ms);
    speed.set("fallback_steps", static_cast<int64_t>(r.speed->fallback_steps));
    j.set("speed", speed);
  }
  j.set("layer_error_samples", r.layer_samples);
  // Each layer's place in the graph (r.layers is worst first).
  std::map<std::pair<std::string, std::string>, int64_t> order;
  for (const auto& [node, tensor] : r.summary.layer_outputs)
    order.emplace(std::make_pair(node, tensor), static_cast<int64_t>(order.size()));
  Json layers = Json::array();
  for (const auto& e : r.layers) {
    Json l = Json::object();
    l.set("node", e.node);
    auto o = order.find({e.node, e.tensor});
    l.set("order", o == order.end() ? static_cast<int64_t>(order.size()) : o->second);
    l.set("tensor", e.tensor);
    // sqnr_db/cosine: accumulated (the quantized model up to this layer);
    // own_*: this layer alone on FP32 inputs (null: not measured).
    l.set("sqnr_db", e.sqnr_db);
    l.set("cosine", e.cosine);
    if (std::isnan(e.own_sqnr_db)) {
      l.set("own_sqnr_db", Json());
      l.set("own_cosine", Json());
    } else {
      l.set("own_sqnr_db", e.own_sqnr_db);
      l.set("own_cosine", e.own_cosine);
    }
    l.set("near_constant", e.near_constant);
    l.set("fp32_std", e.fp32_std);
    l.set("output_step", e.output_step);
    layers.push(l);
  }
  j.set("layers", layers);
  Json histograms = Json::array();
  for (const RangeHistogram& h : r.histograms) {
    Json x = Json::object();
    x.set("tensor", h.tensor);
    x.set("node", h.node);
    x.set("weight", h.weight);
    x.set("lo", h.lo);
    x.set("hi", h.hi);
    x.set("ranges", h.ranges);
    x.set("min", h.min);
    x.set("max", h.max);
    x.set("values", h.values);
    x.set("clipped", h.clipped);
    x.set("plot_lo", h.plot_lo);
    x.set("plot_hi", h.plot_hi);
    x.set("binned", h.binned);
    Json counts = Json::array();
    for (int64_t c : h.counts) counts.push(c);
    x.set("counts", counts);
    histograms.push(std::move(x));
  }
  j.set("histograms", histograms);
  j.set("seconds", r.seconds);
  return j;
}

void write_json_file(const std::string& path, const Json& json) {
  const Status s = write_file_atomic(path, json.dump() + "\n");
  if (!s.ok()) throw Error(s.code(), s.message());
}

}  // namespace kvant::cli
