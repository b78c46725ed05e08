// Helpers shared by the `kvant` subcommands: loading a model with a CLI-style
// error, --shape parsing, number formatting.
//
// Subcommands report failures by throwing kvant::Error (or any
// std::exception); main.cc turns it into one line
// "kvant: error: <message>" on stderr and exit status 1.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kvant/kvant.h"
#include "onnx/reader.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"

namespace CLI {
class App;
}

namespace kvant::cli {

using ShapeOverrides = std::map<std::string, std::vector<int64_t>>;

// Parses "--shape name=1x3x224x224" values (dims separated by 'x' or ',').
// Throws Error naming the bad argument.
ShapeOverrides parse_shape_args(const std::vector<std::string>& args);

// Checks each override against the graph's inputs (name exists, rank and
// fixed dims agree) and writes the dims into graph.inputs, so that symbolic
// dims become known. Throws Error naming the input. (load_onnx applies
// LoadOptions::input_shapes itself, replacing declared dims; this is the
// check for graphs loaded without them.)
void apply_shape_overrides(Graph& graph, const ShapeOverrides& overrides);

// load_onnx, throwing Error with the loader's message on failure; the
// loader's warnings (e.g. shape inference skipped) go to stderr.
Model load_model(const std::string& path, const LoadOptions& options);

// OnnxModel::load (the public API), throwing Error with the loader's
// message (ModelLoadOptions::input_shapes named --shape) on failure; the
// loader's warnings go to stderr.
OnnxModel load_api_model(const std::string& path, const ModelLoadOptions& options);
// The Status as the Error that main.cc prints; nothing for an ok one.
void throw_if_error(const Status& status);

// Runs a model for run/bench/eval: compiled (fused kernels, arena; the
// default) or on the reference executor (--reference). An unsupported
// operator is an error naming the model file.
class ModelRunner {
 public:
  ModelRunner(const Model& model, const std::string& path, bool reference, int threads);
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& feeds);
  // "compiled (ISA avx2, 2 threads)" or "reference (plain kernels, 1 thread)".
  std::string describe() const;
  CompiledModel* compiled() { return compiled_.get(); }

 private:
  std::string path_;
  Model model_;  // the reference executor's (it refers to its model); tensors are shared, not copied
  std::unique_ptr<ReferenceExecutor> reference_;
  std::unique_ptr<CompiledModel> compiled_;
  int threads_ = 1;
};
using ModelRunnerPtr = std::unique_ptr<ModelRunner>;
ModelRunnerPtr make_runner(const Model& model, const std::string& path, bool reference, int threads = 1);

// "2G", "512M", "1.5GB", "64K", "1000" -> bytes (K/M/G/T are powers of
// 1024). Throws Error naming `option`.
int64_t parse_bytes(const std::string& text, const std::string& option);

// --threads must lie in [1, max_pool_threads()] (runtime/thread_pool.h);
// throws Error saying so.
void check_threads(int threads);

// "1.23 G", "25.6 M", "7.1 K", "512".
std::string format_count(int64_t value);
// "97.8 MB", "12.0 KB", "100 B" (decimal units, as file managers show).
std::string format_bytes(int64_t bytes);
// 25557032 -> "25,557,032".
std::string with_commas(int64_t value);
// Comma-separated graph input names, for error messages.
std::string input_names(const Graph& graph);

// A subcommand: its registration adds the options to `app` and returns the
// function that runs it once the command line is parsed (exit status).
using CommandFn = std::function<int()>;
CommandFn add_inspect_command(CLI::App& app);
CommandFn add_run_command(CLI::App& app);
CommandFn add_bench_command(CLI::App& app);
CommandFn add_quantize_command(CLI::App& app);
CommandFn add_eval_command(CLI::App& app);
CommandFn add_sensitivity_command(CLI::App& app);
CommandFn add_generate_command(CLI::App& app);
CommandFn add_perplexity_command(CLI::App& app);

}  // namespace kvant::cli
