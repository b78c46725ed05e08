// kvant generate: text from a decoder-only ONNX model with a key/value cache.
//
// The prompt runs in one pass (prefill); then one token per pass, the
// model's present key/values fed back as past (kvant::Decoder holds the cache,
// allocated once for prompt + --max-new-tokens positions). Greedy at
// --temperature 0 (the default), else top-k / top-p sampling from --seed
// (kvant.h: Decoder and Sampler, the public API). The text goes to stdout; timings to stderr:
//   prefill: N tokens, X tok/s; decode: M tokens, Y tok/s
//   cpu time: prefill X ms; decode Y ms per pass
// where decode counts the passes after the prefill (the last new token needs
// no pass of its own); CPU time is the process's (all threads). --eos-id N
// stops after the first N generated.

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>

#include "cli/cli_common.h"
#include "cli/llm_common.h"

namespace kvant::cli {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

// More new tokens than this is a mistake, whatever the model allows.
constexpr int64_t kMaxNewTokens = int64_t{1} << 20;

struct GenerateOptions {
  std::string model;
  std::string prompt;
  bool has_prompt = false;
  std::string prompt_ids;
  std::string tokenizer;
  int64_t max_new_tokens = -1;
  SamplingOptions sampling;
  int threads = 1;
  bool print_ids = false;
  int64_t eos_id = -1;  // -1: never stop early
};

bool tokenizer_has_all(const llm::Tokenizer& tokenizer, const std::vector<int64_t>& ids) {
  for (int64_t id : ids) {
    if (id < 0 || id >= tokenizer.vocab_size()) return false;
  }
  return true;
}

double rate(int64_t tokens, double seconds) { return seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0; }

// CPU seconds of the process (all threads): on a shared machine wall time
// counts the time others ran, CPU time far less.
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

int generate_command(const GenerateOptions& opt) {
  if (opt.has_prompt == !opt.prompt_ids.empty()) fail("give the prompt as --prompt TEXT or as --prompt-ids FILE.npy");
  if (opt.max_new_tokens < 1 || opt.max_new_tokens > kMaxNewTokens) {
    fail("--max-new-tokens must lie in [1, " + std::to_string(kMaxNewTokens) + "], got " +
         std::to_string(opt.max_new_tokens));
  }
  Sampler sampler = value_or_throw(Sampler::create(opt.sampling));
  if (opt.eos_id < -1) fail("--eos-id must be a token id (0 or more), got " + std::to_string(opt.eos_id));
  check_threads(opt.threads);
  std::unique_ptr<llm::Tokenizer> tokenizer = make_tokenizer(opt.tokenizer);
  LoadedDecoder loaded = load_decoder(opt.model);
  const DecoderInfo& sig = loaded.info;

  std::vector<int64_t> prompt;  // [batch, prompt_len] row-major
  int64_t batch = 1;
  if (opt.has_prompt) {
    if (opt.prompt.empty()) fail("--prompt is empty; give at least one character");
    if (sig.vocab > 0) {
      llm::check_vocab_fits(*tokenizer, sig.vocab,
                            opt.tokenizer.empty() ? "pass its --tokenizer MODEL.model, or token ids with --prompt-ids"
                                                  : "is this the model's tokenizer?");
    }
    prompt = tokenizer->encode(opt.prompt);
    if (prompt.empty()) fail("--prompt encodes to no tokens");
  } else {
    prompt = read_token_ids(opt.prompt_ids, "--prompt-ids", sig.vocab, &batch);
  }
  const int64_t prompt_len = static_cast<int64_t>(prompt.size()) / batch;
  const int64_t total = prompt_len + opt.max_new_tokens;
  if (sig.max_positions > 0 && total > sig.max_positions) {
    fail("the prompt (" + std::to_string(prompt_len) + " tokens) + --max-new-tokens " +
         std::to_string(opt.max_new_tokens) + " = " + std::to_string(total) +
         " positions, more than the model takes: " + sig.max_positions_source + " (at most " +
         std::to_string(std::max<int64_t>(sig.max_positions - prompt_len, 0)) + " new tokens)");
  }
  DecoderOptions decoder_options;
  decoder_options.max_total = total;
  decoder_options.batch = batch;
  decoder_options.threads = opt.threads;
  Decoder decoder = value_or_throw(Decoder::create(loaded.model, decoder_options));
  loaded.model = OnnxModel();  // the compiled model holds what it needs
  if (decoder.recomputes()) {
    std::cerr << "kvant: warning: " << opt.model
              << " has no past key/value inputs: every new token reruns the whole sequence (slow)\n";
  }
  // Text when the tokenizer can spell the ids: the byte tokenizer on a model
  // with at least 256 ids, or SentencePiece; else the ids.
  const bool as_text = !opt.print_ids && (sig.vocab < 0 || sig.vocab >= tokenizer->vocab_size());

  // One sampler draws for the rows in order (batch 1: the same draws as
  // before batches). A row that produced --eos-id is finished: it is fed
  // the id again, its output no longer grows; the loop ends when all are.
  const auto rows = static_cast<size_t>(batch);
  std::vector<std::vector<int64_t>> generated(rows);
  std::vector<int64_t> next(rows);
  std::vector<bool> finished(rows, false);
  size_t unfinished = rows;
  auto take = [&](size_t r, int64_t id) {
    next[r] = id;
    if (finished[r]) return;
    generated[r].push_back(id);
    if (opt.eos_id >= 0 && id == opt.eos_id) {
      finished[r] = true;
      --unfinished;
    }
  };
  using Clock = std::chrono::steady_clock;
  auto start = Clock::now();
  double cpu_start = cpu_seconds();
  value_or_throw(decoder.forward(prompt.data(), prompt_len));
  auto sample = [&](size_t r, int64_t position) {
    const float* logits = value_or_throw(decoder.logits(static_cast<int64_t>(r)));
    return value_or_throw(sampler.sample(logits + position * decoder.vocab(), decoder.vocab()));
  };
  for (size_t r = 0; r < rows; ++r) take(r, sample(r, prompt_len - 1));
  const double prefill_s = std::chrono::duration<double>(Clock::now() - start).count();
  const double prefill_cpu_s = cpu_seconds() - cpu_start;
  start = Clock::now();
  cpu_start = cpu_seconds();
  int64_t decode_passes = 0;
  for (int64_t i = 1; i < opt.max_new_tokens && unfinished > 0; ++i) {
    value_or_throw(decoder.forward(next.data(), 1));
    ++decode_passes;
    for (size_t r = 0; r < rows; ++r) take(r, sample(r, 0));
  }
  const double decode_s = std::chrono::duration<double>(Clock::now() - start).count();
  const double decode_cpu_s = cpu_seconds() - cpu_start;

  bool spellable = as_text && decoder.vocab() >= tokenizer->vocab_size();
  for (const auto& row : generated) {
    if (!tokenizer_has_all(*tokenizer, row) && spellable) {
      std::cerr << "kvant: warning: the model produced ids the " << tokenizer->name()
                << " tokenizer has no text for; printing ids\n";
      spellable = false;
    }
  }
  for (const auto& row : generated) {  // a line per sequence
    if (spellable) {
      std::cout << tokenizer->decode(row) << std::endl;
    } else {
      for (size_t i = 0; i < row.size(); ++i) std::cout << (i ? " " : "") << row[i];
      std::cout << std::endl;
    }
  }
  char line[200];
  // Tokens of all sequences together.
  const int64_t prefill_tokens = prompt_len * batch, decode_tokens = decode_passes * batch;
  std::snprintf(line, sizeof line, "prefill: %lld tokens, %.1f tok/s; decode: %lld tokens, %.1f tok/s",
                static_cast<long long>(prefill_tokens), rate(prefill_tokens, prefill_s),
                static_cast<long long>(decode_tokens), rate(decode_tokens, decode_s));
  std::cerr << line << (batch > 1 ? " (batch " + std::to_string(batch) + ")" : std::string()) << "\n";
  std::snprintf(line, sizeof line, "cpu time: prefill %.1f ms; decode %.2f ms per pass", 1e3 * prefill_cpu_s,
                decode_passes > 0 ? 1e3 * decode_cpu_s / static_cast<double>(decode_passes) : 0.0);
  std::cerr << line << "\n";
  return 0;
}

}  // namespace

