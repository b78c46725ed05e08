// ONNX export: kvant IR -> ModelProto file (DESIGN.md §1).
//
// The file (and its ".data" side file, if any) is written as io/output_file.h
// says: an exclusively created temporary beside it, fsync'd, renamed over the
// destination only when that is absent or a regular file, so a crash or a
// full disk never leaves a half-written model and a planted link or FIFO is
// never written through. Writing over the model's own source file is refused
// unless SaveOptions::allow_overwrite_source is set.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>

#include "ir/graph.h"
#include "kvant/status.h"

namespace kvant {

struct SaveOptions {
  // Initializers of at least this many bytes go to one side file
  // "<model file name>.data" when the whole model would exceed protobuf's
  // 2 GB limit; 0 forces external data for every initializer of >= 1 KiB.
  int64_t external_data_threshold = 1024;
  bool force_external_data = false;
  bool allow_overwrite_source = false;
};

Status save_onnx(const Model& model, const std::filesystem::path& file, const SaveOptions& options = {});

// save_onnx in two steps, for a caller with more to do before the file may
// appear (quantize measures the result first): prepare_save checks the model
// (onnx/export_check.h) and writes it to temporary files; commit() renames
// them into place. Destroying an uncommitted PendingSave removes them, so a
// command that fails on the way leaves nothing at the output path.
class OutputFile;
class PendingSave {
 public:
  PendingSave();
  ~PendingSave();
  void commit();          // throws Error naming the file
  int64_t bytes() const;  // model + external data, as they will be on disk

 private:
  friend Result<std::unique_ptr<PendingSave>> prepare_save(const Model&, const std::filesystem::path&,
                                                           const SaveOptions&);
  std::filesystem::path file_;
  std::unique_ptr<OutputFile> model_, data_;
};
Result<std::unique_ptr<PendingSave>> prepare_save(const Model& model, const std::filesystem::path& file,
                                                  const SaveOptions& options = {});

// The serialized ModelProto (no external data), e.g. for tests and fuzzing.
Result<std::string> serialize_onnx(const Model& model);

}  // namespace kvant
