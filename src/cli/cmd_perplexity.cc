// kvant perplexity: how well a decoder-only model predicts a text, by
// Hugging Face's strided sliding window (kvant.h: perplexity_windows): windows of
// --context tokens every --stride tokens, each scoring only the tokens no
// earlier window scored. Each window is one pass from an empty cache.
//
// Prints perplexity, mean NLL (nats per token), the tokens scored and, for
// --text, bits per byte: the mean NLL in bits times the text's tokens per
// byte (exactly the mean NLL in bits for the byte-level tokenizer).

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <memory>

#include "cli/cli_common.h"
#include "cli/json.h"
#include "cli/llm_common.h"

namespace kvant::cli {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

struct PerplexityOptions {
  std::string model;
  std::string text;
  std::string tokens;
  std::string tokenizer;
  int64_t context = 512;
  int64_t stride = 256;
  int threads = 1;
  bool json = false;
};

int perplexity_command(const PerplexityOptions& opt) {
  if (opt.text.empty() == opt.tokens.empty()) fail("give the data as --text FILE or as --tokens FILE.npy");
  if (!opt.tokens.empty() && !opt.tokenizer.empty()) fail("--tokenizer goes with --text; --tokens are ids already");
  check_threads(opt.threads);
  std::unique_ptr<llm::Tokenizer> tokenizer = opt.text.empty() ? nullptr : make_tokenizer(opt.tokenizer);
  LoadedDecoder loaded = load_decoder(opt.model);
  const DecoderInfo& sig = loaded.info;

  std::vector<int64_t> ids;
  size_t text_bytes = 0;
  if (tokenizer) {
    const std::string text = read_text_file(opt.text, "--text");
    if (text.empty()) fail("--text " + opt.text + " is empty");
    text_bytes = text.size();
    if (sig.vocab > 0) {
      llm::check_vocab_fits(*tokenizer, sig.vocab,
                            opt.tokenizer.empty() ? "pass its --tokenizer MODEL.model, or token ids with --tokens"
                                                  : "is this the model's tokenizer?");
    }
    ids = tokenizer->encode(text);
  } else {
    ids = read_token_ids(opt.tokens, "--tokens", sig.vocab);
  }
  const int64_t n = static_cast<int64_t>(ids.size());
  const std::vector<PerplexityWindow> windows = value_or_throw(perplexity_windows(n, opt.context, opt.stride));
  const int64_t longest = std::min(opt.context, n);
  if (sig.max_positions > 0 && longest > sig.max_positions) {
    fail("--context " + std::to_string(opt.context) + " is longer than the model takes: " + sig.max_positions_source +
         "; pass --context " + std::to_string(sig.max_positions) + " or less");
  }
  DecoderOptions decoder_options;
  decoder_options.max_total = longest;
  decoder_options.threads = opt.threads;
  Decoder decoder = value_or_throw(Decoder::create(loaded.model, decoder_options));
  loaded.model = OnnxModel();

  double nll = 0.0;
  int64_t scored = 0;
  // On a terminal only, at most 5 times a second: a long text on a large
  // model takes minutes.
  const bool tty = isatty(STDERR_FILENO);
  auto last_progress = std::chrono::steady_clock::now();
  size_t done = 0;
  for (const PerplexityWindow& w : windows) {
    decoder.reset();
    const float* logits = value_or_throw(decoder.forward(ids.data() + w.begin, w.end - w.begin));
    const int64_t vocab = decoder.vocab();
    if (w.begin == 0) check_ids_in_vocab(ids, vocab, opt.tokens.empty() ? "the text" : "--tokens " + opt.tokens);
    for (int64_t t = w.first_target; t < w.end; ++t) {
      nll += next_token_nll(logits + (t - 1 - w.begin) * vocab, vocab, ids[static_cast<size_t>(t)]);
      ++scored;
    }
    ++done;
    const auto now = std::chrono::steady_clock::now();
    if (tty && (now - last_progress > std::chrono::milliseconds(200) || done == windows.size())) {
      last_progress = now;
      std::cerr << "\rscoring window " << done << "/" << windows.size() << std::flush;
    }
  }
  if (tty) std::cerr << "\n";
  const double mean = nll / static_cast<double>(scored);
  const double ppl = std::exp(mean);
  const double bits_per_byte =
      text_bytes ? mean / std::log(2.0) * static_cast<double>(n) / static_cast<double>(text_bytes) : 0.0;
  if (!std::isfinite(mean)) fail("the model's logits gave a non-finite NLL (" + std::to_string(mean) + ")");
  if (opt.json) {
    Json out = Json::object();
    out.set("model", opt.model);
    out.set("perplexity", ppl);
    out.set("mean_nll", mean);
    out.set("tokens", n);
    out.set("tokens_scored", scored);
    out.set("windows", static_cast<int64_t>(windows.size()));
    out.set("context", opt.context);
    out.set("stride", opt.stride);
    if (text_bytes) {
      out.set("bytes", static_cast<int64_t>(text_bytes));
      out.set("bits_per_byte", bits_per_byte);
    }
    std::cout << out.dump() << std::endl;
    return 0;
  }
  char line[300];
  std::snprintf(line, sizeof line,
                "perplexity: %.6g\nmean NLL: %.6g nats/token\ntokens scored: %lld of %lld (%zu "
                "windows, context %lld, stride %lld)\n",
                ppl, mean, static_cast<long long>(scored), static_cast<long long>(n), windows.size(),
                static_cast<long long>(opt.context), static_cast<long long>(opt.stride));
  std::cout << line;
  if (text_bytes) {
    std::snprintf(line, sizeof line, "bits per byte: %.6g (%zu bytes)\n", bits_per_byte, text_bytes);
    std::cout << line;
  }
  return 0;
}

}  // namespace

CommandFn add_perplexity_command(CLI::App& app) {
  auto opt = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "Score a text with a decoder-only language model");
  cmd->footer(
      "Sliding windows of --context tokens every --stride tokens (Hugging Face's strided perplexity): each window\n"
      "scores only the tokens no earlier window scored. Text is UTF-8 bytes as token ids unless --tokenizer names a\n"
      "SentencePiece model.\n\n"
      "example: kvant perplexity decoder.onnx --text wiki.txt --context 512 --stride 256");
  cmd->add_option("model", opt->model, "The ONNX decoder")->required();
  cmd->add_option("--text", opt->text, "A UTF-8 text file to score");
  cmd->add_option("--tokens", opt->tokens, "Token ids to score (.npy, int64 or int32, [n] or [1, n])");
  cmd->add_option("--tokenizer", opt->tokenizer, "A SentencePiece .model file (default: UTF-8 bytes as ids)");
  cmd->add_option("--context", opt->context, "Tokens per window")->capture_default_str();
  cmd->add_option("--stride", opt->stride, "Tokens between window starts")->capture_default_str();
  cmd->add_option("--threads", opt->threads, "Threads for the compiled kernels")->capture_default_str();
  cmd->add_flag("--json", opt->json, "Print the results as JSON");
  return [opt]() { return perplexity_command(*opt); };
}

}  // namespace kvant::cli
