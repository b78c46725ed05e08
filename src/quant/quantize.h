// Quantizing a model: the options, the algorithms' entry points, and the
// report (DESIGN.md §5, §6). Each algorithm rewrites a copy of the FP32 model
// into QDQ form (quant/qdq.h); nothing else about the graph changes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"
#include "quant/observers/observer.h"
#include "quant/quant_params.h"

namespace kvant {

enum class QuantMode { kStatic, kDynamic, kWeightOnly };

struct QuantizeOptions {
  QuantMode mode = QuantMode::kStatic;
  ObserverOptions calibration;  // calibrator for activations (static mode)
  int64_t max_samples = 500;    // calibration samples used at most
  DType activation_type = DType::kUInt8;
  Symmetry activation_symmetry = Symmetry::kAffine;
  DType weight_type = DType::kInt8;
  Symmetry weight_symmetry = Symmetry::kSymmetric;
  bool per_channel = true;    // per output channel weights (Conv/Gemm/MatMul)
  bool reduce_range = false;  // 7-bit weights (static and dynamic), for CPUs without VNNI
  int group_size = 128;       // weight-only: block size along K
  // Weight-only INT4: per group, the clip ratio of its range that minimizes
  // the weight's squared error (quant/mse_clip.h); false: plain min/max.
  bool weight_clip_search = true;
  // NaN/Inf in a weight being quantized is an error naming it unless set
  // (then NaN quantizes to the zero point, Inf to the range's end).
  bool allow_nonfinite = false;
  // Node names, op types, or "first"/"last" (the first/last Conv, Gemm or
  // MatMul): these stay FP32.
  std::vector<std::string> exclude;
  // Called after each calibration sample: (done, total or -1).
  std::function<void(int64_t, int64_t)> progress;
};

struct QuantizeSummary {
  int64_t quantized_nodes = 0;         // compute and activation nodes in integer form
  std::vector<std::string> kept_fp32;  // excluded compute nodes
  int64_t calibration_samples = 0;
  std::vector<std::string> notes;     // e.g. fallbacks taken
  std::vector<std::string> warnings;  // e.g. scales raised to kMinScale, naming the tensor
  // Output tensors of quantized nodes, compared in the per-layer report.
  std::vector<std::pair<std::string, std::string>> layer_outputs;  // (node name, tensor)
};

// The rewrites run before any quantization: Identity/Dropout removed,
// constants folded, BatchNormalization folded into Conv/Gemm, dead nodes
// removed (prepare.cc). The CLI runs it; the algorithms below take its result.
Model prepare_for_quantization(const Model& model);

// Names of the nodes `exclude` selects: a node name, an operator type, or
// "first"/"last" (the first/last node whose type is in `compute_ops`).
// Throws Error naming an entry that selects nothing.
std::set<std::string> resolve_excluded_nodes(const Graph& graph, const std::vector<std::string>& exclude,
                                             const std::set<std::string>& compute_ops);

// Throws Error with a clear message on bad input (already quantized model,
// --exclude naming nothing, calibration data that does not fit the model,
// NaN/Inf in the data).
Model quantize_static(const Model& model, SampleSource& calibration, const QuantizeOptions& options,
                      QuantizeSummary* summary);

// Dynamic INT8: MatMul/Gemm/Conv weights int8 with per-call activation
// quantization (DynamicQuantizeLinear + MatMulInteger / ConvInteger),
// LSTM/GRU/RNN weights int8.
Model quantize_dynamic(const Model& model, const QuantizeOptions& options, QuantizeSummary* summary);

// Weight-only RTN: MatMul/Gemm weights int4 (bits 4) or int8 (bits 8) with
// one scale per options.group_size values along K; opset-21 blocked DQ.
Model quantize_weight_only(const Model& model, int bits, const QuantizeOptions& options, QuantizeSummary* summary);

// The same weight-only RTN exported as ONNX Runtime's
// com.microsoft.MatMulNBits (`--format ort`; matmul_nbits.cc).
Model quantize_matmul_nbits(const Model& model, int bits, const QuantizeOptions& options, QuantizeSummary* summary);

// Gives every value the quantization added a short unique name and clears
// the names of the nodes it added; names present in `original` are kept
// (compact_names.cc). Run before writing: it only changes the file's size.
void compact_new_names(const Model& original, Model& quantized);

// Operator types that mark a model as already quantized.
bool is_quantized_model(const Model& model);

// Per-layer error of a quantized model against its FP32 original on
// `samples`: for each tensor, SQNR (dB) and cosine similarity, worst first.
struct LayerError {
  std::string node;
  std::string tensor;
  double sqnr_db = 0;
  double cosine = 0;
};
std::vector<LayerError> compare_layers(const Model& fp32, const Model& quantized,
                                       const std::vector<std::pair<std::string, std::string>>& layers,
                                       SampleSource& samples, int64_t max_samples);

}  // namespace kvant
