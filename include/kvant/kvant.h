// kvant.h: the public C++ API. Load an ONNX model, quantize it, compile it
// into a Session, run it.
//
//   auto model = kvant::OnnxModel::load("resnet50.int8.onnx");
//   if (!model.ok()) { std::cerr << model.status().message() << "\n"; return 1; }
//   kvant::SessionOptions options;
//   options.threads = 4;
//   auto session = kvant::Session::create(*model, options);
//   auto outputs = session->run({{"input", kvant::TensorView{pixels, kvant::DataType::kFloat32, {1, 3, 224, 224}}}});
//   const float* logits = outputs->at("logits").data_as<float>();
//
// Errors are values: every call that can fail returns Status or Result<T>
// (kvant/status.h) whose message names what is wrong ("model.onnx: no such
// file", "input \"x\": expected float32[1,4], got float32[1,3] (dimension 1
// differs)"). No exception leaves this API: the library catches its own
// and std::bad_alloc at the edge. Exceptions thrown by your
// CalibrationDataReader, metric or progress callback are caught too and
// become the Status of the call.
//
// Threads. An OnnxModel is immutable once loaded: any number of threads may
// read it, quantize it and compile Sessions from it at once. A Session is
// NOT reentrant: it owns one memory arena (every intermediate tensor at a
// planned offset) and, with threads > 1, one thread pool, so the calls that
// run it (run, prepare, input_buffer) must not overlap on one Session —
// serialize them, or compile one Session per thread (weights are prepacked
// per Session). Only inputs(), outputs(), input_index() and output_index()
// may be called from any thread at any time; output_buffer(), describe(),
// plan(), profile() and describe_profile() read the plan and times that a
// run may remake, and set_profiling() changes them: not during a run. Different Sessions never share
// mutable state, apart from the process-wide memory budget, which is atomic.
// A Decoder and a Sampler are like a Session: one thread at a time on each
// (their const getters too, during a forward() or sample()); one per thread
// otherwise. decoder_info(), perplexity_windows() and next_token_nll() may
// run from any thread.
//
// ABI: a C++ API (std::string, std::vector, std::map in signatures): build
// your program with the same compiler family and standard library as
// libkvant. Nothing of protobuf or ONNX appears here; libkvant links them
// privately.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvant/status.h"

#if defined(_WIN32)
#define KVANT_API
#else
#define KVANT_API __attribute__((visibility("default")))
#endif

namespace kvant {

// The version of the library the program runs with ("0.1.0").
KVANT_API const char* version();

// Element types; the values are ONNX's TensorProto.DataType codes.
// kInt4/kUInt4 hold two elements per byte, low nibble first.
enum class DataType : int32_t {
  kUndefined = 0,
  kFloat32 = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 9,
  kFloat16 = 10,
  kFloat64 = 11,
  kUInt32 = 12,
  kUInt64 = 13,
  kBFloat16 = 16,
  kUInt4 = 21,
  kInt4 = 22,
};
KVANT_API const char* data_type_name(DataType type);  // "float32", "uint8", ...; "undefined" for others
// Bytes of a dense tensor of this type and shape; an error for a negative
// dim, an unknown type or a size that overflows.
KVANT_API Result<size_t> byte_size(DataType type, const std::vector<int64_t>& shape);

// A dense row-major tensor in memory the caller owns. Input views are only
// read; the bytes must stay valid during the call that reads them.
struct TensorView {
  const void* data = nullptr;
  DataType dtype = DataType::kUndefined;
  std::vector<int64_t> shape;
};
// The same for memory kvant writes into (run's output buffers, the
// session's input buffers).
struct MutableTensorView {
  void* data = nullptr;
  DataType dtype = DataType::kUndefined;
  std::vector<int64_t> shape;
  operator TensorView() const { return TensorView{data, dtype, shape}; }  // NOLINT: implicit by design
};

// A tensor that owns its bytes (64-byte aligned). Copies share the bytes, as
// std::shared_ptr does; copy_of() makes an independent copy.
class KVANT_API OwnedTensor {
 public:
  OwnedTensor() = default;
  // Zero-filled storage for `shape`.
  static Result<OwnedTensor> create(DataType dtype, const std::vector<int64_t>& shape);
  // A copy of the bytes `view` shows.
  static Result<OwnedTensor> copy_of(const TensorView& view);

  DataType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t numel() const;  // 0 for a default-constructed (undefined) tensor
  size_t nbytes() const { return nbytes_; }
  void* data() { return data_.get(); }
  const void* data() const { return data_.get(); }
  // The data as T; the caller picks the T of dtype() (float for kFloat32,
  // uint8_t for kUInt8, ...): nothing is converted or checked.
  template <typename T>
  T* data_as() {
    return static_cast<T*>(data());
  }
  template <typename T>
  const T* data_as() const {
    return static_cast<const T*>(data());
  }
  TensorView view() const { return TensorView{data(), dtype_, shape_}; }
  MutableTensorView mutable_view() { return MutableTensorView{data(), dtype_, shape_}; }

