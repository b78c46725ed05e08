#include "cli/llm_common.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/cli_common.h"
#include "io/npy.h"
#include "ir/limits.h"

namespace kvant::cli {

namespace {
[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }
}  // namespace

LoadedDecoder load_decoder(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(path + ": no such file");
  LoadedDecoder loaded{load_api_model(path, ModelLoadOptions{}), {}};
  loaded.info = value_or_throw(decoder_info(loaded.model));
  return loaded;
}

std::unique_ptr<llm::Tokenizer> make_tokenizer(const std::string& path) {
  if (path.empty()) return llm::make_byte_tokenizer();
  return llm::load_sentencepiece(path);
}

void check_ids_in_vocab(const std::vector<int64_t>& ids, int64_t vocab, const std::string& what) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || (vocab > 0 && ids[i] >= vocab)) {
      fail(what + ": token " + std::to_string(i) + " is id " + std::to_string(ids[i]) + ", outside the model's " +
           (vocab > 0 ? "vocabulary [0, " + std::to_string(vocab) + ")" : "ids (>= 0)"));
    }
  }
}

std::vector<int64_t> read_token_ids(const std::string& file, const std::string& option, int64_t vocab, int64_t* rows) {
  auto array = read_npy(file);
  if (!array.ok()) fail(option + " " + array.status().message());
  const Tensor& t = *array;
  if (t.dtype() != DType::kInt64 && t.dtype() != DType::kInt32) {
    fail(option + " " + file + ": token ids must be int64 or int32, got " + t.describe());
  }
  if (rows != nullptr && t.rank() == 2) {
    *rows = t.dim(0);
  } else if (rows != nullptr && t.rank() == 1) {
    *rows = 1;
  } else if (!(t.rank() == 1 || (t.rank() == 2 && t.dim(0) == 1))) {
    fail(option + " " + file + ": token ids must have shape [n] or [1, n], got " + t.describe());
  }
  if (rows != nullptr && t.rank() != 1 && t.rank() != 2) {
    fail(option + " " + file + ": token ids must have shape [n] or [batch, n], got " + t.describe());
  }
  std::vector<int64_t> ids = t.to_int64_vector();
  if (ids.empty()) fail(option + " " + file + ": no token ids (the array is empty)");
  check_ids_in_vocab(ids, vocab, option + " " + file);
  return ids;
}

std::string read_text_file(const std::string& file, const std::string& option) {
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (ec || !std::filesystem::exists(status)) fail(option + " " + file + ": no such file");
  if (!std::filesystem::is_regular_file(status)) fail(option + " " + file + ": not a regular file");
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) fail(option + " " + file + ": cannot read its size: " + ec.message());
  check_memory(static_cast<int64_t>(size), option + " " + file);
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(option + " " + file + ": cannot open it");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace kvant::cli
