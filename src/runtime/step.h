// One step of a compiled model: a fused kernel, a view, or a reference
// operator kept as a fallback (DESIGN.md §3). Steps read and write values by
// index into the compiled model's value table; the model binds each index to
// a tensor (in the arena, a constant, a model input) before running.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "runtime/thread_pool.h"

namespace kvant {

struct TensorSpec {
  DType dtype = DType::kUndefined;
  Shape shape;
};

class Step {
 public:
  virtual ~Step() = default;

  // What the plan prints: "qconv_im2col_avx2", "fallback Softmax", ...
  virtual std::string kernel() const = 0;

  enum class Kind {
    kKernel,    // writes outputs into tensors the model binds (arena); allocates nothing
    kView,      // output 0 shares input 0's bytes with another shape (Reshape, Flatten, ...)
    kFallback,  // a reference operator: allocates its own outputs on every run
  };
  virtual Kind kind() const { return Kind::kKernel; }

  // kKernel and kView: output types and shapes for these inputs (all inputs
  // hold values, so shape inputs can be read). Throws Error on a mismatch.
  virtual void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const = 0;
  // Scratch bytes `run` needs for these inputs (64-byte aligned block).
  virtual size_t scratch_bytes(std::span<const Tensor* const> /*in*/) const { return 0; }

  // Whether the outputs depend on the inputs' shapes only, not their values
  // (Shape, Size): such a step, and every deterministic step fed only by
  // constants and such steps, is evaluated once per plan (the plan fixes the
  // input shapes) and never again.
  virtual bool reads_shapes_only() const { return false; }
  // False for steps whose outputs differ between runs with the same inputs
  // (Random*, Bernoulli, Multinomial).
  virtual bool deterministic() const { return true; }

  // Computes the outputs. kKernel steps write into the bound *out[i];
  // kFallback steps assign *out[i]; kView steps are run only when their
  // input's storage changes between runs.
  virtual void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte* scratch,
                   ThreadPool* pool) = 0;

  std::string name;                // the (first) ONNX node it came from
  std::vector<std::string> fused;  // names of every node it implements
  std::vector<int> inputs;         // value indices; -1 for an omitted optional input
  std::vector<int> outputs;        // value indices; -1 for an output nobody needs
};

// A reference operator as a step (src/ops); `opset` of the node's domain.
std::unique_ptr<Step> make_fallback_step(const Node& node, int64_t opset);
// Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout as views; nullptr
// for other ops (or an unsupported form such as Dropout with a mask).
std::unique_ptr<Step> make_view_step(const Node& node, int64_t opset);

}  // namespace kvant
