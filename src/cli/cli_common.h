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
#include "onnx/reader.h"
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

// A ReferenceExecutor for `model`; an unsupported operator is an error
// naming the model file.
using ReferenceExecutorPtr = std::unique_ptr<ReferenceExecutor>;
ReferenceExecutorPtr make_executor(const Model& model, const std::string& path);

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

}  // namespace kvant::cli
