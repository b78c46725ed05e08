// kvant sensitivity: which layers cost accuracy when quantized. On the
// public API (kvant::sensitivity, include/kvant/kvant.h); the command reads
// the data files, runs --metric-cmd and prints or writes the ranking.
//
//   kvant sensitivity model.onnx --calib DATA [--eval DATA [--labels L]] [--metric M] [--bits 8|4]
//
// Quantizes the model as `kvant quantize` would (static INT8 calibrated on
// --calib, or with --bits 4 weight-only INT4), then measures the task metric
// on --eval with only one layer quantized, for every Conv/Gemm/MatMul, and
// prints them ranked, most sensitive first (quant/sensitivity.h: the FP32
// values are computed once per sample; each layer costs a partial run of
// what lies downstream of it).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli/cli_common.h"
#include "cli/eval_data.h"
#include "cli/html_report.h"
#include "cli/json.h"
#include "cli/metric_cmd.h"
#include "cli/quant_report.h"
#include "cli/sensitivity_cli.h"
#include "io/dataset.h"
#include "io/output_file.h"
#include "kvant/kvant.h"
#include "quant/quantize.h"

namespace kvant::cli {

namespace {

struct SensitivityArgs {
  std::string model;
  std::string calib;
  std::string eval;
  std::string labels;
  std::string preprocess;
  std::string metric;
  std::string metric_cmd;
  std::string metric_better = "higher";
  int bits = 8;
  std::string calibrator = "minmax";
  int64_t samples = 500;
  int64_t limit = -1;
  int group_size = 128;
  std::vector<std::string> exclude;
  std::string output;
  std::string json;
  std::string report;
  bool leave_one_out = false;
  bool reference = false;
  bool force = false;
  int threads = 1;
};

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

int sensitivity_command(const SensitivityArgs& a) {
  check_threads(a.threads);
  if (a.bits != 8 && a.bits != 4)
    fail("--bits must be 8 (static INT8) or 4 (weight-only INT4), got " + std::to_string(a.bits));
  if (a.bits == 8 && a.calib.empty()) fail("--bits 8 (static INT8) needs calibration data: --calib DATA");
  if (a.eval.empty() && a.calib.empty()) fail("give the evaluation data: --eval DATA");
  if (!a.json.empty()) check_output_target(a.json, a.force, "--json");
  if (!a.report.empty()) check_output_target(a.report, a.force, "--report");
  if (!a.json.empty() && !a.report.empty() && a.json == a.report) fail("--json and --report name the same file");
  // With shape inference: typed values let the partial models compile to fast kernels.
  Result<OnnxModel> model = OnnxModel::load(a.model);
  if (!model.ok()) throw Error(model.status().code(), model.status().message());
  for (const std::string& warning : model->warnings()) std::cerr << "kvant: warning: " << warning << "\n";
  if (model->is_quantized()) fail(a.model + " is already quantized; give its FP32 original");
  const Graph& graph = ApiAccess::impl(*model, "sensitivity").model.graph;

  // Every input checked before the long work: data shapes, labels, metric.
  std::unique_ptr<SampleSource> calib;
  std::optional<DatasetReader> calib_reader;
  if (a.bits == 8) {
    DatasetOptions dopt;
    if (!a.preprocess.empty()) dopt.preprocess = parse_preprocess(a.preprocess);
    calib = open_dataset(a.calib, sample_inputs(graph), dopt);
    calib_reader.emplace(*calib);
  }
  const std::string eval_path = a.eval.empty() ? a.calib : a.eval;
  EvalData eval = open_eval_data(eval_path, sample_inputs(graph), a.preprocess, a.limit, a.labels);
  DatasetReader eval_reader(*eval.source);
  const TaskMetric metric = a.metric.empty() ? (eval.labels.empty() ? TaskMetric::kAgreement : TaskMetric::kTop1)
                                             : parse_task_metric(a.metric);
  if (needs_labels(metric) && eval.labels.empty()) {
    fail(std::string("--metric ") + task_metric_name(metric) + " needs labels: --labels FILE");
  }
  SensitivityAnalysisOptions so;
  so.metric = public_metric(metric);
  so.labels = eval.labels;
  if (!a.metric_cmd.empty()) {
    if (a.metric_better != "higher" && a.metric_better != "lower") {
      fail("--metric-better must be higher or lower, got \"" + a.metric_better + "\"");
    }
    so.custom_metric = public_metric_callback(metric_command(a.metric_cmd));
    so.higher_is_better = a.metric_better == "higher";
  }
  so.output = a.output;
  so.leave_one_out = a.leave_one_out;
  so.reference = a.reference;
  so.threads = a.threads;
  so.max_samples = a.limit;
  so.bits = a.bits;
  so.exclude = a.exclude;
  so.calibration_samples = a.samples;
  so.calibrator = public_calibrator(a.calibrator);
  so.group_size = a.group_size;
  so.progress = api_progress_printer();

  const auto start = std::chrono::steady_clock::now();
  Result<SensitivityReport> result = sensitivity(*model, calib_reader ? &*calib_reader : nullptr, eval_reader, so);
  if (!result.ok()) throw Error(result.status().code(), result.status().message());
  const SensitivityReport& r = *result;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  const TaskMetric m = metric;
  std::cout << "sensitivity " << r.layers.size() << " layers of " << a.model << " ("
            << (a.bits == 8 ? "static INT8" : "weight-only INT4") << "), " << r.samples << " samples of " << eval_path
            << ", metric " << task_metric_name(m) << " on output \"" << r.output << "\"\n";
  const bool custom = !a.metric_cmd.empty();
  if (custom) {
    std::cout << "metric-cmd  FP32 " << r.custom_fp32 << ", quantized " << r.custom_quantized << " (" << a.metric_better
              << " is better; ranked by it)\n";
  }
  std::cout << "FP32        " << format_metric(m, r.fp32) << "\n";
  std::cout << "quantized   " << format_metric(m, r.quantized) << " (every layer; output SQNR "
            << format_metric(TaskMetric::kSqnr, r.quantized_sqnr_db) << ")\n";
  std::cout << "time        " << fixed(seconds, 1) << " s (" << r.chunks << " chunk" << (r.chunks == 1 ? "" : "s")
            << " of kept values)\n\n";
  std::vector<std::vector<std::string>> rows = {
      {"rank", "layer", "op", std::string("only this layer"), "vs FP32", "output SQNR"}};
  if (a.leave_one_out) rows[0].push_back("all but this layer");
  if (custom) rows[0].push_back("metric-cmd");
  int rank = 0;
  for (const LayerScore& ls : r.layers) {
    std::vector<std::string> row = {ls.measured ? std::to_string(++rank) : "-", ls.node, ls.op_type};
    if (!ls.measured) {
      row.push_back("not measured: " + ls.note);
      rows.push_back(row);
      continue;
    }
    row.push_back(format_metric(m, ls.value));
    row.push_back(format_delta(m, ls.value, r.fp32));
    row.push_back(format_metric(TaskMetric::kSqnr, ls.output_sqnr_db));
    if (a.leave_one_out) row.push_back(format_metric(m, ls.all_but));
    if (custom) {
      std::ostringstream v;
      v << ls.custom;
      row.push_back(v.str());
    }
    rows.push_back(row);
  }
  print_table(std::cout, rows);
  if (!a.json.empty() || !a.report.empty()) {
    Json j = sensitivity_json(r);
    j.set("report", "sensitivity");
    j.set("model", a.model);
    j.set("bits", static_cast<int64_t>(a.bits));
    j.set("data", eval_path);
    j.set("seconds", seconds);
    if (custom) {
      Json c = Json::object();
      c.set("command", a.metric_cmd);
      c.set("higher_is_better", a.metric_better == "higher");
      c.set("fp32", r.custom_fp32);
      c.set("quantized", r.custom_quantized);
      Json per = Json::object();
      for (const LayerScore& ls : r.layers) {
        if (ls.measured) per.set(ls.node, ls.custom);
      }
      c.set("only", per);
      j.set("metric_cmd", c);
    }
    if (!a.json.empty()) write_json_file(a.json, j);
    if (!a.report.empty()) write_report_file(a.report, j);
  }
  return 0;
}

}  // namespace

CommandFn add_sensitivity_command(CLI::App& app) {
  auto a = std::make_shared<SensitivityArgs>();
  CLI::App* cmd = app.add_subcommand("sensitivity", "Rank the layers by how much quantizing each one costs");
  cmd->footer(
      "For every Conv/Gemm/MatMul the quantizer rewrites, the metric on --eval with only that layer quantized\n"
      "(the scales of the fully quantized model), ranked most sensitive first. The FP32 values of each sample\n"
      "are computed once; each layer then runs only what lies downstream of it. --leave-one-out also measures\n"
      "every layer but that one quantized.\n"
      "Metrics: top1, top5 (need labels), agreement (top-1 equal to FP32's), sqnr (output SQNR in dB\n"
      "against FP32), mse (output mean squared error against FP32). Default: top1 with labels, else agreement.\n"
      "Keep the first layers of the ranking in FP32 with 'kvant quantize --exclude NAME', or let\n"
      "'kvant quantize --accuracy-target DROP' do it (docs/accuracy.md).\n\n"
      "example: kvant sensitivity resnet50.onnx --calib calib/ --eval val/ --limit 100 --metric agreement --json "
      "s.json");
  cmd->add_option("model", a->model, "The FP32 ONNX model")->required();
  cmd->add_option("--calib", a->calib, "Calibration data (as for 'kvant quantize'); --bits 8 needs it");
  cmd->add_option("--eval", a->eval, "Evaluation data (default: the calibration data)");
  cmd->add_option("--labels", a->labels, "Class labels of the evaluation data (as for 'kvant eval')");
  cmd->add_option("--preprocess", a->preprocess, "Image/IDX preprocessing (see 'kvant help quantize')");
  cmd->add_option(
      "--metric", a->metric,
      "top1, top5, agreement, sqnr, mse, miou (segmentation: mean IoU of the class map vs FP32) or perplexity "
      "(language models: of the next tokens in the int64 input_ids)");
  cmd->add_option("--metric-cmd", a->metric_cmd,
                  "Your own metric: a shell command with {outputs}, the .npy [samples, values] of one variant's "
                  "outputs; the number on its last line ranks the layers");
  cmd->add_option("--metric-better", a->metric_better, "--metric-cmd: higher or lower")->capture_default_str();
  cmd->add_option("--bits", a->bits, "8: static INT8 (weights and activations); 4: weight-only INT4")
      ->capture_default_str();
  cmd->add_option("--calibrator", a->calibrator, "minmax, moving-average, percentile, entropy or mse")
      ->capture_default_str();
  cmd->add_option("--samples", a->samples, "Calibration samples used at most")->capture_default_str();
  cmd->add_option("--limit", a->limit, "Evaluation samples used at most");
  cmd->add_option("--group-size", a->group_size, "--bits 4: values per scale along K")->capture_default_str();
  cmd->add_option("--exclude", a->exclude, "Keep in FP32 (not measured): a node name, an operator type, first/last");
  cmd->add_option("--output", a->output, "The model output to score (default: the first)");
  cmd->add_flag("--leave-one-out", a->leave_one_out, "Also measure every layer but that one quantized");
  cmd->add_option("--json", a->json, "Also write the ranking as JSON to this file");
  cmd->add_option("--report", a->report,
                  "Also write the ranking to this file: HTML (plots, self-contained) when it ends in .html, else JSON");
  cmd->add_flag("-f,--force", a->force, "Overwrite the --json/--report file if it exists");
  cmd->add_flag("--reference", a->reference,
                "Run on the reference executor (Q/DQ simulated in float) instead of the compiled kernels");
  cmd->add_option("--threads", a->threads, "Threads for the compiled kernels")->capture_default_str();
  return [a]() { return sensitivity_command(*a); };
}

}  // namespace kvant::cli
