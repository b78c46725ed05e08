// The SentencePiece side of llm/tokenizer.cc, built as its own shared
// module (kvant_spm.so) and loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
//
// Why a module: Debian's libsentencepiece carries its own copy of
// protobuf-lite (3.14) and exports those symbols, while kvant links the
// system protobuf (3.21) for ONNX. Linked into one program, the two share
// one set of google::protobuf symbols and SentencePiece's version check
// aborts the load. Loaded this way, the module and the library it needs
// resolve their own symbols first and stay out of kvant's global scope.
//
// The interface is four extern "C" functions over standard-library types
// (the module shares kvant's libstdc++). Errors come back as text.
#include <sentencepiece_processor.h>

#include <memory>
#include <string>
#include <vector>

extern "C" {

__attribute__((visibility("default"))) void* kvant_spm_load(const std::string& path, std::string& error) {
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  const auto status = processor->Load(path);
  if (!status.ok()) {
    error = status.ToString();
    return nullptr;
  }
  return processor.release();
}

__attribute__((visibility("default"))) void kvant_spm_free(void* handle) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(handle);
}

__attribute__((visibility("default"))) int kvant_spm_piece_size(void* handle) {
  return static_cast<sentencepiece::SentencePieceProcessor*>(handle)->GetPieceSize();
}

// Returns false with `error` set when SentencePiece refuses.
__attribute__((visibility("default"))) bool kvant_spm_encode(void* handle, const std::string& text,
                                                             std::vector<int>& ids, std::string& error) {
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Encode(text, &ids);
  if (!status.ok()) error = status.ToString();
  return status.ok();
}

__attribute__((visibility("default"))) bool kvant_spm_decode(void* handle, const std::vector<int>& ids,
                                                             std::string& text, std::string& error) {
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(handle)->Decode(ids, &text);
  if (!status.ok()) error = status.ToString();
  return status.ok();
}

}  // extern "C"
