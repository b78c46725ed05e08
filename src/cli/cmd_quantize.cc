// kvant quantize: FP32 ONNX model -> QDQ ONNX model, and a measured report.
//
//   kvant quantize model.onnx -o model.int8.onnx --mode static --calib DATA
//   kvant quantize model.onnx -o model.int8.onnx --mode dynamic
//   kvant quantize model.onnx -o model.int4.onnx --mode weight-only --bits 4 --group-size 128
//
// Steps: load (with shape inference, so data can be shaped to the inputs) ->
// prepare_for_quantization (BN folding, constant folding, ...) -> the mode's
// algorithm (quant/quantize.h) -> save_onnx (atomic; never over the input)
// -> report: sizes on disk, quantized / FP32 node counts, per-layer SQNR and
// cosine against the prepared FP32 model on calibration samples.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "cli/accuracy_target.h"
#include "cli/cli_common.h"
#include "cli/eval_data.h"
#include "cli/html_report.h"
#include "cli/json.h"
#include "cli/metric_cmd.h"
#include "cli/quant_report.h"
#include "cli/sensitivity_cli.h"
#include "cli/speed_check.h"
#include "io/dataset.h"
#include "io/output_file.h"
#include "onnx/writer.h"
#include "ops/op_registry.h"
#include "quant/algorithms/awq.h"
#include "quant/algorithms/equalize.h"
#include "quant/algorithms/scaling_notes.h"
#include "quant/algorithms/smooth_quant.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant::cli {