 private:
  friend struct ApiAccess;
  DataType dtype_ = DataType::kUndefined;
  std::vector<int64_t> shape_;
  size_t nbytes_ = 0;
  std::shared_ptr<void> data_;
};

// Named tensors: a model's feeds or a run's results.
using Feeds = std::map<std::string, TensorView>;
using Tensors = std::map<std::string, OwnedTensor>;

// NumPy .npy files (C order, little-endian; float16/32/64, (u)int8..64,
// bool). Loading checks every size against the file.
KVANT_API Result<OwnedTensor> load_npy(const std::string& path);
// Written atomically (a temporary file renamed into place); an existing
// regular file is replaced, a link or device never written through.
KVANT_API Status save_npy(const std::string& path, const TensorView& tensor);

// A model input or output as the model declares it. A dim the model leaves
// symbolic or unknown is -1 (its name, if any, in dim_names).
struct TensorInfo {
  std::string name;
  DataType dtype = DataType::kUndefined;
  bool has_shape = false;  // false: not even the rank is declared
  std::vector<int64_t> shape;
  std::vector<std::string> dim_names;  // "" where the dim is a number or unnamed
};

// Checks `given` against `declared` as a run checks its feeds: the dtype,
// the rank, the fixed dims, and each symbolic dim against the value it had
// in inputs checked before (`symbolic_dims`: name -> value, updated; may be
// null). For callers that report a bad input before running, e.g. naming
// the file it came from.
KVANT_API Status check_input(const TensorInfo& declared, const TensorView& given,
                             std::map<std::string, int64_t>* symbolic_dims = nullptr);

struct ModelLoadOptions {
  // Run ONNX shape inference when loading (it lets compile fuse more float
  // operators; off only for models whose inference fails slowly).
  bool infer_shapes = true;
  // Fix input dims at load (e.g. {"input", {1, 3, 224, 224}} for a symbolic
  // batch); inputs not listed keep their declared dims.
  std::map<std::string, std::vector<int64_t>> input_shapes;
};

// An ONNX model in memory: immutable, cheap to copy (copies share it).
class KVANT_API OnnxModel {
 public:
  OnnxModel();
  ~OnnxModel();
  OnnxModel(const OnnxModel&);
  OnnxModel& operator=(const OnnxModel&);
  OnnxModel(OnnxModel&&) noexcept;
  OnnxModel& operator=(OnnxModel&&) noexcept;

  // From a file; external data (".data" side files) is read from the
  // model's folder and may not point outside it.
  static Result<OnnxModel> load(const std::string& path, const ModelLoadOptions& options = {});
  // From serialized ModelProto bytes (copied; the buffer may go away after
  // the call). External data is refused. `name` starts every error message.
  static Result<OnnxModel> load_from_bytes(const void* data, size_t size, const ModelLoadOptions& options = {},
                                           const std::string& name = "<memory>");

  // Written atomically; never through a link; a model loaded from `path`
  // is not written over its own file.
  Status save(const std::string& path) const;
  // The serialized ModelProto (no external data: models over 2 GB need save).
  Result<std::string> to_bytes() const;

  // The graph's inputs the caller feeds (initializer-backed ones left out)
  // and its outputs, in model order.
  const std::vector<TensorInfo>& inputs() const;
  const std::vector<TensorInfo>& outputs() const;
  // Whether it already has QuantizeLinear/DequantizeLinear or integer
  // operators (quantize refuses such a model).
  bool is_quantized() const;
  int64_t opset() const;  // of the default ONNX domain; 0 when not imported
  // Problems that did not stop the load (e.g. shape inference skipped).
  const std::vector<std::string>& warnings() const;

  struct Impl;  // the library's side, not part of the API

