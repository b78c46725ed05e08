// Quantizing a model: the options, the algorithms' entry points, and the
// report (DESIGN.md §5, §6). Each algorithm rewrites a copy of the FP32 model
// into QDQ form (quant/qdq.h); nothing else about the graph changes.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
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
// How weights are rounded: to nearest (weight-only INT4 after
// weight_clip_search); AdaRound's learned up/down choice per weight (static
// mode, quant/algorithms/adaround.cc); or GPTQ's error-compensating order on
// calibration data (weight-only MatMul/Gemm, quant/gptq.h).
enum class WeightRounding { kNearest, kAdaRound, kGptq };

struct QuantizeOptions {
  QuantMode mode = QuantMode::kStatic;
  ObserverOptions calibration;  // calibrator for activations (static mode)
  int64_t max_samples = 500;    // calibration samples used at most
  DType activation_type = DType::kUInt8;
  Symmetry activation_symmetry = Symmetry::kAffine;
  DType weight_type = DType::kInt8;
  Symmetry weight_symmetry = Symmetry::kSymmetric;
  bool per_channel = true;     // per output channel weights (Conv/Gemm/MatMul)
  bool reduce_range = false;   // 7-bit weights (static and dynamic), for CPUs without VNNI
  int group_size = 128;        // weight-only: block size along K
  int64_t accuracy_level = 0;  // MatMulNBits: the attribute written (4: int8 activations)
  // Weight-only INT4: per group, the clip ratio of its range that minimizes
  // the weight's squared error (quant/mse_clip.h); false: plain min/max.
  bool weight_clip_search = true;
  double gptq_damp = 0.01;  // GPTQ: damp * mean(diag H) added to H's diagonal
  // NaN/Inf in a weight being quantized is an error naming it unless set
  // (then NaN quantizes to the zero point, Inf to the range's end).
  bool allow_nonfinite = false;
  // Node names, op types, or "first"/"last" (the first/last Conv, Gemm or
  // MatMul): these stay FP32.
  std::vector<std::string> exclude;
  // Static mode with 4-bit weights (W4A8): these layers (node names) keep
  // 8-bit weights, the accuracy target's INT4 -> INT8 step.
  std::vector<std::string> int8_weight_layers;
  // Static mode: subtract each Conv/Gemm's mean output shift from weight
  // rounding, (Wq - W) E[x] from calibration data, from its bias
  // (quant/algorithms/bias_correction.cc).
  bool bias_correction = false;
  WeightRounding rounding = WeightRounding::kNearest;  // kAdaRound: static; kGptq: weight-only
  // Called after each calibration sample: (done, total or -1).
  std::function<void(int64_t, int64_t)> progress;
};

struct QuantizeSummary {
  int64_t quantized_nodes = 0;         // compute and activation nodes in integer form
  std::vector<std::string> kept_fp32;  // excluded compute nodes
  int64_t calibration_samples = 0;
  std::vector<std::string> notes;     // e.g. fallbacks taken
  std::vector<std::string> warnings;  // e.g. scales raised to kMinScale, naming the tensor
  // Nodes left in FP32 without being excluded, each with why (an operator
  // kvant has no kernel for, a weight that is not a constant, ...).
  std::vector<std::pair<std::string, std::string>> fp32_reasons;  // (node name, reason)
  // Output tensors of quantized nodes, compared in the per-layer report.
  std::vector<std::pair<std::string, std::string>> layer_outputs;  // (node name, tensor)
};

// The rewrites run before any quantization: opsets 7..12 upgraded to 13
// (passes/upgrade_opset13.cc), Identity/Dropout removed,
// constants folded, BatchNormalization folded into Conv/Gemm, dead nodes
// removed (prepare.cc). The CLI runs it; the algorithms below take its result.
Model prepare_for_quantization(const Model& model);

// Names of the nodes `exclude` selects: a node name or an operator type (in
// the main graph and inside If/Loop/Scan bodies), or "first"/"last" (the
// first/last main-graph node whose type is in `compute_ops`).
// Throws Error naming an entry that selects nothing.
std::set<std::string> resolve_excluded_nodes(const Graph& graph, const std::vector<std::string>& exclude,
                                             const std::set<std::string>& compute_ops);

