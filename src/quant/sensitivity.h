// Per-layer sensitivity (`kvant sensitivity`, and the ranking that
// `kvant quantize --accuracy-target` walks): the task metric
// (quant/task_metric.h) of the model with only one layer quantized, for every
// layer, and optionally with every layer but one quantized.
//
// A layer is a Conv, Gemm or MatMul that the quantizer rewrote in `quantized`
// (static INT8, or weight-only); its quantized form is the small subgraph
// that ends at its output tensor T (the fused Relu/Clip's output, else the
// op's): the Q/DQ of its inputs, the DQ of its weight and bias, the op, the
// activation, the output Q/DQ — exactly the nodes of the fully quantized
// model, so with the same scales (one calibration for all layers).
//
// Only layer i quantized = the FP32 model with layer i's nodes replaced by
// that subgraph. Only the values downstream of the subgraph change: those
// it writes (T, and a quantized input x that other nodes read too, as in the
// QDQ model), and what is computed from them. So the FP32 values are computed
// once per sample and kept, and "only layer i" runs just the subgraph and
// the FP32 nodes downstream of it, fed from the kept values: one partial run
// per layer and sample, not a whole model.
//
// All but layer i (leave_one_out) is the same with the roles swapped: the
// fully quantized model's values are kept, and layer i's FP32 nodes, reading
// the quantized inputs, replace its quantized subgraph.
//
// The result equals quantizing with every other Conv/Gemm/MatMul (and the
// Add/Mul/pool nodes the static quantizer gives their own scales) excluded
// and running the whole model, except where the static quantizer shares one
// range across several tensors (Concat inputs, a MaxPool's input and output):
// there a separate quantization would calibrate a narrower range.
//
// Values kept: what the partial runs read, for as many samples as fit
// `cache_bytes`; more samples are processed in chunks (every partial model
// compiled again per chunk).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"
#include "quant/task_metric.h"

namespace kvant {

struct QuantizedLayer {
  std::string node;  // the Conv/Gemm/MatMul
  std::string op_type;
  std::string tensor;      // where its quantized form ends (T above)
  std::string activation;  // the fused Relu/Clip node, or empty
};

// The Conv/Gemm/MatMul nodes of fp32's main graph that `quantized` computes
// from a DequantizeLinear (same node name), in graph order.
std::vector<QuantizedLayer> quantized_layers(const Model& fp32, const Model& quantized);

struct SensitivityProgress {
  int64_t done = 0, total = 0;  // partial runs (layer x sample)
  std::string layer;            // the layer being measured
  double elapsed_s = 0;
  double remaining_s = -1;  // estimate; -1 before there is one
};

struct SensitivityOptions {
  TaskMetric metric = TaskMetric::kAgreement;
  std::string output;  // the output scored; empty: the first
  bool leave_one_out = false;
  bool reference = false;  // reference executor (Q/DQ simulated in float) instead of compiled kernels
  int threads = 1;
  int64_t max_samples = -1;  // -1: all
  int64_t cache_bytes = 0;   // kept values at most; 0: min(4 GiB, memory budget / 4)
  std::function<void(const SensitivityProgress&)> progress;
  // A user metric (`--metric-cmd`): called with the scored output of every
  // sample of one variant ("fp32", "quantized", or a layer's name), returns
  // one number; it ranks the layers instead of `metric`. First called on the
  // FP32 outputs of the first chunk of samples, before any partial run, so a
  // command that fails does so early.
  std::function<double(const std::vector<std::vector<float>>& outputs, const std::string& variant)> custom_metric;
  bool custom_higher_is_better = true;
};

struct LayerSensitivity {
  QuantizedLayer layer;
  OutputScores only;     // only this layer quantized
  OutputScores all_but;  // all layers but this one (leave_one_out)
  bool measured = false;
  std::string note;                                               // why not measured
  int64_t partial_nodes = 0;                                      // nodes one "only" run executes
  double custom_only = std::numeric_limits<double>::quiet_NaN();  // custom_metric, only this layer quantized
};

struct SensitivityResult {
  TaskMetric metric = TaskMetric::kAgreement;
  std::string output;
  int64_t samples = 0;
  OutputScores fp32;       // the FP32 model against itself (top1/top5 against labels)
  OutputScores quantized;  // the fully quantized model
  double custom_fp32 = std::numeric_limits<double>::quiet_NaN();  // custom_metric, when given
  double custom_quantized = std::numeric_limits<double>::quiet_NaN();
  std::vector<LayerSensitivity> layers;  // most sensitive first (see rank_layers)
  int64_t chunks = 0;
  double seconds = 0;
};

// Most sensitive first: by the "only" metric (custom_only when `custom` is
// +1: higher is better, -1: lower is better), worst first, then by its
// output SQNR, lowest first; unmeasured layers last.
void rank_layers(std::vector<LayerSensitivity>& layers, TaskMetric metric, int custom = 0);

// `labels`: one per sample (empty: none; top1/top5 need them). Throws Error
// on a metric the output cannot give (top1/top5/agreement on an output that
// is not one row of scores), labels of another length than the data, a
// sample the model does not take.
SensitivityResult analyze_sensitivity(const Model& fp32, const Model& quantized,
                                      const std::vector<QuantizedLayer>& layers, SampleSource& eval,
                                      const std::vector<int64_t>& labels, const SensitivityOptions& options);

}  // namespace kvant