 private:
  friend struct ApiAccess;
  std::shared_ptr<const Impl> impl_;
};

// ---------------------------------------------------------------- statistics

// "float32[N,3,224,224]": dtype, then each dim (its name when symbolic, "?"
// when unknown); "float32[?]" without a declared shape.
KVANT_API std::string type_to_string(const TensorInfo& info);

// A type of operator and the nodes that use it.
struct OperatorCount {
  std::string op;  // "Conv"; other domains than ONNX's as "com.microsoft:MatMulNBits"
  int64_t nodes = 0;
};

// The initializers of one element type.
struct InitializerGroup {
  DataType dtype = DataType::kUndefined;
  int64_t tensors = 0, elements = 0, bytes = 0;
  bool parameters = false;  // floating point: counted as parameters
};

// The multiply-accumulates of one compute layer (Conv, ConvTranspose, Gemm,
// MatMul, Einsum, LSTM/GRU/RNN and their quantized forms): Conv =
// N*OutC*OutH*OutW*(InC/group)*kH*kW, Gemm/MatMul = M*N*K (times batch).
struct LayerCost {
  std::string node, op_type;
  std::optional<int64_t> macs;   // nullopt: a shape it needs is not known
  std::string reason;            // why not known (names the value)
  bool has_output_type = false;  // false: its output has no type in the model
  TensorInfo output;             // its first output (name empty when it has none)
};

// What a model is and what it costs (`kvant inspect`). Shapes are the
// model's as loaded: ModelLoadOptions::input_shapes fixes symbolic input
// dims so that every layer's MACs can be known.
struct ModelStats {
  std::string producer_name, producer_version;
  int64_t ir_version = 0;
  std::map<std::string, int64_t> opsets;  // domain ("" for ONNX's own) -> version
  // Every graph input as the model declares it (initializer-backed ones
  // too), and the outputs.
  std::vector<TensorInfo> inputs, outputs;
  int64_t nodes = 0;                     // subgraphs' nodes included
  std::vector<OperatorCount> operators;  // most nodes first (ties by name)
  std::vector<std::string> unsupported;  // operators kvant cannot run yet, one line each
  // Parameters are the elements of floating-point initializers.
  int64_t parameters = 0, parameter_bytes = 0;
  int64_t initializer_bytes = 0;               // every initializer
  std::vector<InitializerGroup> initializers;  // by dtype, most elements first
  // Quantization found in the graph: "QDQ" (QuantizeLinear/DequantizeLinear),
  // "QOperator" (QLinearConv, ConvInteger, MatMulInteger, ...),
  // "MatMulNBits" (com.microsoft). Empty: a float model.
  std::vector<std::string> quantization;
  int64_t macs = 0;               // sum over the layers whose MACs are known
  int64_t macs_unknown = 0;       // layers whose MACs are not known
  std::vector<LayerCost> layers;  // the main graph's compute layers, in graph order
};
KVANT_API Result<ModelStats> model_stats(const OnnxModel& model);

// ---------------------------------------------------------------- quantize

// Calibration samples for static quantization, in the shape of ONNX
// Runtime's CalibrationDataReader: get_next() returns one sample (input
// name -> tensor; each model input, its declared type, any batch size the
// model allows) or nullopt at the end.
//
// Calibration reads the data more than once (a first sample to find what it
// can run, then every sample). Before each pass kvant calls rewind(): return
// true when the reader has started over; the default returns false, and
// then kvant keeps each sample it read in memory and replays them, so a
// reader that can go through its data only once works too.
//
// size() is how many samples get_next() gives from the start, when known
// (-1: not known, the default). It makes the totals of progress reports
// (ProgressCallback) known, and an evaluation reader's labels are checked
// against it.
class KVANT_API CalibrationDataReader {
 public:
  virtual ~CalibrationDataReader();
  virtual std::optional<Tensors> get_next() = 0;
  virtual bool rewind() { return false; }
  virtual int64_t size() { return -1; }
};

// ---------------------------------------------------------------- progress

// What a long call is doing when it reports progress.
enum class ProgressStage {
  kCalibration,     // static calibration (quantize_static, sensitivity with bits 8): done = samples run
  kAwq,             // QuantizationOptions::awq's statistics: samples run
  kSmoothQuant,     // QuantizationOptions::smooth_quant's statistics: samples run
  kGptq,            // RoundingMethod::kGptq's statistics: samples run
  kSensitivity,     // ranking the layers (sensitivity(), an accuracy target): partial runs, one layer on one sample
  kAccuracyTarget,  // an accuracy target's search: steps measured (step 0: every layer quantized)
};
// "calibration", "awq", "smooth_quant", "gptq", "sensitivity", "accuracy_target"
KVANT_API const char* progress_stage_name(ProgressStage stage);

struct Progress {
  ProgressStage stage = ProgressStage::kCalibration;
  // Work done in this stage: never less than at the stage's call before;
  // when `total` is known, the stage's last call has done == total.
  int64_t done = 0;
  // The stage's work, -1 when not known (samples of a reader whose size()
  // is -1; always -1 for kAccuracyTarget, whose step count depends on what
  // it measures).
  int64_t total = -1;
  // kSensitivity: the layer (node name) measured; kAccuracyTarget: what the
  // step changed ("conv1 -> FP32"; empty at step 0).
  std::string layer;
  // kAccuracyTarget: the step just measured.
  int64_t kept_fp32 = 0;  // layers it keeps FP32
  int64_t int8 = 0;       // layers it moved up to INT8 (weight-only INT4, static W4A8)
  double value = 0;       // its metric (or custom_metric's value)
  bool meets = false;     // whether that meets the target
};

// Called after each unit of work (a calibration sample, a layer's partial
// run on a sample, an accuracy-target step), from the thread that made the
// call, never from two threads at once. Return true to go on, false to
// cancel: the call then stops at once and returns ErrorCode::kCancelled
// (no model, nothing written). An exception it throws ends the call the
// same way, as ErrorCode::kInternal with its message. It must not call the
// function that called it.
using ProgressCallback = std::function<bool(const Progress& progress)>;

enum class Calibrator { kMinMax, kMovingAverage, kPercentile, kEntropy, kMse };
enum class WeightOnlyFormat {
  kQdq,          // opset-21 blocked DequantizeLinear -> MatMul/Gemm
  kMatMulNBits,  // ONNX Runtime's com.microsoft.MatMulNBits
};
// How weights are rounded (`kvant quantize --rounding`).
enum class RoundingMethod {
  kNearest,   // round to nearest
  kAdaRound,  // static: a learned up/down choice per weight against each layer's output on the calibration data
  kGptq,      // weight-only MatMul/Gemm: GPTQ on the calibration data (needs the reader overload)
};

// The options of `kvant quantize`; each applies to the modes named, and an
// option set away from its default in another mode is an error (as on the
// command line).
struct QuantizationOptions {
  // Static.
  Calibrator calibrator = Calibrator::kMinMax;
  double percentile = 99.99;                    // kPercentile: percentile of |x| kept
  int64_t max_samples = 500;                    // calibration samples used at most
  DataType activation_type = DataType::kUInt8;  // kUInt8 or kInt8
  bool symmetric_activations = false;           // zero point 0 (int8) / 128 (uint8)
  // Static and dynamic.
  bool per_tensor = false;    // one weight scale per tensor, not per output channel
  bool reduce_range = false;  // 7-bit weights, for CPUs without VNNI
  // Static and weight-only.
  bool affine_weights = false;  // weights with a zero point instead of symmetric
  // Weight-only.
  int bits = 4;          // 4 or 8
  int group_size = 128;  // values per scale along K: a power of two >= 16
  WeightOnlyFormat format = WeightOnlyFormat::kQdq;
  // kMatMulNBits: the `accuracy_level` written on each MatMulNBits, 0-4 as in
  // ONNX Runtime (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8). At 4 kvant and
  // ONNX Runtime quantize activations to int8 per row and block (W4A8:
  // about 1.8x faster decode than FP32 activations, docs/llm.md); kvant runs
  // 0-3 with FP32 activations.
  int accuracy_level = 0;
  // All modes. Node names, operator types, or "first"/"last" (the first/last
  // Conv, Gemm or MatMul): these stay FP32. An entry that selects nothing is
  // an error.
  std::vector<std::string> exclude;
  // Quantize weights holding NaN/Inf (NaN becomes the zero point) instead of
  // refusing them.
  bool allow_nonfinite = false;

