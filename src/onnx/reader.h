// ONNX import: ModelProto -> kvant IR (DESIGN.md §1, §7).
//
// Everything read from the file is validated before use: sizes are checked
// against the bytes present, external-data paths must stay inside the model's
// folder, every node input must be defined, and the graph must be acyclic.
// Constant nodes become initializers. Errors name the file and the place.
// Operators kvant cannot run do not fail the load: unsupported_operators()
// (runtime/executor.h) lists them all at once.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kvant/status.h"

namespace kvant {

struct LoadOptions {
  // Run ONNX shape inference and fill Graph::value_info with the type and
  // shape of every intermediate value it can determine.
  bool infer_shapes = true;
  // Fix input dims before inference (e.g. {"input": {1, 3, 224, 224}} for a
  // model with a symbolic batch); an input not listed keeps its declared dims.
  std::map<std::string, std::vector<int64_t>> input_shapes;
};

Result<Model> load_onnx(const std::filesystem::path& file, const LoadOptions& options = {});

// Parses a model held in memory. External data is resolved against
// `base_dir`; an empty base_dir refuses external data. Every error message
// starts with "<display_name>: ".
Result<Model> load_onnx_bytes(const void* data, size_t size, const std::filesystem::path& base_dir = {},
                              const std::string& display_name = "<memory>", const LoadOptions& options = {});

// The newest opset of the default ONNX domain kvant accepts.
inline constexpr int64_t kMaxOnnxOpset = 21;

// Parses one serialized TensorProto (e.g. ONNX test-data input_0.pb).
Result<Tensor> load_tensor_pb(const std::filesystem::path& file);

}  // namespace kvant