// The part of `model` that static calibration can run (calibration_scope.cc,
// design decision 24): the nodes kvant has a kernel for (in all their
// subgraphs too) that read nothing computed by a node it lacks one for.
// Every other node is appended to `blocked` as (node name, reason).
// Nodes named in `refused` (node -> what its kernel said) are left out too.
Model calibration_scope(const Model& model, std::vector<std::pair<std::string, std::string>>* blocked,
                        const std::map<std::string, std::string>& refused = {});

// calibration_scope, then `sample` is run through it: a main-graph node
// whose kernel refuses it (Error kUnsupported naming the node, e.g. a Cast to
// a type kvant does not have) is left out as well, with what it reads only
// through it, until the sample runs or an error of another kind remains
// (which the calibration run then reports in context). `sample` may be null.
Model runnable_for_calibration(const Model& model, const std::map<std::string, Tensor>* sample,
                               std::vector<std::pair<std::string, std::string>>* blocked);
// Static quantization of the Conv/Gemm/MatMul and LSTM/GRU/RNN layers inside
// the If/Loop/Scan bodies of `out` (whose main graph quantize_static has rewritten),
// calibrated by running `fp32` on `calibration` again
// (static_control_flow.cc, design decision 25). Bodies of the nodes named
// in `excluded` stay FP32. Returns how many layers it quantized; appends
// (node, reason) for each body layer it left FP32.
int64_t quantize_static_bodies(const Model& fp32, Model& out, SampleSource& calibration, const QuantizeOptions& options,
                               const std::set<std::string>& excluded,
                               std::vector<std::pair<std::string, std::string>>* reasons);

// Throws Error with a clear message on bad input (already quantized model,
// --exclude naming nothing, calibration data that does not fit the model,
// NaN/Inf in the data).
Model quantize_static(const Model& model, SampleSource& calibration, const QuantizeOptions& options,
                      QuantizeSummary* summary);

// Dynamic INT8: MatMul/Gemm/Conv weights int8 with per-call activation
// quantization (DynamicQuantizeLinear + MatMulInteger / ConvInteger),
// LSTM/GRU/RNN weights int8.
Model quantize_dynamic(const Model& model, const QuantizeOptions& options, QuantizeSummary* summary);

// Weight-only: MatMul/Gemm weights int4 (bits 4) or int8 (bits 8) with one
// scale per options.group_size values along K; opset-21 blocked DQ. Rounded
// to nearest, or with options.rounding = kGptq by GPTQ, which needs
// `calibration` (the MatMul/Gemm inputs' second moments come from it).
Model quantize_weight_only(const Model& model, int bits, const QuantizeOptions& options, QuantizeSummary* summary,
                           SampleSource* calibration = nullptr);

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
// `samples` (layer_report.cc). Two errors per layer:
//   own          the layer alone: its quantized nodes (input Q/DQ, integer
//                weights, output Q/DQ) run on the FP32 model's values of its
//                inputs, against the FP32 output. What this layer costs.
//   accumulated  the whole quantized model up to the layer against FP32: its
//                own error plus all it inherits from the layers before it.
// SQNR = 10 log10(sum x^2 / sum (x - y)^2) in dB against the FP32 signal x's
// own power; cosine = sum x y / (|x| |y|). A layer whose FP32 output barely
// varies (standard deviation under kNearConstantSteps quantization steps of
// the output, or variance under 1e-6 x mean^2) is flagged near_constant: its
// SQNR says how the steps fall, not whether the layer works. Sorted worst
// first by own SQNR (accumulated where own is not measured), near-constant
// layers last.
inline constexpr double kNearConstantSteps = 2.0;
struct LayerError {
  std::string node;
  std::string tensor;
  double sqnr_db = 0;  // accumulated
  double cosine = 0;   // accumulated
  // Own error; NaN when not measured (a layer inside control flow, or one
  // whose quantized form is not a small subgraph of the quantized model).
  double own_sqnr_db = std::numeric_limits<double>::quiet_NaN();
  double own_cosine = std::numeric_limits<double>::quiet_NaN();
  bool near_constant = false;
  double fp32_std = 0;     // standard deviation of the FP32 output
  double output_step = 0;  // the output's quantization step (0: not quantized per tensor)
};
std::vector<LayerError> compare_layers(const Model& fp32, const Model& quantized,
                                       const std::vector<std::pair<std::string, std::string>>& layers,
                                       SampleSource& samples, int64_t max_samples);

}  // namespace kvant