  // The rewrites and roundings below match `kvant quantize`'s options of the
  // same names. Those that learn from data read the calibration reader: the
  // static call's, or the one given to the dynamic / weight-only overloads
  // that take a reader (then max_samples applies to weight-only as well).
  // Static: 8, or 4 for W4A8 (4-bit per-channel weights with MSE-optimal
  // clipping, 8-bit activations; the model is upgraded to opset 21).
  int weight_bits = 8;
  // Static and dynamic: cross-layer equalization first (Conv/Gemm pairs
  // through Relu rescaled so per-channel weight ranges match; same FP32
  // function).
  bool equalize = false;
  // Static: subtract each Conv/Gemm's mean output shift caused by weight
  // rounding (measured on the calibration data) from its bias.
  bool bias_correction = false;
  // kAdaRound: static; kGptq: weight-only, with a calibration reader.
  RoundingMethod rounding = RoundingMethod::kNearest;
  // Weight-only, with a calibration reader: AWQ first (each layer input's
  // weight rows scaled by mean|x|^alpha, alpha searched per input; combines
  // with kNearest and kGptq).
  bool awq = false;
  // Static and dynamic, with a calibration reader: SmoothQuant first
  // (activation outliers moved into the weights, s = max|x|^alpha /
  // max|w|^(1-alpha) per input channel).
  bool smooth_quant = false;
  // SmoothQuant's alpha in [0, 1]; nullopt: searched per layer input from
  // 0, 0.1, ..., 1 (`--smooth-quant search`).
  std::optional<double> smooth_quant_alpha = 0.5;

  // Samples of the calibration reader on which each quantized layer's output
  // is compared with the FP32 model's (QuantizationReport::layers; the
  // command's --report-samples, 32 there). 0: not compared. Needs a
  // calibration reader (static, or the overloads that take one).
  int64_t report_samples = 0;

