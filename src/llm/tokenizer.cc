#include "llm/tokenizer.h"

#include <filesystem>

#include "kvant/status.h"

#if KVANT_HAVE_SENTENCEPIECE
#include <dlfcn.h>

#include <cstdlib>
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
// The module's functions (sentencepiece/module.cc), loaded once.
struct SpmModule {
  void* (*load)(const std::string& path, std::string& error) = nullptr;
  void (*free)(void* handle) = nullptr;
  int (*piece_size)(void* handle) = nullptr;
  bool (*encode)(void* handle, const std::string& text, std::vector<int>& ids, std::string& error) = nullptr;
  bool (*decode)(void* handle, const std::vector<int>& ids, std::string& text, std::string& error) = nullptr;
};

// Looks for kvant_spm.so beside the program, in <prefix>/LIBDIR/kvant (an
// installed kvant), then where the build put it; KVANT_SPM_MODULE overrides.
const SpmModule& spm_module() {
  static const SpmModule module = [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("KVANT_SPM_MODULE"); env && *env) candidates.push_back(env);
    std::error_code ec;
    const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
      candidates.push_back((exe.parent_path() / "kvant_spm.so").string());
      candidates.push_back((exe.parent_path().parent_path() / KVANT_SPM_LIBDIR / "kvant" / "kvant_spm.so").string());
    }
    candidates.push_back(KVANT_SPM_BUILD_PATH);
    std::string tried;
    for (const std::string& path : candidates) {
      if (!std::filesystem::exists(path, ec)) {
        tried += (tried.empty() ? "" : ", ") + path;
        continue;
      }
      // DEEPBIND: the library's own protobuf copy before kvant's (module.cc).
      void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (lib == nullptr) fail("cannot load the SentencePiece module " + path + ": " + dlerror());
      SpmModule m;
      m.load = reinterpret_cast<decltype(m.load)>(dlsym(lib, "kvant_spm_load"));
      m.free = reinterpret_cast<decltype(m.free)>(dlsym(lib, "kvant_spm_free"));
      m.piece_size = reinterpret_cast<decltype(m.piece_size)>(dlsym(lib, "kvant_spm_piece_size"));
      m.encode = reinterpret_cast<decltype(m.encode)>(dlsym(lib, "kvant_spm_encode"));
      m.decode = reinterpret_cast<decltype(m.decode)>(dlsym(lib, "kvant_spm_decode"));
      if (!m.load || !m.free || !m.piece_size || !m.encode || !m.decode) {
        fail("the SentencePiece module " + path + " lacks kvant's functions (a stale build?)");
      }
      return m;
    }
    fail("kvant's SentencePiece module kvant_spm.so is missing (looked at " + tried +
         "); set KVANT_SPM_MODULE to its path");
  }();
  return module;
}

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) : path_(path), module_(spm_module()) {
    std::string error;
    handle_ = module_.load(path, error);
    if (handle_ == nullptr) fail("--tokenizer " + path + ": not a SentencePiece model (" + error + ")");
  }
  ~SentencePieceTokenizer() override { module_.free(handle_); }
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;

  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int> ids;
    std::string error;
    if (!module_.encode(handle_, text, ids, error)) fail("SentencePiece could not encode the text: " + error);
    return {ids.begin(), ids.end()};
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::vector<int> narrow;
    narrow.reserve(ids.size());
    const int64_t n = vocab_size();
    for (int64_t id : ids) {
      if (id < 0 || id >= n) fail("token id " + std::to_string(id) + " is outside the tokenizer's " + name());
      narrow.push_back(static_cast<int>(id));
    }
    std::string text, error;
    if (!module_.decode(handle_, narrow, text, error)) fail("SentencePiece could not decode the ids: " + error);
    return text;
  }
  int64_t vocab_size() const override { return module_.piece_size(handle_); }
  std::string name() const override {
    return "SentencePiece (" + path_ + ", " + std::to_string(vocab_size()) + " pieces)";
  }

 private:
  std::string path_;
  const SpmModule& module_;
  void* handle_ = nullptr;
};
#endif

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

bool have_sentencepiece() { return KVANT_HAVE_SENTENCEPIECE != 0; }

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status)) fail("--tokenizer " + path + ": no such file");
  if (!std::filesystem::is_regular_file(status)) fail("--tokenizer " + path + ": not a regular file");
  if (!have_sentencepiece()) {
    fail("--tokenizer " + path +
         ": this kvant was built without SentencePiece (install libsentencepiece-dev and rebuild), or pass token ids "
         "instead (--prompt-ids / --tokens FILE.npy)");
  }
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
