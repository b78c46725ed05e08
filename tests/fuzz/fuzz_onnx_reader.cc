// libFuzzer target for the ONNX reader (DESIGN.md §7).
//
// Any byte string must give either a Model or a Status; never a crash, a
// hang, a leak or a huge allocation. Models the reader accepts that are small
// and fully static are then run once on zero inputs by the reference
// executor, which must likewise end in outputs or a kvant::Error.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "onnx/reader.h"
#include "runtime/executor.h"

namespace {

constexpr size_t kMaxNodes = 50;
constexpr int64_t kMaxInputElements = 4096;

// Ops whose output size comes from input *values* (not shapes) or that loop:
// a fuzzed initializer could make them allocate gigabytes or run for minutes
// legitimately, which is not a bug of the model checks.
bool data_sized(const kvant::Node& node) {
  static const char* const kOps[] = {"ConstantOfShape",
                                     "Expand",
                                     "Tile",
                                     "Range",
                                     "Resize",
                                     "Upsample",
                                     "Pad",
                                     "OneHot",
                                     "Loop",
                                     "Scan",
                                     "If",
                                     "NonZero",
                                     "Reshape",
                                     "TopK",
                                     "RandomNormal",
                                     "RandomUniform",
                                     "EyeLike",
                                     "ConvTranspose",
                                     "SequenceConstruct",
                                     "DFT",
                                     "STFT",
                                     "HannWindow",
                                     "HammingWindow",
                                     "BlackmanWindow",
                                     "MelWeightMatrix",
                                     "MaxUnpool",
                                     "RoiAlign"};
  for (const char* op : kOps) {
    if (node.op_type == op) return true;
  }
  return !node.domain.empty();
}

bool runnable(const kvant::Model& model) {
  const kvant::Graph& g = model.graph;
  if (g.nodes.size() > kMaxNodes) return false;
  for (const auto& node : g.nodes) {
    if (data_sized(node)) return false;
    for (const auto& [name, attr] : node.attributes) {
      if (attr.g || !attr.graphs.empty()) return false;
    }
  }
  for (const auto& [name, t] : g.initializers) {
    if (t.numel() > kMaxInputElements) return false;
  }
  for (const auto& in : g.inputs) {
    if (in.type.dtype == kvant::DType::kUndefined || in.type.dtype == kvant::DType::kString || !in.type.has_shape) {
      return false;
    }
    int64_t n = 1;
    for (const auto& d : in.type.dims) {
      if (!d.known() || d.value > kMaxInputElements) return false;
      n *= d.value;
      if (n > kMaxInputElements) return false;
    }
  }
  return kvant::unsupported_operators(model).empty();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto result = kvant::load_onnx_bytes(data, size, {}, "fuzz.onnx");
  if (!result.ok()) {
    // Every refusal names the file.
    if (result.status().message().rfind("fuzz.onnx: ", 0) != 0) __builtin_trap();
    return 0;
  }
#if !defined(KVANT_FUZZ_NO_EXECUTOR)
  const kvant::Model& model = *result;
  if (!runnable(model)) return 0;
  try {
    std::map<std::string, kvant::Tensor> feeds;
    for (const auto& in : model.graph.inputs) {
      kvant::Shape shape;
      for (const auto& d : in.type.dims) shape.push_back(d.value);
      feeds[in.name] = kvant::Tensor(in.type.dtype, shape);
    }
    kvant::ReferenceExecutor executor(model);
    executor.run(feeds);
  } catch (const kvant::Error&) {
    // A clear error is a fine answer to a strange model.
  }
#endif
  return 0;
}