CommandFn add_generate_command(CLI::App& app) {
  auto opt = std::make_shared<GenerateOptions>();
  CLI::App* cmd = app.add_subcommand("generate", "Generate tokens from a decoder-only language model");
  cmd->footer(
      "The model follows the common export convention: input_ids [1, seq] (int64), optional attention_mask and\n"
      "position_ids, past_key_values.N.key/value -> logits [1, seq, vocab], present.N.key/value. A model without\n"
      "past inputs still works, rerunning the whole sequence per token. Text is UTF-8 bytes as token ids unless\n"
      "--tokenizer names a SentencePiece model. Prints the new text (or ids) to stdout and the prefill and decode\n"
      "speeds to stderr.\n\n"
      "example: kvant generate decoder.onnx --prompt 'Once upon a time' --max-new-tokens 64");
  cmd->add_option("model", opt->model, "The ONNX decoder")->required();
  cmd->add_option("--prompt", opt->prompt, "The prompt text")->each([opt](const std::string&) {
    opt->has_prompt = true;
  });
  cmd->add_option("--prompt-ids", opt->prompt_ids,
                  "The prompt as token ids (.npy, int64 or int32, [n], or [batch, n]: one sequence per row)");
  cmd->add_option("--max-new-tokens", opt->max_new_tokens, "How many tokens to generate")->required();
  cmd->add_option("--tokenizer", opt->tokenizer, "A SentencePiece .model file (default: UTF-8 bytes as ids)");
  cmd->add_option("--temperature", opt->sampling.temperature, "Sampling temperature; 0 is greedy")
      ->capture_default_str();
  cmd->add_option("--top-k", opt->sampling.top_k, "Sample among the K most likely tokens (0: all)")
      ->capture_default_str();
  cmd->add_option("--top-p", opt->sampling.top_p, "Sample among the most likely tokens whose mass reaches P")
      ->capture_default_str();
  cmd->add_option("--seed", opt->sampling.seed, "Seed for sampling")->capture_default_str();
  cmd->add_option("--threads", opt->threads, "Threads for the compiled kernels")->capture_default_str();
  cmd->add_flag("--print-ids", opt->print_ids, "Print the new token ids instead of text");
  cmd->add_option("--eos-id", opt->eos_id, "Stop after generating this token id (printed; default: never stop early)");
  return [opt]() { return generate_command(*opt); };
}

}  // namespace kvant::cli
