// What `kvant generate` and `kvant perplexity` share: loading a decoder,
// picking its tokenizer, reading token ids from .npy (src/llm holds the
// decoder loop itself).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli_common.h"
#include "kvant/kvant.h"
#include "llm/tokenizer.h"

namespace kvant::cli {

struct LoadedDecoder {
  OnnxModel model;
  DecoderInfo info;
};
// Loads MODEL (OnnxModel::load) and reads its decoder signature
// (decoder_info); errors name the file.
LoadedDecoder load_decoder(const std::string& path);

// The value of an API result, or its Status thrown as the Error main.cc prints.
template <typename T>
T value_or_throw(Result<T> result) {
  throw_if_error(result.status());
  return std::move(result).value();
}

// The SentencePiece model at `path`, or the byte-level tokenizer when empty.
std::unique_ptr<llm::Tokenizer> make_tokenizer(const std::string& path);

// Token ids from an int64 or int32 .npy of shape [n] or [1, n]; `option`
// names the flag in errors. Every id must lie in [0, vocab) when vocab > 0.
// With `rows` set, [B, n] is taken too (row-major ids, *rows = B).
std::vector<int64_t> read_token_ids(const std::string& file, const std::string& option, int64_t vocab,
                                    int64_t* rows = nullptr);

// A text file's bytes (a regular file, within the memory budget).
std::string read_text_file(const std::string& file, const std::string& option);

// Throws when an id is outside [0, vocab) (vocab <= 0: unknown, not checked).
void check_ids_in_vocab(const std::vector<int64_t>& ids, int64_t vocab, const std::string& what);

}  // namespace kvant::cli