  // All modes: called with the progress of calibration, of AWQ, SmoothQuant
  // and GPTQ statistics and, with an accuracy target, of its sensitivity
  // ranking and of each step it measures; may cancel the call (see
  // ProgressCallback). Empty: no reports.
  ProgressCallback progress;
};

// One quantized layer's output against the FP32 model's, on calibration
// samples (the per-layer table `kvant quantize` prints). Two errors: own,
// the layer alone (its quantized nodes on the FP32 model's values of its
// inputs: what this layer costs); accumulated, the whole quantized model up
// to the layer (what reaches it).
struct LayerComparison {
  // The layer's node as the given model names it (quantization gives the
  // values it adds short names in the returned model; these are not those).
  std::string node;
  std::string tensor;          // the output compared: the fused activation's, else the node's own
  int64_t order = 0;           // its place in QuantizationReport::layer_outputs (graph order)
  double sqnr_db = 0;          // accumulated SQNR against FP32 in dB (+inf: equal)
  double cosine = 0;           // accumulated cosine similarity
  double own_sqnr_db = 0;      // own; NaN when not measured (inside control flow, or not a small subgraph)
  double own_cosine = 0;       // own; NaN when not measured
  bool near_constant = false;  // the FP32 output barely varies: its SQNR says little
  double fp32_std = 0;         // standard deviation of the FP32 output
  double output_step = 0;      // the output's quantization step (0: not quantized per tensor)
};

// What the quantizer did.
struct QuantizationReport {
  int64_t quantized_nodes = 0;         // compute and activation nodes in integer form
  int64_t calibration_samples = 0;     // static: samples calibration ran
  std::vector<std::string> kept_fp32;  // nodes excluded on request
  // Nodes left FP32 without being excluded, each with why: (node, reason).
  std::vector<std::pair<std::string, std::string>> fp32_reasons;
  std::vector<std::string> notes;     // e.g. fallbacks taken
  std::vector<std::string> warnings;  // e.g. a scale raised to the minimum, naming the tensor
  // The quantized layers, (node, output tensor compared), in graph order.
  std::vector<std::pair<std::string, std::string>> layer_outputs;
  // With QuantizationOptions::report_samples > 0 (and a model kvant can
  // run): each layer of layer_outputs against FP32 on the first
  // layer_samples calibration samples, worst first (lowest own SQNR, the
  // accumulated one where own is not measured; near-constant outputs last).
  std::vector<LayerComparison> layers;
  int64_t layer_samples = 0;
  // The FP32 model the quantized one was made from and `layers` compares
  // against: the given model prepared (opset upgrade, BatchNorm and
  // constant folding) and rewritten by equalize / awq / smooth_quant, which
  // keep its function. Compile it to compare speed or outputs.
  OnnxModel fp32;
};

// Each takes the FP32 model and returns the QDQ model exactly as `kvant
// quantize` writes it (the same preparation: opset upgrade, BatchNorm and
// constant folding; the same short names), so save() of the result and the
// command's -o file are the same bytes for the same data and options.
// `report` may be null.
KVANT_API Result<OnnxModel> quantize_static(const OnnxModel& model, CalibrationDataReader& calibration,
                                            const QuantizationOptions& options = {},
                                            QuantizationReport* report = nullptr);
// INT8 weights of MatMul/Gemm/Conv/LSTM/GRU; activations quantized at run time.
KVANT_API Result<OnnxModel> quantize_dynamic(const OnnxModel& model, const QuantizationOptions& options = {},
                                             QuantizationReport* report = nullptr);
// The same with calibration data for smooth_quant (`--mode dynamic --calib`).
KVANT_API Result<OnnxModel> quantize_dynamic(const OnnxModel& model, CalibrationDataReader& calibration,
                                             const QuantizationOptions& options = {},
                                             QuantizationReport* report = nullptr);
// INT4/INT8 MatMul/Gemm weights, one scale per group_size values along K.
KVANT_API Result<OnnxModel> quantize_weight_only(const OnnxModel& model, const QuantizationOptions& options = {},
                                                 QuantizationReport* report = nullptr);
// The same with calibration data for awq and RoundingMethod::kGptq
// (`--mode weight-only --calib`).
KVANT_API Result<OnnxModel> quantize_weight_only(const OnnxModel& model, CalibrationDataReader& calibration,
                                                 const QuantizationOptions& options = {},
                                                 QuantizationReport* report = nullptr);

// ---------------------------------------------------------------- sensitivity

// Task metrics of a model's output against its FP32 original's over an
// evaluation set (as `kvant eval` / `kvant sensitivity --metric`): top1 and
// top5 the share of samples whose label is the top class / among the top 5
// (need labels); agreement the share whose top class is FP32's; sqnr the
// output SQNR in dB against FP32; mse the mean squared error against FP32;
// miou, for segmentation outputs (class scores [N, C, H, W]), the mean
// intersection over union of the per-pixel argmax map against FP32's;
// perplexity, for language models (logits [.., T, V]), of each next token of
// the sample's int64 input "input_ids" (or its only int64 input).
// Higher is better for all but kMse and kPerplexity.
enum class Metric { kTop1, kTop5, kAgreement, kSqnr, kMse, kMiou, kPerplexity };
// "top1", "top5", "agreement", "sqnr", "mse", "miou", "perplexity"
KVANT_API const char* metric_name(Metric metric);

// A metric of your own (`kvant sensitivity --metric-cmd`): called with the
// scored output of every evaluation sample of one variant of the model, in
// the order the samples were read (float32, the output's declared shape when
// it is fixed and holds as many values, else flat), the labels of those
// samples (empty when none were given) and the variant: "fp32",
// "quantized", or the node name of the one layer quantized. Returns one
// number (higher_is_better says which way is better). Called from the
// thread that called sensitivity(); an exception it throws ends that call,
// its message in the Status.
using MetricCallback = std::function<double(const std::vector<TensorView>& outputs, const std::vector<int64_t>& labels,
                                            const std::string& variant)>;

// The options of `kvant sensitivity`.
struct SensitivityAnalysisOptions {
  // 8: static INT8, calibrated on the calibration reader (required); 4:
  // weight-only INT4 (no calibration).
  int bits = 8;
  Calibrator calibrator = Calibrator::kMinMax;
  int64_t calibration_samples = 500;  // calibration samples used at most
  int group_size = 128;               // bits 4: values per scale along K
  std::vector<std::string> exclude;   // kept FP32 and not measured (as QuantizationOptions::exclude)
  // The built-in metric; unset: kTop1 when labels are given, else kAgreement.
  std::optional<Metric> metric;
  // The class label of each evaluation sample, in order (empty: none).
  std::vector<int64_t> labels;
  std::string output;          // the output scored; empty: the first
  int64_t max_samples = -1;    // evaluation samples used at most; -1: all
  bool leave_one_out = false;  // also measure every layer but one quantized
  bool reference = false;      // the reference executor instead of the compiled kernels
  int threads = 1;
  // When set, it ranks the layers instead of `metric` (which is still
  // measured and reported).
  MetricCallback custom_metric;
  bool higher_is_better = true;  // custom_metric's direction
  // Called with the progress of calibration (bits 8) and of the partial
  // runs; may cancel the call (see ProgressCallback). Empty: no reports.
  ProgressCallback progress;
};

// A model's scores on the evaluation set against FP32 (`kvant sensitivity
// --json`'s "scores"); NaN where not measured.
struct MetricScores {
  double value = 0;                  // the target's metric
  double output_sqnr_db = 0;         // the scored output's SQNR against FP32 (+inf: equal)
  double mse = 0;                    // its mean squared error against FP32
  std::optional<double> agreement;   // classifier outputs only
  std::optional<double> top1, top5;  // with labels only
};

// One Conv/Gemm/MatMul layer the quantizer rewrote.
struct LayerScore {
  std::string node, op_type;
  std::string tensor;     // where its quantized form ends (the fused activation's output, else its own)
  bool measured = false;  // false: `note` says why not, and the numbers are NaN
  std::string note;
  double value = 0;           // the metric with only this layer quantized
  double output_sqnr_db = 0;  // the scored output's SQNR against FP32, only this layer quantized
  double all_but = 0;         // the metric with every layer but this one quantized; NaN without leave_one_out
  double custom = 0;          // custom_metric, only this layer quantized; NaN without one
  MetricScores scores;        // every score with only this layer quantized (measured layers)
  std::optional<MetricScores> all_but_scores;  // with leave_one_out (measured layers)
  int64_t partial_nodes = 0;                   // nodes the partial runs of this layer computed
};

struct SensitivityReport {
  Metric metric = Metric::kAgreement;
  std::string output;  // the output scored
  int64_t samples = 0;
  double fp32 = 0;       // the metric of the FP32 model (1 for agreement, +inf dB for sqnr)
  double quantized = 0;  // of the fully quantized model
  double quantized_sqnr_db = 0;
  double custom_fp32 = 0, custom_quantized = 0;  // custom_metric; NaN without one
  MetricScores fp32_scores, quantized_scores;    // every score of the FP32 and the fully quantized model
  int64_t chunks = 0;                            // passes over the evaluation set (kept values held per chunk)
  // Most sensitive first (by custom_metric when given, else by the metric,
  // ties by output SQNR); the layers not measured last: `kvant sensitivity`'s
  // ranking.
  std::vector<LayerScore> layers;
};

// Which layers cost accuracy when quantized: quantizes `model` as `kvant
// sensitivity` does (static INT8 calibrated on `calibration`, or weight-only
// INT4), then measures the metric on `eval` with only one layer quantized,
// for every Conv/Gemm/MatMul. `calibration` may be null with bits 4; it may
// be the same reader as `eval` (then read once and replayed).
KVANT_API Result<SensitivityReport> sensitivity(const OnnxModel& model, CalibrationDataReader* calibration,
                                                CalibrationDataReader& eval,
                                                const SensitivityAnalysisOptions& options = {});

// ---------------------------------------------------------------- accuracy target

// `kvant quantize --accuracy-target DROP`: quantize, measure the metric on an
// evaluation set, and while it misses the target keep the most sensitive
// layers in FP32 (ranked once, as sensitivity() ranks them; weight-only INT4
// and static W4A8 first move them up to INT8), one more per step, until it is
// met.
struct AccuracyTarget {
  // The target, by metric: top1/top5 at least FP32's minus `drop`
  // percentage points; agreement and miou at least 100% minus `drop` points;
  // perplexity at most FP32's plus `drop` percent; sqnr at
  // least `drop` dB; mse at most `drop`; custom_metric FP32's value minus
  // `drop` (plus, when lower is better).
  double drop = 0;
  std::optional<Metric> metric;  // unset: kTop1 when labels are given, else kAgreement
  std::vector<int64_t> labels;   // the class label of each evaluation sample (empty: none)
  std::string output;            // the output scored; empty: the first
  int64_t max_samples = -1;      // evaluation samples used at most; -1: all
  bool reference = false;        // measure on the reference executor
  int threads = 1;
  // When set, it steers instead of `metric` (the variants it sees: "fp32",
  // "step 0", "step 1", ..., and each layer's node name while ranking).
  MetricCallback custom_metric;
  bool higher_is_better = true;
  // Bisect over the number of layers moved up instead of trying 1, 2, ...
  // (`--search bisect`): about log2(layers) steps; takes keeping more layers
  // high never to lower the metric.
  bool bisect = false;
  // Called with each line the search logs as it walks (the ranking, one line
  // per step: what `kvant quantize --accuracy-target` prints), without the
  // newline. Empty: nothing logged.
  std::function<void(const std::string& line)> log;
};

// One step of the search: a mix of FP32, INT8 and quantized layers measured.
struct AccuracyTargetStep {
  std::vector<std::string> kept_fp32;  // layers kept FP32 at this step
  std::vector<std::string> int8;       // layers moved up to INT8
  std::string moved;                   // what this step changed ("conv1 -> FP32"; empty at step 0)
  int64_t bytes = 0;                   // the serialized model
  double value = 0;                    // the metric steered by (or custom_metric's value)
  MetricScores scores;
  double ms_per_sample = 0;  // run time, mean over the evaluation set
  bool meets = false;
};

// What the search did.
struct AccuracyTargetReport {
  bool met = false;  // false: the model returned is the closest step walked
  double threshold = 0;
  double fp32_value = 0;
  double value = 0;                          // the returned step's metric (or custom_metric's value)
  int64_t chosen_step = 0;                   // 0: every layer quantized
  int64_t steps = 0;                         // steps walked
  std::vector<std::string> ranking;          // most sensitive first (empty when step 0 met the target)
  std::vector<std::string> kept_fp32;        // the layers the returned model keeps FP32 for the target
  std::vector<std::string> int8;             // weight-only INT4: the layers moved up to INT8
  MetricScores fp32_scores;                  // the FP32 model's
  std::vector<AccuracyTargetStep> frontier;  // every step walked, in order (frontier[chosen_step] returned)
};

// Static quantization with an accuracy target on `eval` (another reader
// than `calibration`, or the same one). The model is the bytes `kvant quantize
// --accuracy-target` writes; when no mix meets the target it is the closest
// one walked, target_report->met is false and report->warnings says so.
KVANT_API Result<OnnxModel> quantize_static(const OnnxModel& model, CalibrationDataReader& calibration,
                                            CalibrationDataReader& eval, const AccuracyTarget& target,
                                            const QuantizationOptions& options = {},
                                            QuantizationReport* report = nullptr,
                                            AccuracyTargetReport* target_report = nullptr);
// Weight-only (WeightOnlyFormat::kQdq) with an accuracy target; `calibration`
// may be null (needed for awq and kGptq).
KVANT_API Result<OnnxModel> quantize_weight_only(const OnnxModel& model, CalibrationDataReader* calibration,
                                                 CalibrationDataReader& eval, const AccuracyTarget& target,
                                                 const QuantizationOptions& options = {},
                                                 QuantizationReport* report = nullptr,
                                                 AccuracyTargetReport* target_report = nullptr);

// ---------------------------------------------------------------- run

struct SessionOptions {
  int threads = 1;  // 1 .. 4 x the hardware threads (at most 256)
  // Highest instruction set the kernels may use: "ref" (portable C++),
  // "avx2", "avxvnni", "avx512", "avx512vnni", "amx". Empty: the best this
  // CPU has (the KVANT_ISA environment variable, when set, chooses instead,
  // as for the kvant command). One the CPU lacks is an error.
  std::string isa;
  // Quantized convolution chains run in NHWC (faster; off for debugging).
  bool nhwc = true;
  // Run on the reference executor (plain loops, Q/DQ simulated in float):
  // slow, for checking the compiled kernels. `threads` and `isa` are unused.
  bool reference = false;
};

// ---------------------------------------------------------------- plan and profile

enum class StepKind {
  kKernel,    // a fused or fast kernel writing into the arena
  kView,      // a reshape that shares its input's bytes (Reshape, Flatten, ...)
  kFallback,  // a reference operator: allocates its outputs on every run
};
// "kernel", "view", "fallback"
KVANT_API const char* step_kind_name(StepKind kind);

// A value a step writes, as planned.
struct PlanValue {
  std::string name;
  DataType dtype = DataType::kUndefined;
  std::vector<int64_t> shape;
  int64_t arena_offset = -1;  // byte offset in the arena; -1 when the value lives outside it
  bool view = false;          // shares the bytes of another value
};

// One step of the compiled plan.
struct PlanStep {
  std::string kernel;  // "qconv_u8s8_avx2 (...)", "reference Softmax": what `inspect --plan` prints
  StepKind kind = StepKind::kKernel;
  std::string node;                // the (first) ONNX node it runs
  std::vector<std::string> fused;  // every node it implements (node first)
  bool fixed = false;              // fixed by the input shapes: computed while planning only
  std::vector<PlanValue> outputs;  // empty before the first plan
};

// A Session's compiled plan (Session::plan()).
struct SessionPlan {
  std::string isa;  // the kernel level compiled for ("avx2", "ref", ...)
  int threads = 1;
  bool planned = false;  // false before the first run or prepare(): no shapes, offsets or sizes
  std::vector<PlanStep> steps;
  int64_t kernel_steps = 0, view_steps = 0, fallback_steps = 0;
  int64_t fixed_steps = 0;    // steps fixed by the input shapes
  int64_t arena_bytes = 0;    // every intermediate, placed with reuse
  int64_t tensor_bytes = 0;   // the same tensors without reuse (their sum)
  int64_t scratch_bytes = 0;  // the largest scratch a step needs
  int64_t weight_bytes = 0;   // prepacked weights and constants the steps hold
};

// Where the time of profiled runs went (Session::profile()).
struct StepTime {
  std::string kernel, node;  // as PlanStep
  double ms = 0;             // summed over the profiled runs
};
struct SessionProfile {
  int64_t runs = 0;             // runs made since profiling was turned on
  std::vector<StepTime> steps;  // one per plan step, in plan order
  double total_ms = 0;          // the sum of steps[i].ms
};

// A model compiled for this CPU: kernels chosen, weights prepacked; the
// memory plan is made on the first run and again when the input shapes
// change. Move-only (a moved-from Session may only be destroyed or assigned
// to). See the thread contract at the top of this file.
class KVANT_API Session {
 public:
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  // Compiles `model` (the Session keeps no reference to it). Errors name
  // operators kvant cannot run and bad options.
  static Result<Session> create(const OnnxModel& model, const SessionOptions& options = {});

