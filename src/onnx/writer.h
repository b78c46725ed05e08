// ONNX export: kvant IR -> ModelProto file (DESIGN.md §1).
//
// The file is written atomically: to a temporary file in the same folder,
// flushed, then renamed over the destination, so a crash or a full disk never
// leaves a half-written model. Writing over the model's own source file is
// refused unless SaveOptions::allow_overwrite_source is set.
#pragma once

#include <cstdint>
#include <filesystem>

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

// The serialized ModelProto (no external data), e.g. for tests and fuzzing.
Result<std::string> serialize_onnx(const Model& model);

}  // namespace kvant
