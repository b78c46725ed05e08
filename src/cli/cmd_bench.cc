// kvant bench: latency of a model on random inputs.
//
// Inputs get the model's declared dtype and shape (--shape fixes symbolic
// dims; a symbolic leading dim is --batch, default 1, as in inspect; any
// other symbolic dim without --shape is an error naming it). Float inputs are
// uniform in [-1, 1) from a fixed seed; integer and bool inputs are zero, a
// valid index and mask for any Gather or embedding. W warm-up runs are
// followed by R timed runs; the report gives the median, p90 (nearest rank)
// and minimum latency in ms, throughput as R / total timed seconds, and the
// process CPU time per timed run (all threads; on a shared machine the wall
// clock also measures the wait for a core, the CPU time does not).
//
// The model is loaded, compiled, run and profiled through the public API
// (include/kvant/kvant.h: OnnxModel, Session::plan, Session::set_profiling);
// the inputs, the timing and the printing are the command's own.

#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>

#include "cli/cli_common.h"
#include "kvant/kvant.h"

namespace kvant::cli {

namespace {

using Clock = std::chrono::steady_clock;

// CPU time of the process (all its threads) in ms.
double process_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

struct BenchOptions {
  std::string model;
  std::vector<std::string> shapes;
  int threads = 1;
  bool reference = false;
  bool profile = false;
  int top = 15;
  int runs = 10;
  int warmup = 2;
  unsigned seed = 0;
  int64_t batch = 1;
};

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// A symbolic leading (batch) dim takes `batch`, as inspect does; any other
// unknown dim needs --shape. `batch_note` collects the dims so fixed.
Tensor random_input(const TensorInfo& in, std::mt19937& rng, int64_t batch, std::string& batch_note) {
  if (!in.has_shape) fail("input \"" + in.name + "\" has no declared shape; give --shape " + in.name + "=DIMS");
  Shape shape;
  bool rest_known = true;
  for (size_t j = 1; j < in.shape.size(); ++j) rest_known = rest_known && in.shape[j] >= 0;
  for (size_t i = 0; i < in.shape.size(); ++i) {
    const std::string& param = in.dim_names[i];
    if (in.shape[i] < 0 && i == 0 && rest_known) {
      batch_note += (batch_note.empty() ? "'" : ", '") + (param.empty() ? std::string("?") : param) + "'";
      shape.push_back(batch);
      continue;
    }
    if (in.shape[i] < 0) {
      fail("input \"" + in.name + "\" (" + type_to_string(in) + "): dimension " + std::to_string(i) +
           (param.empty() ? " is unknown" : " is the symbolic dim \"" + param + "\"") + "; give --shape " + in.name +
           "=DIMS, e.g. --shape " + in.name + "=1x...");
    }
    shape.push_back(in.shape[i]);
  }
  const auto dtype = static_cast<DType>(static_cast<int32_t>(in.dtype));
  if (dtype == DType::kUndefined || dtype == DType::kString) {
    fail("input \"" + in.name + "\" is of type " + dtype_name(dtype) + ", which kvant bench cannot generate");
  }
  Tensor t(dtype, shape);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  switch (dtype) {
    case DType::kFloat32:
      for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = uniform(rng);
      break;
    case DType::kFloat64:
      for (int64_t i = 0; i < t.numel(); ++i) t.data<double>()[i] = uniform(rng);
      break;
    case DType::kFloat16:
      for (int64_t i = 0; i < t.numel(); ++i) t.data<Float16>()[i] = to_float16(uniform(rng));
      break;
    case DType::kBFloat16:
      for (int64_t i = 0; i < t.numel(); ++i) t.data<BFloat16>()[i] = to_bfloat16(uniform(rng));
      break;
    default: break;  // integers and bools stay zero
  }
  return t;
}

double percentile(const std::vector<double>& sorted, double p) {
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

double median(const std::vector<double>& sorted) {
  const size_t n = sorted.size();
  return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

// A '\r'-updated progress line on stderr, shown only on a terminal (a pipe
// or log gets none), once the whole benchmark is expected to take more than
// ~2 s, and at most 10 times a second.
class Progress {
 public:
  explicit Progress(int total) : total_(total), start_(Clock::now()), terminal_(isatty(STDERR_FILENO) != 0) {}
  void update(int done, const char* phase) {
    if (!terminal_) return;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const double expected = done > 0 ? elapsed / done * total_ : 0;
    if (!shown_ && expected < 2.0 && elapsed < 2.0) return;
    if (shown_ && elapsed - last_ < 0.1 && done < total_) return;
    last_ = elapsed;
    shown_ = true;
    std::fprintf(stderr, "\rkvant bench: %s, %d/%d runs done, %.1f s   ", phase, done, total_, elapsed);
    std::fflush(stderr);
  }
  ~Progress() {
    if (shown_) {
      std::fprintf(stderr, "\r%60s\r", "");
      std::fflush(stderr);
    }
  }

 private:
  int total_;
  Clock::time_point start_;
  double last_ = 0;
  bool shown_ = false;
  bool terminal_;
};

int bench_command(const BenchOptions& opt) {
  if (opt.runs < 1) fail("--runs must be at least 1");
  if (opt.batch < 1) fail("--batch must be at least 1, got " + std::to_string(opt.batch));
  if (opt.warmup < 0) fail("--warmup must not be negative");
  check_threads(opt.threads);
  if (opt.profile && opt.reference) fail("--profile needs the compiled model (drop --reference)");
  ModelLoadOptions load;  // inferred dtypes let compile fuse float ops (a failure is a warning)
  load.input_shapes = parse_shape_args(opt.shapes);
  OnnxModel model = load_api_model(opt.model, load);
  SessionOptions session_options;
  session_options.threads = opt.threads;
  session_options.reference = opt.reference;
  auto session = Session::create(model, session_options);
  throw_if_error(session.status());
  const std::vector<TensorInfo> inputs = model.inputs();
  model = OnnxModel();  // the session holds what it needs: the weights are freed with it

  std::mt19937 rng(opt.seed);
  std::map<std::string, Tensor> tensors;
  Feeds feeds;
  std::string inputs_text, batch_note;
  for (const auto& in : inputs) {
    const Tensor& t = tensors[in.name] = random_input(in, rng, opt.batch, batch_note);
    feeds[in.name] = TensorView{t.raw(), in.dtype, t.shape()};
    inputs_text += (inputs_text.empty() ? "" : ", ") + in.name + " " + t.describe();
  }
  auto run = [&]() { throw_if_error(session->run(feeds).status()); };

  std::vector<double> times_ms;
  double cpu_ms = 0;
  {
    Progress progress(opt.warmup + opt.runs);
    for (int i = 0; i < opt.warmup; ++i) {
      run();
      progress.update(i + 1, "warm-up");
    }
    const double cpu_start = process_cpu_ms();
    for (int i = 0; i < opt.runs; ++i) {
      const auto start = Clock::now();
      run();
      times_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
      progress.update(opt.warmup + i + 1, "timing");
    }
    cpu_ms = process_cpu_ms() - cpu_start;
  }
  std::vector<double> sorted = times_ms;
  std::sort(sorted.begin(), sorted.end());
  double total_ms = 0;
  for (double t : times_ms) total_ms += t;

  char line[256];
  std::cout << "model       " << opt.model << "\n";
  std::cout << "inputs      " << (inputs_text.empty() ? "none" : inputs_text) << "\n";
  if (!batch_note.empty()) {
    std::cout << "            (symbolic leading dim " << batch_note << " taken as " << opt.batch
              << "; --batch N or --shape to change)\n";
  }
  if (opt.reference) {
    std::cout << "executor    reference (plain kernels, 1 thread)\n";
  } else {
    auto plan = session->plan();
    throw_if_error(plan.status());
    std::cout << "executor    compiled (ISA " << plan->isa << ", " << plan->threads
              << (plan->threads == 1 ? " thread)" : " threads)") << "\n";
    std::cout << "plan        " << plan->kernel_steps << " kernels, " << plan->view_steps << " views, "
              << plan->fallback_steps << " reference fallbacks, " << plan->fixed_steps
              << " fixed by the input shapes; arena " << format_bytes(plan->arena_bytes) << " (tensors "
              << format_bytes(plan->tensor_bytes) << " without reuse)\n";
  }
  std::cout << "runs        " << opt.runs << " timed after " << opt.warmup << " warm-up\n";
  std::snprintf(line, sizeof(line), "latency     median %.3f ms, p90 %.3f ms, min %.3f ms\n", median(sorted),
                percentile(sorted, 0.9), sorted.front());
  std::cout << line;
  std::snprintf(line, sizeof(line), "throughput  %.2f runs/s\n", total_ms > 0 ? opt.runs * 1000.0 / total_ms : 0.0);
  std::cout << line;
  std::snprintf(line, sizeof(line), "cpu         %.3f ms per run (process CPU time over the timed runs)\n",
                opt.runs > 0 ? cpu_ms / opt.runs : 0.0);
  std::cout << line;
  if (opt.profile) {
    throw_if_error(session->set_profiling(true));
    for (int i = 0; i < opt.runs; ++i) run();
    std::cout << session->describe_profile(static_cast<size_t>(opt.top));
    throw_if_error(session->set_profiling(false));
  }
  return 0;
}

}  // namespace

CommandFn add_bench_command(CLI::App& app) {
  auto opt = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Measure a model's latency on random inputs");
  cmd->footer(
      "Float inputs are random in [-1, 1); integer and bool inputs are zeros. A symbolic leading (batch) dim is\n"
      "--batch (1); other symbolic dims need --shape.\n"
      "Reports median, p90 and min latency in ms and runs per second.\n\n"
      "example: kvant bench resnet50.onnx --shape input=1x3x224x224 --runs 20");
  cmd->add_option("model", opt->model, "The ONNX model file")->required();
  cmd->add_option("--shape", opt->shapes,
                  "Fix an input's shape, NAME=DIMS (e.g. input=1x3x224x224); needed for symbolic dims")
      ->allow_extra_args(false);
  cmd->add_option("--threads", opt->threads, "Threads for the compiled kernels (the reference executor uses 1)")
      ->capture_default_str();
  cmd->add_flag("--reference", opt->reference, "Time the reference executor instead of the compiled model");
  cmd->add_flag("--profile", opt->profile,
                "After timing, profile the compiled model's steps over the same number of runs and print where the "
                "time goes");
  cmd->add_option("--top", opt->top, "With --profile: how many of the slowest steps to list (default 15)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--runs", opt->runs, "Timed runs")->capture_default_str();
  cmd->add_option("--warmup", opt->warmup, "Untimed warm-up runs before timing")->capture_default_str();
  cmd->add_option("--seed", opt->seed, "Seed for the random inputs")->capture_default_str();
  cmd->add_option("--batch", opt->batch,
                  "Size given to an input's symbolic leading (batch) dim when --shape does not fix it")
      ->capture_default_str();
  return [opt]() { return bench_command(*opt); };
}

}  // namespace kvant::cli