  const std::vector<TensorInfo>& inputs() const;
  const std::vector<TensorInfo>& outputs() const;
  // Position in inputs()/outputs(); an unknown name is an error that lists
  // the model's names.
  Result<size_t> input_index(const std::string& name) const;
  Result<size_t> output_index(const std::string& name) const;

  // Runs on `feeds` (one per input; dtype and shape checked against the
  // model, symbolic dims bound consistently) and returns every output.
  Result<Tensors> run(const Feeds& feeds);

  // The same, writing the outputs named in `outputs` into caller-owned
  // buffers (each dtype and shape must be the output's; others are not
  // copied out). Nothing is allocated for the results.
  Status run(const Feeds& feeds, const std::map<std::string, MutableTensorView>& outputs);

  // Zero copy ("I/O binding"): prepare() plans for these input shapes;
  // input_buffer() is where each input's data goes (write it there), run()
  // runs on what the buffers hold, output_buffer() shows each output in
  // place. The views stay valid until the next prepare() or a run(feeds)
  // with other shapes; the data is checked for nothing but its size. Not
  // available with SessionOptions::reference.
  Status prepare(const std::map<std::string, std::vector<int64_t>>& input_shapes);
  Result<MutableTensorView> input_buffer(const std::string& name);
  Status run();
  Result<TensorView> output_buffer(const std::string& name) const;

