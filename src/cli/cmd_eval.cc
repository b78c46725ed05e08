// kvant eval: the task metric of a model, and of its quantized version next to
// it, on real data.
//
//   kvant eval model.onnx [model.int8.onnx ...] --data DATA [--labels LABELS]
//
// Every sample of DATA (io/dataset.h) runs through each model. For a
// classifier output (one row of scores per sample) the metric is top-1
// accuracy against the labels (an IDX image file finds its label file
// beside it); every further model (quantized versions of the first) is also
// compared with the first: the share of samples whose top-1 agrees and, for
// any output, the SQNR of its outputs against the first's. NaN or Inf in the data is an error naming the sample.
//
// The models are loaded, compiled and run through the public API
// (include/kvant/kvant.h: OnnxModel, Session); the data readers
// (io/dataset.h), the scores and the printing are the command's own.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "api/api_internal.h"
#include "cli/cli_common.h"
#include "cli/eval_data.h"
#include "cli/html_report.h"
#include "cli/json.h"
#include "cli/quant_report.h"
#include "io/dataset.h"
#include "kvant/kvant.h"
#include "quant/task_metric.h"

namespace kvant::cli {

namespace {

struct EvalArgs {
  std::vector<std::string> models;
  std::string data;
  std::string labels;
  std::string preprocess;
  std::string output;
  int64_t limit = -1;
  std::string report;
  bool reference = false;
  int threads = 1;
};

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// Against the first model's outputs (quant/task_metric.h).
struct Scores {
  OutputScores sums;
  std::vector<float> last;  // this sample's output, as float
};

std::string fixed(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

void check_finite(const std::map<std::string, Tensor>& feed, int64_t sample) {
  for (const auto& [name, t] : feed) {
    if (!is_float(t.dtype())) continue;
    for (int64_t i = 0; i < t.numel(); ++i) {
      if (!std::isfinite(t.get_as_double(i))) {
        fail("sample " + std::to_string(sample) + ", input \"" + name + "\": element " + std::to_string(i) + " is " +
             (std::isnan(t.get_as_double(i)) ? "NaN" : "Inf"));
      }
    }
  }
}

int eval_command(const EvalArgs& a) {
  check_threads(a.threads);
  if (a.models.empty()) fail("give the model to evaluate, and optionally its quantized versions");
  const auto start = std::chrono::steady_clock::now();
  // The data fixes every shape; inferred dtypes (shape inference, on by
  // default) let compile fuse float ops (an inference failure is only a
  // warning).
  std::vector<Session> sessions;
  std::vector<std::vector<TensorInfo>> outputs;
  std::vector<ValueInfo> data_inputs;  // what the data reader fills: the first model's inputs
  SessionOptions session_options;
  session_options.threads = a.threads;
  session_options.reference = a.reference;
  for (const auto& path : a.models) {
    const OnnxModel model = load_api_model(path, ModelLoadOptions{});
    if (sessions.empty()) data_inputs = sample_inputs(ApiAccess::impl(model, "eval").model.graph);
    auto session = Session::create(model, session_options);
    throw_if_error(session.status());
    outputs.push_back(model.outputs());
    sessions.push_back(
        std::move(session).value());  // the model (its weights) is freed here; the session holds what it needs
  }
  std::string output = a.output.empty() ? outputs[0].at(0).name : a.output;
  for (size_t i = 0; i < sessions.size(); ++i) {
    bool found = false;
    for (const auto& o : outputs[i]) found = found || o.name == output;
    if (!found) fail(a.models[i] + " has no output named \"" + output + "\"");
  }
  EvalData eval_data = open_eval_data(a.data, data_inputs, a.preprocess, a.limit, a.labels);
  std::unique_ptr<SampleSource>& data = eval_data.source;
  const std::string& labels_path = eval_data.labels_path;
  const std::vector<int64_t>& labels = eval_data.labels;

  const bool tty = isatty(STDERR_FILENO);
  std::vector<Scores> scores(sessions.size());
  int64_t n = 0, classifier_rows = 0;
  bool classifier = true;
  ClassMap map;  // the output's class map layout, when every sample's is one
  bool is_map = true;
  const int64_t total = data->size() >= 0 && a.limit >= 0 ? std::min(data->size(), a.limit) : data->size();
  auto last_progress = std::chrono::steady_clock::now();
  while (auto feed = data->next()) {
    if (a.limit >= 0 && n >= a.limit) break;
    check_finite(*feed, n);
    const TokenIds tokens = token_ids_of(*feed);  // a language model's ids: its perplexity
    Feeds feeds;
    for (const auto& [name, t] : *feed) {
      feeds[name] = TensorView{t.raw(), static_cast<DataType>(static_cast<int32_t>(t.dtype())), t.shape()};
    }
    for (size_t m = 0; m < sessions.size(); ++m) {
      auto out = sessions[m].run(feeds);
      if (!out.ok()) {
        throw Error(out.status().code(), a.models[m] + ", sample " + std::to_string(n) + ": " + out.status().message());
      }
      const Tensor y = ApiAccess::share(out->at(output));
      if (!is_float(y.dtype())) fail("output \"" + output + "\" is " + y.describe() + ", not float scores");
      scores[m].last = y.to_float_vector();
      // One row of scores per sample: a classifier.
      classifier = classifier && y.rank() >= 1 && y.numel() == y.shape().back() && y.numel() > 1;
      if (m == 0) {
        map = class_map_of(y);
        is_map = is_map && map.classes > 0;
      }
    }
    int64_t label = -1;
    if (classifier) {
      ++classifier_rows;
      if (!labels.empty()) {
        if (n >= static_cast<int64_t>(labels.size())) {
          fail("the labels (" + labels_path + ") hold " + std::to_string(labels.size()) +
               " entries, but the data has more samples");
        }
        label = labels[static_cast<size_t>(n)];
        const auto classes = static_cast<int64_t>(scores[0].last.size());
        if (label < 0 || label >= classes) {
          fail("the labels (" + labels_path + "): entry " + std::to_string(n) + " is class " + std::to_string(label) +
               ", but the model scores " + std::to_string(classes) + " classes (0 to " + std::to_string(classes - 1) +
               ")");
        }
      }
    }
    const auto& x = scores[0].last;
    for (size_t m = 0; m < sessions.size(); ++m) {
      const auto& y = scores[m].last;
      if (x.size() != y.size()) {
        fail(a.models[m] + "'s output differs in size from " + a.models[0] + "'s on sample " + std::to_string(n));
      }
      scores[m].sums.add(x.data(), y.data(), static_cast<int64_t>(x.size()), classifier, label, map, &tokens);
    }
    ++n;
    // On a terminal only, at most 5 times a second (a slow model took minutes
    // to reach the next hundred samples).
    const auto now = std::chrono::steady_clock::now();
    if (tty && (now - last_progress > std::chrono::milliseconds(200) || n == total)) {
      last_progress = now;
      std::cerr << "\revaluating " << n;
      if (total > 0) std::cerr << "/" << total;
      std::cerr << std::flush;
    }
  }
  if (tty && n > 0) std::cerr << "\n";
  if (n == 0) fail("the data (" + a.data + ") holds no samples");
  if (!labels.empty() && classifier && static_cast<int64_t>(labels.size()) != n && a.limit < 0) {
    fail("the labels (" + labels_path + ") hold " + std::to_string(labels.size()) + " entries for " +
         std::to_string(n) + " samples");
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  Json j = Json::object();
  j.set("report", "eval");
  j.set("data", a.data);
  j.set("samples", n);
  j.set("output", output);
  std::cout << "evaluated   " << n << " samples of " << a.data << " (" << fixed(seconds, 1) << " s)\n";
  const bool top1 = classifier && !labels.empty();
  if (classifier && labels.empty()) {
    std::cout << "note        no labels (--labels FILE): top-1 accuracy not measured\n";
  }
  // One table row per model; columns that do not apply stay empty.
  std::vector<std::vector<std::string>> rows = {
      {"model", "size", "vs FP32", "top-1", "vs first", "top-1 agreement", "output SQNR", "mean IoU", "perplexity"}};
  bool perplexity = true;
  for (const Scores& sc : scores) perplexity = perplexity && sc.sums.scored_tokens > 0;
  Json jm = Json::array();
  const int64_t first_bytes = model_bytes_on_disk(a.models[0]);
  double acc0 = 0;
  for (size_t m = 0; m < sessions.size(); ++m) {
    Json o = Json::object();
    std::vector<std::string> row(9);
    row[0] = a.models[m];
    o.set("model", a.models[m]);
    const int64_t bytes = model_bytes_on_disk(a.models[m]);
    o.set("bytes", bytes);
    row[1] = format_bytes(bytes);
    if (first_bytes > 0) row[2] = fixed(100.0 * static_cast<double>(bytes) / first_bytes, 1) + "%";
    if (top1) {
      const double acc = static_cast<double>(scores[m].sums.correct1) / static_cast<double>(n);
      if (m == 0) acc0 = acc;
      o.set("top1", acc);
      row[3] = fixed(acc, 4);
      if (m > 0) row[4] = (acc >= acc0 ? "+" : "") + fixed(100 * (acc - acc0), 2) + " points";
    }
    if (perplexity) {
      o.set("perplexity", scores[m].sums.perplexity());
      row[8] = fixed(scores[m].sums.perplexity(), 4);
    }
    if (m > 0) {
      const OutputScores& sc = scores[m].sums;
      const double sqnr = sc.sqnr_db();
      o.set("output_sqnr_db", sqnr);
      if (classifier) {
        const double share = static_cast<double>(sc.agree) / static_cast<double>(classifier_rows);
        o.set("top1_agreement", share);
        row[5] = fixed(100 * share, 2) + "%";
      }
      row[6] = std::isfinite(sqnr) ? fixed(sqnr, 1) + " dB" : std::string("exact");
      if (is_map) {
        o.set("miou", sc.miou());
        row[7] = fixed(100 * sc.miou(), 2) + "%";
      }
    }
    rows.push_back(row);
    jm.push(o);
  }
  std::vector<size_t> width(9, 0);
  for (const auto& r : rows) {
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c) {
      if (width[c] == 0 || (c >= 3 && c <= 4 && !top1) || (c >= 5 && c <= 7 && sessions.size() < 2) ||
          (c == 5 && !classifier) || (c == 7 && !is_map) || (c == 8 && !perplexity)) {
        continue;
      }
      std::string cell = r[c];
      cell.resize(width[c], ' ');
      line += cell + "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::cout << line << "\n";
  }
  j.set("models", jm);
  if (!a.report.empty()) write_report_file(a.report, j);
  return 0;
}

}  // namespace

CommandFn add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Measure a model's accuracy, and its quantized version's, on real data");
  cmd->footer(
      "With labels, prints top-1 accuracy of each model; every model after the first is compared with it: how\n"
      "often their top-1 agrees and the SQNR of its outputs against the first's; for a segmentation output (class\n"
      "scores [N, C, H, W]) the mean IoU of its per-pixel class map against the first's. An IDX image file finds its "
      "label file beside it.\n\n"
      "example: kvant eval cnn.onnx cnn.int8.onnx --data t10k-images-idx3-ubyte.gz --preprocess mean=0.286,std=0.353");
  cmd->add_option("models", a->models, "The model, then optionally its quantized versions (compared with the first)")
      ->required()
      ->expected(1, 16);
  cmd->add_option("--data", a->data, "Samples: .npy/.npz, a folder of .npy/.pb/images, or an IDX file")->required();
  cmd->add_option("--labels", a->labels, "Class labels: IDX label file, .npy of integers, or text (one per line)");
  cmd->add_option("--preprocess", a->preprocess, "Image/IDX preprocessing (see 'kvant help quantize')");
  cmd->add_option("--output", a->output, "The model output to score (default: the first)");
  cmd->add_option("--limit", a->limit, "Evaluate at most this many samples");
  cmd->add_option("--report", a->report, "Also write the results to this file: HTML when it ends in .html, else JSON");
  cmd->add_flag("--reference", a->reference,
                "Run on the reference executor (Q/DQ simulated in float) instead of the compiled kernels");
  cmd->add_option("--threads", a->threads, "Threads for the compiled kernels")->capture_default_str();
  return [a]() { return eval_command(*a); };
}

}  // namespace kvant::cli
