#include "llm/tokenizer.h"

#include <filesystem>

#include "kvant/status.h"

#if KVANT_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#endif

namespace kvant::llm {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

class ByteTokenizer final : public Tokenizer {
 public:
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string text;
    for (int64_t id : ids) {
      if (id >= 0 && id < 256) {
        text += static_cast<char>(static_cast<unsigned char>(id));
      } else {
        text.push_back('<');  // appended piecewise: GCC 12's -Wrestrict misfires on "<" + s + ">"
        text.append(std::to_string(id));
        text.push_back('>');
      }
    }
    return text;
  }
  int64_t vocab_size() const override { return 256; }
  std::string name() const override { return "byte-level"; }
};

#if KVANT_HAVE_SENTENCEPIECE
class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path) : path_(path) {
    const auto status = processor_.Load(path);
    if (!status.ok()) {
      fail("--tokenizer " + path + ": not a SentencePiece model (" + status.ToString() + ")");
    }
  }
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    const auto status = processor_.Encode(text, &ids);
    if (!status.ok()) fail("SentencePiece could not encode the text: " + status.ToString());
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<int> narrow;
    narrow.reserve(ids.size());
    const int64_t n = vocab_size();
    for (int64_t id : ids) narrow.push_back(id >= 0 && id < n ? static_cast<int>(id) : processor_.unk_id());
    std::string text;
    const auto status = processor_.Decode(narrow, &text);
    if (!status.ok()) fail("SentencePiece could not decode the ids: " + status.ToString());
    return text;
  }
  int64_t vocab_size() const override { return processor_.GetPieceSize(); }
  std::string name() const override {
    return "SentencePiece (" + path_ + ", " + std::to_string(vocab_size()) + " pieces)";
  }

 private:
  std::string path_;
  sentencepiece::SentencePieceProcessor processor_;
};
#endif

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

bool have_sentencepiece() { return KVANT_HAVE_SENTENCEPIECE != 0; }

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  if (!have_sentencepiece()) {
    fail("--tokenizer " + path +
         ": this kvant was built without SentencePiece (install libsentencepiece-dev and rebuild), or pass token ids "
         "instead (--prompt-ids / --tokens FILE.npy)");
  }
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) fail("--tokenizer " + path + ": no such file");
  if (!std::filesystem::is_regular_file(status)) fail("--tokenizer " + path + ": not a regular file");
#if KVANT_HAVE_SENTENCEPIECE
  return std::make_unique<SentencePieceTokenizer>(path);
#else
  return nullptr;
#endif
}

void check_vocab_fits(const Tokenizer& tokenizer, int64_t model_vocab, const std::string& hint) {
  if (model_vocab < tokenizer.vocab_size()) {
    fail("the model's vocabulary has " + std::to_string(model_vocab) + " entries, fewer than the " +
         std::to_string(tokenizer.vocab_size()) + " ids of the " + tokenizer.name() + " tokenizer; " + hint);
  }
}

}  // namespace kvant::llm