  // The compiled plan, one line per step (kernel, node, shape, arena
  // offset) — what `kvant inspect --plan` prints.
  std::string describe() const;
  // The same as values (SessionPlan). Steps and kernels are known once
  // compiled; shapes, offsets and the arena once planned (a run or
  // prepare()). An error for a Session on the reference executor.
  Result<SessionPlan> plan() const;

  // Profiling: with it on, every run() adds each step's wall time (a clock
  // read around each step) to the totals that profile() returns; turning it
  // on or off clears them. Off by default. An error on the reference
  // executor. Like run(), not to be called while a run is going on.
  Status set_profiling(bool on);
  Result<SessionProfile> profile() const;
  // The profile as `kvant bench --profile` prints it: the time per run,
  // the share per kernel kind, then the `top` slowest steps.
  std::string describe_profile(size_t top = 15) const;

 private:
  friend struct ApiAccess;
  struct Impl;
  Session();
  std::unique_ptr<Impl> impl_;
};

// ---------------------------------------------------------------- language models

// A decoder-only language model as exported by Hugging Face Optimum (and
// bench/llm/make_decoder.py): input_ids int64 [B, seq], optional
// attention_mask [B, past + seq] and position_ids [B, seq],
// past_key_values.N.key/value float [B, kv_heads, past, head_dim] (also
// past.N.key/value, past_key.N/past_value.N) -> logits float [B, seq, vocab],
// present.N.key/value. What `kvant generate` and `kvant perplexity` run.
struct DecoderInfo {
  std::string input_ids, attention_mask, position_ids;  // empty: the model has no such input
  std::string logits;
  int64_t layers = 0;  // past/present pairs; 0: no cache (each pass reruns the whole sequence)
  int64_t vocab = -1;  // the logits' declared last dim; -1 when symbolic
  // The longest sequence (past + new) the model takes, when it says so (a
  // fixed attention_mask dim, a position-embedding table); -1: no limit.
  int64_t max_positions = -1;
  std::string max_positions_source;  // what set it, for messages
};

// Reads the convention above from the model's inputs and outputs; the error
// names what is missing or malformed (no input_ids, a past input without its
// present output, a head_dim that is not a number, ...).
KVANT_API Result<DecoderInfo> decoder_info(const OnnxModel& model);

struct DecoderOptions {
  int64_t max_total = 0;  // positions per sequence the cache holds (prompt + new tokens); >= 1
  int64_t batch = 1;      // sequences run together, all the same length
  int threads = 1;
};

// A decoder compiled for this CPU with its key/value cache, allocated once
// for max_total positions of each sequence: forward() appends tokens and runs
// one pass, feeding the cache as past and copying present back into it. The
// same code as `kvant generate` (src/llm/decoder.h). Move-only; like a
// Session, not reentrant: one thread at a time per Decoder.
class KVANT_API Decoder {
 public:
  ~Decoder();
  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;

