// Operator table: each ONNX operator kvant runs has one OpDef, whose kernel is
// the plain reference implementation (DESIGN.md §4). Family files
// (elementwise.cc, conv.cc, ...) each define one table; op_table.cc joins
// them, so a lookup miss is a named error and there are no static registrars.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ir/graph.h"

namespace kvant {

// Runs a subgraph (If/Loop bodies) with the calling node's scope visible.
class SubgraphRunner {
 public:
  virtual ~SubgraphRunner() = default;
  // Binds `inputs` to graph.inputs in order and returns graph.outputs.
  virtual std::vector<Tensor> run_subgraph(const Graph& graph, const std::vector<Tensor>& inputs) = 0;
};

// What a kernel sees. Inputs are resolved tensors (nullptr for an omitted
// optional input); the kernel sets every output it produces.
struct KernelContext {
  const Node& node;
  int64_t opset = 0;  // opset version of the node's domain in this model
  std::vector<const Tensor*> inputs;
  std::vector<Tensor> outputs;
  SubgraphRunner* subgraphs = nullptr;

  size_t num_inputs() const { return inputs.size(); }
  bool has_input(size_t i) const { return i < inputs.size() && inputs[i] != nullptr; }
  // The i-th input; throws an Error naming the node when it is missing.
  const Tensor& input(size_t i) const;
  // Sets output i (ignored if the node does not name that output).
  void set_output(size_t i, Tensor t);
  bool wants_output(size_t i) const { return i < node.outputs.size() && !node.outputs[i].empty(); }
  // Throws Error(kInvalidArgument) prefixed with the node's description.
  [[noreturn]] void fail(const std::string& message) const;
  // Throws Error(kUnsupported) prefixed with the node's description.
  [[noreturn]] void unsupported(const std::string& message) const;
};

using KernelFn = void (*)(KernelContext&);

struct OpDef {
  std::string_view op_type;
  std::string_view domain;  // "" = ai.onnx, "com.microsoft" for ORT contrib ops
  KernelFn run;
};

// nullptr when kvant has no such operator.
const OpDef* find_op(std::string_view domain, std::string_view op_type);
std::vector<const OpDef*> all_ops();

// Family tables, each defined in its own file (src/ops/<family>.cc).
std::span<const OpDef> unary_ops();
std::span<const OpDef> binary_ops();
std::span<const OpDef> activation_ops();
std::span<const OpDef> cast_ops();
std::span<const OpDef> conv_ops();
std::span<const OpDef> gemm_ops();
std::span<const OpDef> pool_ops();
std::span<const OpDef> norm_ops();
std::span<const OpDef> resize_ops();
std::span<const OpDef> pad_ops();
std::span<const OpDef> tensor_ops();
std::span<const OpDef> shape_ops();
std::span<const OpDef> gather_ops();
std::span<const OpDef> reduce_ops();
std::span<const OpDef> control_flow_ops();
std::span<const OpDef> rnn_ops();
std::span<const OpDef> quant_ops();
std::span<const OpDef> qlinear_ops();
std::span<const OpDef> contrib_ops();    // com.microsoft (contrib.cc)
std::span<const OpDef> nhwc_ops();       // com.kvant: channels-last Conv and pooling (nhwc.cc)
std::span<const OpDef> detection_ops();  // NonMaxSuppression, RoiAlign, GridSample
std::span<const OpDef> signal_ops();     // DFT, STFT, windows, MelWeightMatrix
std::span<const OpDef> select_ops();     // Unique, Compress, ReverseSequence
std::span<const OpDef> loss_ops();       // NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss

}  // namespace kvant
