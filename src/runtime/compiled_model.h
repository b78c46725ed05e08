// Compiled execution (DESIGN.md §3): a model turned into a list of steps —
// fused integer kernels for QDQ patterns, fast FP32 kernels, views, and
// reference operators where kvant has no fast kernel yet — with every
// intermediate tensor placed in one arena.
//
// compile() picks kernels and prepacks weights. The memory plan needs the
// input shapes: the first run (or prepare()) with a new set of input shapes
// runs every step once with its own buffers to learn each tensor's shape
// and lifetime, then places them in the arena (memory_plan.h). Later runs
// with the same input shapes allocate nothing when every step is a kernel or
// a view (fallback steps allocate their outputs; the plan lists them).
//
// If/Loop/Scan nodes are steps that run their reference kernels with every
// body compiled as a model of its own (steps_control.cc).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kernels/cpu_features.h"
#include "runtime/step.h"

namespace kvant {

class ReferenceExecutor;

struct CompileOptions {
  int threads = 1;
  Isa isa = Isa::kRef;  // set by default_compile_options() from the CPU and KVANT_ISA
  // Quantized convolution chains in NHWC (passes/nhwc_layout.cc).
  bool nhwc = true;
};
CompileOptions default_compile_options(int threads = 1);

struct PlanStats {
  size_t arena_bytes = 0;    // the arena: every intermediate, with reuse
  size_t tensor_bytes = 0;   // the same tensors without reuse (sum of sizes)
  size_t scratch_bytes = 0;  // largest per-step scratch
  size_t weight_bytes = 0;   // prepacked weights and constants the steps hold
  int kernel_steps = 0, view_steps = 0, fallback_steps = 0;
  int fixed_steps = 0;  // outputs fixed by the input shapes (shape arithmetic): run while planning only
};

class CompiledModel {
 public:
  // `model` is copied; the compiled model does not refer to it afterwards.
  explicit CompiledModel(const Model& model, const CompileOptions& options = default_compile_options());
  ~CompiledModel();
  CompiledModel(const CompiledModel&) = delete;
  CompiledModel& operator=(const CompiledModel&) = delete;

  // Checks the feeds as ReferenceExecutor::run does, plans for their shapes
  // when they differ from the last plan (the planning run then gives the
  // outputs, without a second run unless an observer or the profiler is
  // set), else copies them in and runs; returns copies of the outputs.
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& feeds);
  // The same checks, plan and run, but the outputs stay in place: read them
  // with output(i) until the next run.
  void run_in_place(const std::map<std::string, Tensor>& feeds);

  // The allocation-free interface: prepare() once for the input shapes, then
  // fill input(i), call run(), read output(i).
  void prepare(const std::map<std::string, Shape>& input_shapes);
  Tensor& input(size_t i);
  const Tensor& output(size_t i) const;
  void run();

  // The plan: one line per step (kernel, node, output shape, arena offset),
  // then the totals. Empty stats before the first plan.
  std::string describe_plan() const;

  // Per-step wall time, summed over the runs made while profiling is on
  // (a clock read around each step; off by default).
  void set_profiling(bool on);
  // The `top` steps by time, then the time per kernel kind.
  std::string describe_profile(size_t top = 15) const;
  PlanStats stats() const;
  // For the public API's plan and profile (api/api_session.cc).
  const CompileOptions& options() const { return options_; }
  bool planned() const { return planned_; }
  bool step_fixed(size_t s) const { return s < step_fixed_.size() && step_fixed_[s]; }
  struct Placement {
    bool in_arena = false;
    size_t offset = 0;  // in the arena, when in_arena
    bool view = false;  // shares another value's bytes
  };
  Placement placement(int id) const;
  const std::vector<double>& step_seconds() const { return step_seconds_; }
  int profiled_runs() const { return profiled_runs_; }
  // How many planning runs (prepare(), or a run whose inputs did not fit the
  // last placement) this model has made.
  int plans() const { return plans_; }
  const std::vector<std::unique_ptr<Step>>& steps() const { return steps_; }

  // Called by run() after every step (those skipped because their outputs
  // are already bound included) with the step's index, the names of its
  // outputs and their tensors, valid only during the call (arena bytes that
  // later steps reuse). For debugging (runtime/compare_values.h); costs one
  // branch per step when unset.
  using StepObserver = std::function<void(size_t step, const Step&, const std::vector<std::string>& names,
                                          const std::vector<const Tensor*>& outputs)>;
  void set_observer(StepObserver observer) { observer_ = std::move(observer); }
  // Also for debugging: a value of the plan by index (Step::inputs/outputs):
  // its name, its constant tensor (null when computed) and its planned type
  // and shape (after the first plan).
  struct ValueInfoView {
    const std::string& name;
    const Tensor* constant;
    DType dtype;
    const Shape& shape;
  };
  ValueInfoView value_info(int id) const;
  // Runs step `s` alone on the given inputs (one per Step::inputs entry,
  // null for an omitted one) into new tensors, one per Step::outputs entry
  // (undefined for an unused output); a view step reshapes input 0 to its
  // planned shape. Allocates.
  std::vector<Tensor> run_step_alone(size_t s, const std::vector<const Tensor*>& inputs);

 private:
  struct Value;
  void compile();
  void plan(const std::map<std::string, Tensor>& feeds);
  bool run_on_placement(const std::map<std::string, Tensor>& feeds);
  std::string plan_line(size_t s) const;
  int value_index(const std::string& name);

  Model model_;
  CompileOptions options_;
  std::unique_ptr<ThreadPool> pool_;
  std::vector<std::unique_ptr<Step>> steps_;
  std::vector<Value> values_;
  std::map<std::string, int> value_ids_;
  std::vector<int> input_ids_, output_ids_;
  std::vector<std::vector<const Tensor*>> step_in_;
  std::vector<std::vector<Tensor*>> step_out_;
  std::vector<bool> step_runs_;   // false for views whose storage was bound at plan time, and fixed steps
  std::vector<bool> step_fixed_;  // outputs fixed by the input shapes: evaluated while planning only
  std::shared_ptr<std::byte> arena_;
  std::shared_ptr<std::byte> scratch_;
  std::vector<Shape> planned_input_shapes_;
  bool planned_ = false;
  PlanStats stats_;
  bool profiling_ = false;
  std::vector<double> step_seconds_;
  int profiled_runs_ = 0;
  size_t scratch_capacity_ = 0;
  int plans_ = 0;
  std::vector<TensorSpec> spec_buffer_;
  std::vector<char> changed_buffer_;
  StepObserver observer_;
  void observe(size_t s);
  friend class Compiler;
};

}  // namespace kvant