namespace {

namespace fs = std::filesystem;

struct QuantizeArgs {
  std::string model;
  std::string output;
  std::string mode = "static";
  std::string calib;
  std::string preprocess;
  std::string calibrator = "minmax";
  double percentile = 99.99;
  int64_t samples = 500;
  int64_t report_samples = 32;
  std::string activation_type = "uint8";
  bool symmetric_activations = false;
  bool per_tensor = false;
  bool reduce_range = false;
  int weight_bits = 8;
  int bits = 4;
  int group_size = 128;
  bool affine_weights = false;
  std::string format = "qdq";
  std::vector<std::string> exclude;
  std::string report;
  bool force = false;
  bool allow_nonfinite = false;
  bool no_speed_check = false;
  // --accuracy-target (cli/accuracy_target.h)
  double accuracy_target = -1;
  std::string eval;
  std::string labels;
  std::string metric;
  std::string metric_cmd;
  std::string metric_better = "higher";
  std::string search = "linear";
  bool equalize = false;
  bool bias_correction = false;
  std::string rounding = "nearest";
  bool awq = false;
  std::string smooth_quant;     // --smooth-quant [ALPHA]: "" is the default 0.5
  std::set<std::string> given;  // the options given on the command line
};

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

QuantMode parse_mode(const std::string& mode) {
  if (mode == "static") return QuantMode::kStatic;
  if (mode == "dynamic") return QuantMode::kDynamic;
  if (mode == "weight-only") return QuantMode::kWeightOnly;
  fail("--mode must be static, dynamic or weight-only, got \"" + mode + "\"");
}

std::vector<ValueInfo> data_inputs(const Graph& g) {
  std::vector<ValueInfo> out;
  for (const auto& in : g.inputs) {
    if (!g.initializers.count(in.name)) out.push_back(in);
  }
  return out;
}

// "\rcalibrating 123/500" on a terminal; nothing in logs.
std::function<void(int64_t, int64_t)> progress_line(const std::string& what) {
  if (!isatty(STDERR_FILENO)) return nullptr;
  return [what](int64_t done, int64_t total) {
    std::cerr << "\r" << what << " " << done;
    if (total > 0) std::cerr << "/" << total;
    std::cerr << std::flush;
    if (done == total) std::cerr << "\n";
  };
}

void check_paths(const QuantizeArgs& a) {
  std::error_code ec;
  if (!fs::exists(a.model, ec)) fail(a.model + ": no such file");
  if (a.output.empty()) fail("-o/--output is required: the file to write the quantized model to");
  if (fs::exists(a.output, ec) && fs::equivalent(a.model, a.output, ec)) {
    fail("-o " + a.output + " is the input model itself; kvant never overwrites its input, choose another name");
  }
  // Refused before any work: a non-regular file (link, FIFO, device) always,
  // an existing regular file without --force (io/output_file.h).
  check_output_target(a.output, a.force, "-o");
  if (!a.report.empty()) {
    if (fs::absolute(a.report, ec) == fs::absolute(a.output, ec)) fail("--report and -o name the same file");
    check_output_target(a.report, a.force, "--report");
  }
}

// An option that does nothing in the chosen mode is an error, not silence
// (--bits 4 with --mode static used to be ignored).
void check_mode_options(const QuantizeArgs& a, QuantMode mode) {
  struct Rule {
    const char* option;
    std::set<QuantMode> modes;
    const char* modes_text;
  };
  using M = QuantMode;
  const Rule rules[] = {
      {"--calibrator", {M::kStatic}, "static"},
      {"--samples", {M::kStatic, M::kWeightOnly}, "static and weight-only"},
      {"--activation-type", {M::kStatic}, "static"},
      {"--symmetric-activations", {M::kStatic}, "static"},
      {"--per-tensor", {M::kStatic, M::kDynamic}, "static and dynamic"},
      {"--reduce-range", {M::kStatic, M::kDynamic}, "static and dynamic"},
      {"--affine-weights", {M::kStatic, M::kWeightOnly}, "static and weight-only"},
      {"--bits", {M::kWeightOnly}, "weight-only"},
      {"--weight-bits", {M::kStatic}, "static"},
      {"--group-size", {M::kWeightOnly}, "weight-only"},
      {"--format", {M::kWeightOnly}, "weight-only"},
      {"--equalize", {M::kStatic, M::kDynamic}, "static and dynamic"},
      {"--bias-correction", {M::kStatic}, "static"},
      {"--rounding", {M::kStatic, M::kWeightOnly}, "static and weight-only"},
      {"--awq", {M::kWeightOnly}, "weight-only"},
      {"--smooth-quant", {M::kStatic, M::kDynamic}, "static and dynamic"},
  };
  for (const Rule& r : rules) {
    if (a.given.count(r.option) && !r.modes.count(mode)) {
      fail(std::string(r.option) + " applies to --mode " + r.modes_text + " only, not --mode " + a.mode);
    }
  }
  if (a.given.count("--percentile") && a.calibrator != "percentile") {
    fail("--percentile applies to --calibrator percentile only");
  }
  for (const char* option : {"--eval", "--labels", "--metric", "--metric-cmd", "--metric-better", "--search"}) {
    if (a.given.count(option) && !a.given.count("--accuracy-target")) {
      fail(std::string(option) + " applies only with --accuracy-target DROP");
    }
  }
  if (a.given.count("--accuracy-target")) {
    if (a.eval.empty()) fail("--accuracy-target needs evaluation data: --eval DATA");
    if (mode == M::kDynamic || a.format == "ort") {
      fail("--accuracy-target applies to --mode static and weight-only (--format qdq)");
    }
  }
  for (const char* option : {"--preprocess", "--report-samples", "--samples"}) {
    const bool eval_uses = std::string(option) == "--preprocess" && !a.eval.empty();  // --accuracy-target's data
    if (a.given.count(option) && a.calib.empty() && !eval_uses) {
      fail(std::string(option) + " applies only with --calib DATA");
    }
  }
}

QuantizeOptions make_options(const QuantizeArgs& a) {
  QuantizeOptions o;
  o.mode = parse_mode(a.mode);
  check_mode_options(a, o.mode);
  o.calibration.method = parse_calibration_method(a.calibrator);
  o.calibration.percentile = a.percentile;
  if (a.samples < 1) fail("--samples must be at least 1, got " + std::to_string(a.samples));
  o.max_samples = a.samples;
  if (a.activation_type == "uint8") {
    o.activation_type = DType::kUInt8;
  } else if (a.activation_type == "int8") {
    o.activation_type = DType::kInt8;
  } else {
    fail("--activation-type must be uint8 or int8, got \"" + a.activation_type + "\"");
  }
  o.activation_symmetry = a.symmetric_activations ? Symmetry::kSymmetric : Symmetry::kAffine;
  o.weight_symmetry = a.affine_weights ? Symmetry::kAffine : Symmetry::kSymmetric;
  o.per_channel = !a.per_tensor;
  o.reduce_range = a.reduce_range;
  if (a.weight_bits != 8 && a.weight_bits != 4)
    fail("--weight-bits must be 8 or 4, got " + std::to_string(a.weight_bits));
  if (a.weight_bits == 4) {  // W4A8: 4-bit per-channel weights, 8-bit activations (opset 21)
    if (a.reduce_range) fail("--reduce-range applies to 8-bit weights, not --weight-bits 4");
    o.weight_type = DType::kInt4;  // with --affine-weights, int4 with a zero point (as int8 is at 8 bits)
  }
  o.group_size = a.group_size;
  o.exclude = a.exclude;
  o.allow_nonfinite = a.allow_nonfinite;
  o.bias_correction = a.bias_correction;
  if (a.rounding == "nearest") {
    o.rounding = WeightRounding::kNearest;
  } else if (a.rounding == "adaround") {
    if (o.mode != QuantMode::kStatic) fail("--rounding adaround applies to --mode static only (gptq: weight-only)");
    o.rounding = WeightRounding::kAdaRound;
  } else if (a.rounding == "gptq") {
    if (o.mode != QuantMode::kWeightOnly) fail("--rounding gptq applies to --mode weight-only only (adaround: static)");
    if (a.calib.empty()) fail("--rounding gptq needs calibration data: --calib DATA (inputs the model sees)");
    if (a.format == "ort") fail("--rounding gptq writes --format qdq only (--format ort is round to nearest)");
    o.rounding = WeightRounding::kGptq;
  } else {
    fail("--rounding must be nearest, adaround or gptq, got \"" + a.rounding + "\"");
  }
  if (a.awq && a.calib.empty()) fail("--awq needs calibration data: --calib DATA (inputs the model sees)");
  if (a.given.count("--smooth-quant") && a.calib.empty()) {
    fail("--smooth-quant needs calibration data: --calib DATA (inputs the model sees)");
  }
  if (a.format != "qdq" && a.format != "ort") fail("--format must be qdq or ort, got \"" + a.format + "\"");
  if (a.format == "ort" && o.mode != QuantMode::kWeightOnly) {
    fail("--format ort (com.microsoft.MatMulNBits) applies to --mode weight-only only");
  }
  if (o.mode == QuantMode::kStatic && a.calib.empty()) {
    fail(
        "--mode static needs calibration data: --calib DATA (a .npy/.npz file, a folder of .npy, .pb or images, "
        "or an IDX file)");
  }
  return o;
}

// --smooth-quant [ALPHA|search]: the migration strength, 0.5 when not
// given, none (searched per layer input) for "search".
std::optional<double> smooth_quant_alpha(const std::string& text) {
  if (text.empty()) return 0.5;
  if (text == "search") return std::nullopt;
  char* end = nullptr;
  const double alpha = std::strtod(text.c_str(), &end);
  if (end == text.c_str() || *end != '\0' || !(alpha >= 0 && alpha <= 1)) {
    fail("--smooth-quant ALPHA must be a number in [0, 1] (default 0.5) or search, got \"" + text + "\"");
  }
  return alpha;
}

int quantize_command(const QuantizeArgs& a) {
  const auto start = std::chrono::steady_clock::now();
  check_paths(a);
  QuantizeOptions options = make_options(a);
  const Model original = load_model(a.model, LoadOptions{});
  if (is_quantized_model(original)) {
    fail(a.model +
         " is already quantized (it has QuantizeLinear/DequantizeLinear or integer operators); "
         "quantize its FP32 original instead");
  }
  Model fp32 = prepare_for_quantization(original);
  // Cross-layer equalization changes the FP32 weights, not the function: the
  // per-layer report then compares against the equalized model.
  std::vector<std::string> equalize_lines;
  if (a.equalize) equalize_lines = equalize_notes(equalize_cross_layer(fp32.graph));

  std::unique_ptr<SampleSource> data;
  if (!a.calib.empty()) {
    DatasetOptions dopt;
    if (!a.preprocess.empty()) dopt.preprocess = parse_preprocess(a.preprocess);
    data = open_dataset(a.calib, data_inputs(fp32.graph), dopt);
  }

  // AWQ and SmoothQuant rescale the FP32 weights and fold the inverse into
  // the ops before them (quant/algorithms/channel_scaling.h): like
  // equalization, the per-layer report then compares against the rescaled
  // model, which computes the same function.
  std::vector<std::string> scaling_notes;
  if (a.awq) {
    options.progress = progress_line("AWQ statistics");
    scaling_notes = awq_notes(apply_awq(fp32, *data, a.bits, options));
  }
  if (a.given.count("--smooth-quant")) {
    const std::optional<double> alpha = smooth_quant_alpha(a.smooth_quant);
    options.progress = progress_line("SmoothQuant statistics");
    const std::set<std::string> compute_ops =
        options.mode == QuantMode::kStatic ? std::set<std::string>{"Conv", "Gemm", "MatMul"}
                                           : std::set<std::string>{"MatMul", "Gemm", "Conv", "LSTM", "GRU", "RNN"};
    scaling_notes = smooth_quant_notes(apply_smooth_quant(fp32, *data, alpha, options, compute_ops), alpha);
  }
  options.progress = nullptr;

  std::optional<EvalData> eval;
  TargetOptions target;
  if (a.given.count("--accuracy-target")) {  // opened now: bad data is an error before calibration
    eval = open_eval_data(a.eval, data_inputs(fp32.graph), a.preprocess, -1, a.labels);
    target.metric = a.metric.empty() ? (eval->labels.empty() ? TaskMetric::kAgreement : TaskMetric::kTop1)
                                     : parse_task_metric(a.metric);
    if (needs_labels(target.metric) && eval->labels.empty()) {
      fail(std::string("--metric ") + task_metric_name(target.metric) + " needs labels: --labels FILE");
    }
    if (!a.metric_cmd.empty()) {
      if (a.metric_better != "higher" && a.metric_better != "lower") {
        fail("--metric-better must be higher or lower, got \"" + a.metric_better + "\"");
      }
      target.custom = metric_command(a.metric_cmd);
      target.custom_higher_is_better = a.metric_better == "higher";
    }
    target.drop = a.accuracy_target;
    if (!(target.drop >= 0)) fail("--accuracy-target must be >= 0");
    if (a.search != "linear" && a.search != "bisect") {
      fail("--search must be linear or bisect, got \"" + a.search + "\"");
    }
    target.bisect = a.search == "bisect";
  }

  QuantizeSummary summary;
  Model quantized;
  switch (options.mode) {
    case QuantMode::kStatic:
      options.progress = progress_line("calibrating");
      quantized = quantize_static(fp32, *data, options, &summary);
      break;
    case QuantMode::kDynamic: quantized = quantize_dynamic(fp32, options, &summary); break;
    case QuantMode::kWeightOnly:
      if (options.rounding == WeightRounding::kGptq) options.progress = progress_line("GPTQ statistics");
      quantized = a.format == "ort" ? quantize_matmul_nbits(fp32, a.bits, options, &summary)
                                    : quantize_weight_only(fp32, a.bits, options, &summary, data.get());
      break;
  }
  std::optional<TargetSearch> search;
  if (eval) {
    const QuantizeWith quantize_with = [&](const std::vector<std::string>& keep, const std::vector<std::string>& int8,
                                           QuantizeSummary* sum) {
      return quantize_mix(fp32, data.get(), options, a.bits, keep, int8, sum);
    };
    // INT4 -> INT8 -> FP32: weight-only INT4, and static W4A8 (--weight-bits 4).
    target.int8_ladder = (options.mode == QuantMode::kWeightOnly && a.bits == 4) ||
                         (options.mode == QuantMode::kStatic && a.weight_bits == 4);
    target.progress = progress_printer("sensitivity");
    search = search_accuracy_target(fp32, std::move(quantized), summary, quantize_with, *eval->source, eval->labels,
                                    target, &std::cout);
    // Step 0 met the target: no frontier walked.
    if (!(search->met && search->steps.size() == 1)) print_frontier(std::cout, *search, target);
    quantized = search->model;
    summary = search->summary;
  }
  summary.notes.insert(summary.notes.begin(), scaling_notes.begin(), scaling_notes.end());
  summary.notes.insert(summary.notes.begin(), equalize_lines.begin(), equalize_lines.end());
  // Operators kvant has no kernel for stay as they are (design decision 24):
  // static calibration lists them itself; the other modes never run the model.
  const std::vector<std::string> unknown_ops = unsupported_operators(fp32);
  if (options.mode != QuantMode::kStatic) {
    for (const Node& n : fp32.graph.nodes) {
      if (find_op(n.domain, n.op_type) != nullptr) continue;
      const std::string op = n.domain.empty() ? n.op_type : n.domain + "." + n.op_type;
      summary.fp32_reasons.emplace_back(
          n.name.empty() ? op : n.name,
          (n.domain.empty() ? "operator " : "custom-domain operator ") + op + " has no kvant kernel: left as it is");
    }
  }
  // Shapes inferred from the FP32 model describe tensors the rewrite renamed
  // or retyped; readers infer them again, so they are not written.
  quantized.graph.value_info.clear();
  Model written = quantized;
  // Against the user's file, not the prepared model: names that preparation
  // made up (BatchNorm-folded biases) are short ids too.
  compact_new_names(original, written);
  // Checked (onnx/export_check.h) and written to a temporary file now, put in
  // place only once everything below succeeded: a failure leaves nothing.
  auto pending = prepare_save(written, a.output);
  if (!pending.ok()) throw Error(pending.status().code(), pending.status().message());
  for (const std::string& w : summary.warnings) std::cerr << "kvant: warning: " << printable(w) << "\n";

  QuantReport report;
  report.mode = a.mode + (options.mode == QuantMode::kWeightOnly ? " int" + std::to_string(a.bits) : "");
  report.input = a.model;
  report.output = a.output;
  report.fp32_bytes = model_bytes_on_disk(a.model);
  report.quantized_bytes = (*pending)->bytes();
  report.summary = summary;
  if (!unknown_ops.empty()) {
    report.notes.push_back("per-layer error and speed not measured: kvant cannot run " + unknown_ops[0] +
                           (unknown_ops.size() > 1 ? " and " + std::to_string(unknown_ops.size() - 1) + " more" : ""));
  } else if (data && a.report_samples > 0 && !summary.layer_outputs.empty()) {
    report.layer_samples = std::min<int64_t>(a.report_samples, std::max<int64_t>(data->size(), 0));
    if (data->size() < 0) {  // a source that does not know its length: count what the comparison can read
      data->reset();
      report.layer_samples = 0;
      while (report.layer_samples < a.report_samples && data->next()) ++report.layer_samples;
    }
    report.layers = compare_layers(fp32, quantized, summary.layer_outputs, *data, a.report_samples);
  } else if (!data) {
    report.notes.push_back("per-layer error not measured: pass --calib DATA to compare each layer with FP32");
  }
  if (!a.no_speed_check && unknown_ops.empty()) {
    std::string why;
    std::optional<std::map<std::string, Tensor>> sample;
    if (data) {
      data->reset();
      sample = data->next();
      if (!sample) why = "no sample";
    } else {
      sample = synthetic_sample(fp32.graph, why);
    }
    if (sample) report.speed = check_speed(fp32, quantized, *sample, why);
    if (!report.speed) report.notes.push_back("speed not compared with FP32: " + why);
  }
  if (!a.report.empty() && unknown_ops.empty()) {
    // Activations need samples (static mode's calibration data); weights never do.
    report.histograms =
        range_histograms(fp32, quantized, options.mode == QuantMode::kStatic ? data.get() : nullptr, a.report_samples);
  }
  add_findings(report, fp32);
  for (const std::string& w : report.warnings) std::cerr << "kvant: warning: " << printable(w) << "\n";
  (*pending)->commit();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  print_quant_report(std::cout, report);
  if (!a.report.empty()) {
    Json j = quant_report_json(report);
    if (search) j.set("accuracy_target", target_json(*search, target));
    write_report_file(a.report, j);
  }
  if (search && !search->met) {  // the closest model is written; the exit status says it missed
    std::cerr << "kvant: error: --accuracy-target " << a.accuracy_target << " not met: no mix of FP32 and "
              << "quantized layers reached " << (target.custom ? "--metric-cmd" : task_metric_name(target.metric))
              << " " << format_target_value(target, search->threshold) << "; wrote the closest (step " << search->chosen
              << ": " << format_target_value(target, search->steps[search->chosen].value) << ") to " << a.output
              << "\n";
    return 2;
  }
  return 0;
}

}  // namespace