  // Compiles `model` (the Decoder keeps no reference to it). An error when
  // the model does not follow the convention, the cache would not fit the
  // memory budget, or the model fixes another batch.
  static Result<Decoder> create(const OnnxModel& model, const DecoderOptions& options);

  const DecoderInfo& info() const;
  // No past inputs: every pass reruns the whole sequence (slow).
  bool recomputes() const;
  int64_t length() const;  // positions of each sequence since create() or reset()
  int64_t max_total() const;
  int64_t batch() const;
  // The vocabulary: declared, or learned from the first pass (-1 before).
  int64_t vocab() const;
  size_t cache_bytes() const;

  // Forgets the sequences (the cache is kept, not cleared).
  void reset();
  // Appends `n` ids to each sequence (`ids` is [batch, n] row-major; each in
  // [0, vocab) when the vocabulary is known) and runs one pass. Returns the
  // first sequence's logits of those n positions, [n, vocab] row-major,
  // valid until the next forward() or reset(). An error when a sequence
  // would pass max_total.
  Result<const float*> forward(const int64_t* ids, int64_t n);
  // Sequence b's logits of the last forward's n positions, [n, vocab].
  Result<const float*> logits(int64_t b) const;

 private:
  struct Impl;
  Decoder();
  std::unique_ptr<Impl> impl_;
};

// Choosing the next token from a row of logits: temperature 0 is argmax
// (ties to the lowest id); else softmax(logits / temperature) restricted to
// the top_k largest (0: all), then to the smallest prefix reaching top_p,
// one id drawn from the sampler's own generator (the same ids for a seed on
// every platform).
struct SamplingOptions {
  float temperature = 0.0f;
  int top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

class KVANT_API Sampler {
 public:
  ~Sampler();
  Sampler(Sampler&&) noexcept;
  Sampler& operator=(Sampler&&) noexcept;
  // An error naming the option out of range (temperature < 0, top_k < 0,
  // top_p outside (0, 1]).
  static Result<Sampler> create(const SamplingOptions& options);
  // The next id from `vocab` logits; a NaN logit is an error. Not reentrant.
  Result<int64_t> sample(const float* logits, int64_t vocab);

 private:
  struct Impl;
  Sampler();
  std::unique_ptr<Impl> impl_;
};

// Hugging Face's strided perplexity: windows of `context` tokens every
// `stride` tokens over n tokens; each feeds [begin, end) from an empty cache
// and scores the targets [first_target, end) no earlier window scored.
struct PerplexityWindow {
  int64_t begin = 0, end = 0;
  int64_t first_target = 0;
};
// An error when context < 2, stride < 1, stride > context or n < 2.
KVANT_API Result<std::vector<PerplexityWindow>> perplexity_windows(int64_t n, int64_t context, int64_t stride);
// -log softmax(logits)[target] over one row of `vocab` logits; target in
// [0, vocab) (unchecked, as it runs per token).
KVANT_API double next_token_nll(const float* logits, int64_t vocab, int64_t target);

}  // namespace kvant
