// kvant: the command-line tool.
//
//   kvant inspect model.onnx [--shape name=1x3x224x224] [--json] [--layers]
//   kvant run model.onnx --input name=x.npy --output-dir out/
//   kvant bench model.onnx [--shape ...] [--runs R] [--warmup W] [--threads N]
//   kvant quantize model.onnx -o out.onnx --mode static|dynamic|weight-only [--calib DATA] ...
//   kvant eval model.onnx [quantized.onnx] --data DATA [--labels LABELS]
//   kvant sensitivity model.onnx --calib DATA [--eval DATA] [--metric M] [--bits 8|4]
//   kvant generate decoder.onnx --prompt TEXT --max-new-tokens N [--temperature T ...]
//   kvant perplexity decoder.onnx --text FILE [--context 512 --stride 256]
//   kvant help [COMMAND] | kvant --version
//
// Exit status 0 on success. Any error, from the command line or from the
// library, ends as one line "kvant: error: <message>" on stderr and exit
// status 1 (DESIGN.md §7): subcommands throw, this file catches.

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>

#include "cli/cli_common.h"
#include "ir/limits.h"

#ifndef KVANT_VERSION
#define KVANT_VERSION "unknown"
#endif

namespace {

// One line, whatever the message holds: names from a model may contain
// newlines, ESC or NUL (ir/graph.h: printable).
int report_error(const std::string& message) {
  std::cerr << "kvant: error: " << kvant::printable(message) << std::endl;
  return 1;
}

int run_main(int argc, char** argv) {
  CLI::App app{
      "kvant: quantize ONNX models to INT8/INT4, and inspect, run, evaluate and benchmark them.\n"
      "Run 'kvant help COMMAND' for the options of one command.",
      "kvant"};
  app.set_version_flag("--version", std::string("kvant ") + KVANT_VERSION, "Print the version and exit");
  app.require_subcommand(0, 1);
  // Limits on what a model or data file may make kvant do (ir/limits.h,
  // docs/security.md); given before or after the command.
  app.fallthrough();
  std::string max_memory;
  int64_t max_loop_iterations = kvant::kDefaultMaxLoopIterations;
  app.add_option("--max-memory", max_memory,
                 "Memory budget for tensors and data, e.g. 2G, 512M (default: 3/4 of RAM, 1/2 of ulimit -v)");
  app.add_option("--max-loop-iterations", max_loop_iterations, "Iterations a Loop node may run at most")
      ->capture_default_str();

  const kvant::cli::CommandFn inspect = kvant::cli::add_inspect_command(app);
  const kvant::cli::CommandFn run = kvant::cli::add_run_command(app);
  const kvant::cli::CommandFn bench = kvant::cli::add_bench_command(app);
  const kvant::cli::CommandFn quantize = kvant::cli::add_quantize_command(app);
  const kvant::cli::CommandFn eval = kvant::cli::add_eval_command(app);
  const kvant::cli::CommandFn sensitivity = kvant::cli::add_sensitivity_command(app);
  const kvant::cli::CommandFn generate = kvant::cli::add_generate_command(app);
  const kvant::cli::CommandFn perplexity = kvant::cli::add_perplexity_command(app);
  CLI::App* help = app.add_subcommand("help", "Show help for kvant or one of its commands");
  std::string topic;
  help->add_option("command", topic,
                   "The command to explain (inspect, run, bench, quantize, eval, sensitivity, generate, perplexity)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string message = e.what();
    if (const auto subs = app.get_subcommands(); !subs.empty()) {
      message += " (see 'kvant help " + subs.front()->get_name() + "')";
    } else {
      message += " (see 'kvant help')";
    }
    return report_error(message);
  }

  if (!max_memory.empty()) kvant::set_memory_budget_bytes(kvant::cli::parse_bytes(max_memory, "--max-memory"));
  if (max_loop_iterations < 1) {
    return report_error("--max-loop-iterations must be at least 1, got " + std::to_string(max_loop_iterations));
  }
  kvant::set_max_loop_iterations(max_loop_iterations);

  if (app.got_subcommand("inspect")) return inspect();
  if (app.got_subcommand("run")) return run();
  if (app.got_subcommand("bench")) return bench();
  if (app.got_subcommand("quantize")) return quantize();
  if (app.got_subcommand("eval")) return eval();
  if (app.got_subcommand("sensitivity")) return sensitivity();
  if (app.got_subcommand("generate")) return generate();
  if (app.got_subcommand("perplexity")) return perplexity();
  if (app.got_subcommand("help") && !topic.empty()) {
    // Usage lines read "kvant COMMAND ...", as typed.
    if (topic == "help") {
      std::cout << help->help("kvant");
      return 0;
    }
    for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
      if (sub->get_name() == topic) {
        std::cout << sub->help("kvant");
        return 0;
      }
    }
    return report_error("no command named \"" + topic +
                        "\" (commands: inspect, run, bench, quantize, eval, sensitivity, generate, perplexity, help)");
  }
  // The whole tool's help, also for a bare 'kvant help' (app.help() would
  // show the selected subcommand's).
  std::cout << app.get_formatter()->make_help(&app, "kvant", CLI::AppFormatMode::Normal);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const kvant::Error& e) {
    return report_error(e.what());
  } catch (const std::bad_alloc&) {
    return report_error("out of memory");
  } catch (const std::exception& e) {
    return report_error(e.what());
  } catch (...) {
    return report_error("unexpected internal error");
  }
}
