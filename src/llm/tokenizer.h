// Text <-> token ids for `kvant generate` and `kvant perplexity`.
//
// Byte-level (the default): the UTF-8 bytes of the text are the ids
// (0..255), so it needs a model whose vocabulary has at least 256 entries;
// decoding writes id i < 256 as byte i (ids above 255 have no text and are
// written as "<id>").
//
// SentencePiece: a `.model` file read by Debian's libsentencepiece, when
// kvant was built with it (CMake finds it optionally; KVANT_HAVE_SENTENCEPIECE),
// through the module kvant_spm.so (sentencepiece/module.cc says why).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvant::llm {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  // Ids run from 0 to vocab_size() - 1.
  virtual int64_t vocab_size() const = 0;
  virtual std::string name() const = 0;  // "byte-level", "SentencePiece (tok.model, 8000 pieces)"
};

std::unique_ptr<Tokenizer> make_byte_tokenizer();

// Whether this build can read SentencePiece models.
bool have_sentencepiece();
// Loads a SentencePiece model. Throws Error naming the file when it is
// missing, not a regular file, not a SentencePiece model, or when kvant was
// built without SentencePiece.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path);

// Throws Error when the model's vocabulary (`model_vocab` logits) cannot
// hold the tokenizer's ids; `hint` ends the message (what to pass instead).
void check_vocab_fits(const Tokenizer& tokenizer, int64_t model_vocab, const std::string& hint);

}  // namespace kvant::llm