CommandFn add_quantize_command(CLI::App& app) {
  auto a = std::make_shared<QuantizeArgs>();
  CLI::App* cmd = app.add_subcommand("quantize", "Quantize an FP32 ONNX model to a QDQ ONNX model");
  cmd->footer(
      "Modes:\n"
      "  static       INT8 weights (per channel) and activations; needs --calib DATA\n"
      "  dynamic      INT8 weights of MatMul/Gemm/Conv/LSTM/GRU, activations quantized at run time\n"
      "  weight-only  INT4/INT8 MatMul/Gemm weights with a scale per --group-size values, rounded to\n"
      "               nearest or by GPTQ on --calib DATA (--rounding gptq); --awq rescales them first\n"
      "DATA: a .npy or .npz file, a folder of .npy files (or one subfolder per input), a folder of ONNX\n"
      "test-data .pb tensors, a folder of PNG/JPEG images (with --preprocess), or an IDX image file.\n\n"
      "examples:\n"
      "  kvant quantize cnn.onnx -o cnn.int8.onnx --mode static --calib calib/ --calibrator entropy\n"
      "  kvant quantize bert.onnx -o bert.int8.onnx --mode dynamic\n"
      "  kvant quantize llm.onnx -o llm.int4.onnx --mode weight-only --bits 4 --group-size 128\n"
      "  kvant quantize llm.onnx -o llm.gptq.onnx --mode weight-only --rounding gptq --calib tokens.npz --samples 128\n"
      "  kvant quantize llm.onnx -o llm.awq.onnx --mode weight-only --awq --calib tokens.npz\n"
      "  kvant quantize bert.onnx -o bert.sq.onnx --mode static --smooth-quant 0.5 --calib tokens.npz");
  cmd->add_option("model", a->model, "The FP32 ONNX model")->required();
  cmd->add_option("-o,--output", a->output, "Where to write the quantized model")->required();
  cmd->add_option("--mode", a->mode, "static, dynamic or weight-only")->capture_default_str();
  cmd->add_option("--calib", a->calib, "Calibration data (see below); static mode needs it");
  cmd->add_option("--preprocess", a->preprocess,
                  "Image/IDX preprocessing: resize=256,crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,"
                  "layout=nchw");
  cmd->add_option("--calibrator", a->calibrator, "minmax, moving-average, percentile, entropy or mse")
      ->capture_default_str();
  cmd->add_option("--percentile", a->percentile, "Percentile of |x| kept by --calibrator percentile")
      ->capture_default_str();
  cmd->add_option("--samples", a->samples, "Calibration samples used at most")->capture_default_str();
  cmd->add_option("--report-samples", a->report_samples,
                  "Samples used to measure each layer's error against FP32 (0: skip)")
      ->capture_default_str();
  cmd->add_option("--activation-type", a->activation_type, "uint8 or int8")->capture_default_str();
  cmd->add_flag("--symmetric-activations", a->symmetric_activations, "Zero point 0 (int8) / 128 (uint8)");
  cmd->add_flag("--per-tensor", a->per_tensor, "One weight scale per tensor instead of per output channel");
  cmd->add_flag("--reduce-range", a->reduce_range,
                "7-bit weights, for CPUs without VNNI: exact and faster vpmaddubsw kernels in kvant and ONNX Runtime");
  cmd->add_flag("--affine-weights", a->affine_weights, "Weights with a zero point (uint) instead of symmetric");
  cmd->add_option("--bits", a->bits, "Weight-only: 4 or 8")->capture_default_str();
  cmd->add_option("--weight-bits", a->weight_bits,
                  "Static: 8, or 4 for W4A8 (4-bit per-channel weights with MSE-optimal clipping, 8-bit "
                  "activations; the file is upgraded to opset 21)")
      ->capture_default_str();
  cmd->add_option("--group-size", a->group_size,
                  "Weight-only: values per scale along K, a power of two >= 16 (e.g. 32, 64, 128)")
      ->capture_default_str();
  cmd->add_option("--format", a->format,
                  "Weight-only export: qdq (opset-21 blocked DequantizeLinear) or ort (com.microsoft.MatMulNBits)")
      ->capture_default_str();
  cmd->add_option("--exclude", a->exclude,
                  "Keep in FP32: a node name or an operator type (inside If/Loop bodies too), or first/last "
                  "(repeatable)");
  cmd->add_option("--report", a->report,
                  "Also write the report to this file: HTML (plots, self-contained) when it ends in .html, else JSON");
  cmd->add_flag("-f,--force", a->force, "Overwrite the output file (and --report file) if it exists");
  cmd->add_flag("--allow-nonfinite", a->allow_nonfinite,
                "Quantize weights that hold NaN or Inf (NaN becomes the zero point) instead of refusing them");
  cmd->add_option("--accuracy-target", a->accuracy_target,
                  "Keep the most sensitive layers in FP32 until the metric on --eval is within DROP of FP32 "
                  "(points for top1/top5/agreement; minimum dB for sqnr; maximum for mse); exit status 2 if no mix "
                  "meets it");
  cmd->add_option("--eval", a->eval, "--accuracy-target: evaluation data");
  cmd->add_option("--labels", a->labels, "--accuracy-target: class labels of the evaluation data");
  cmd->add_option(
      "--metric", a->metric,
      "--accuracy-target: top1, top5, agreement, sqnr, mse, miou or perplexity (DROP in percent of FP32's)");
  cmd->add_option("--metric-cmd", a->metric_cmd,
                  "--accuracy-target: your own metric (see 'kvant help sensitivity'); DROP is then in its units");
  cmd->add_option("--metric-better", a->metric_better, "--metric-cmd: higher or lower")->capture_default_str();
  cmd->add_option("--search", a->search,
                  "--accuracy-target: linear (k = 1, 2, ... layers kept high: the whole frontier) or bisect (about "
                  "log2(layers) steps; assumes keeping more layers high never lowers the metric)")
      ->capture_default_str();
  cmd->add_flag("--equalize", a->equalize,
                "Cross-layer equalization first: rescale Conv/Gemm pairs through Relu so per-channel weight ranges "
                "match (same FP32 function; helps --per-tensor, e.g. depthwise networks)");
  cmd->add_flag("--bias-correction", a->bias_correction,
                "Static: subtract each Conv/Gemm's mean output shift from weight rounding (from --calib) from its "
                "bias");
  cmd->add_option("--rounding", a->rounding,
                  "Weight rounding: nearest; adaround (static: learned up/down per weight against each layer's "
                  "output on calibration data; slower); gptq (weight-only MatMul/Gemm: GPTQ on --calib data)")
      ->capture_default_str();
  cmd->add_flag("--awq", a->awq,
                "Weight-only: AWQ first: scale each layer input's weight rows by mean|x|^alpha, alpha searched per "
                "input to minimise its layers' output error on --calib data, the inverse folded into the op before "
                "(combines with --rounding nearest|gptq)");
  cmd->add_option(
         "--smooth-quant,--smoothquant", a->smooth_quant,
         "Static/dynamic: SmoothQuant first: move activation outliers into the weights with "
         "s = max|x|^ALPHA / max|w|^(1-ALPHA) per input channel (ALPHA in [0, 1], default 0.5, or search), folded into "
         "the op before; ALPHA search: chosen per layer input from 0, 0.1, ..., 1 by the simulated W8A8 "
         "error of its layers; needs --calib")
      ->expected(0, 1);
  cmd->add_flag("--no-speed-check", a->no_speed_check,
                "Do not time the result against FP32 on one sample (the report warns when it is slower)");
  return [a, cmd]() {
    for (const CLI::Option* o : cmd->get_options()) {
      if (o->count() == 0) continue;
      for (const std::string& name : o->get_lnames()) a->given.insert("--" + name);
    }
    return quantize_command(*a);
  };
}

}  // namespace kvant::cli
