// compare_values: where the compiled plan departs from the QDQ simulation.
//
// DESIGN.md §2: a compiled quantized model must agree with the reference
// executor (Q/DQ evaluated in float) within one quantization step on every
// output element. When an output does not, this finds the first
// intermediate value that does not: both executors run the same feeds, the
// reference keeps every node output by name, and every output of every
// compiled step is compared with the reference value of the same name.
//
//   8-bit values (the codes between fused integer steps): element-wise code
//   differences; a value departs when any element is more than one step
//   (code) away.
//   Float values: |compiled - reference|, relative to max |reference|; a
//   value departs when that exceeds `float_tolerance`.
//   Layout: a value the layout pass made NHWC (shape [N,H,W,C] where the
//   reference has [N,C,H,W]) is compared element by element through that
//   permutation. Values whose shapes differ otherwise, or that only one
//   executor has (fused intermediates, the layout pass's Transposes), are
//   counted and skipped.
//
// Differences of one step are allowed by §2 but compound through deep
// networks, so they are counted too (`differing`). A difference a step
// inherits from its inputs is told apart from one it makes: each compiled
// step also runs alone on the reference executor's values of its inputs
// (permuted to NHWC where the plan has them so) and that output is compared
// too (`own`). A step whose own output differs is where the compiled plan
// departs from the simulation; the others only carry differences along.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "runtime/compiled_model.h"

namespace kvant {

struct ValueComparison {
  size_t step = 0;     // index in the compiled plan
  std::string kernel;  // the step's kernel ("qconv_im2col_avx2", "fallback Add", ...)
  std::string node;    // the step's (first) node
  std::string value;   // the value's name
  DType dtype = DType::kUndefined;
  Shape shape;        // the compiled value's shape
  bool nhwc = false;  // compared through the NCHW -> NHWC permutation
  int64_t numel = 0;
  int64_t differing = 0;        // elements not equal
  int64_t beyond_one_step = 0;  // 8-bit: |code difference| > 1; float: |diff| > tolerance * max |ref|
  double max_diff = 0;          // 8-bit: in codes; float: absolute
  double max_reference = 0;     // max |reference| (float values)
  bool departs() const { return beyond_one_step > 0; }
};

struct StepComparison {
  ValueComparison inherited;  // the step's output in the compiled run
  bool isolated = false;      // whether the step could run alone on reference inputs
  ValueComparison own;        // its output when run alone on the reference's inputs
  // Earlier steps whose alone-outputs this one read because the reference
  // has no value of that name (e.g. an NHWC conv before the layout pass's
  // Transpose): a difference may come from them.
  std::vector<size_t> through;
};

struct ValueComparisonReport {
  std::vector<StepComparison> values;  // in plan order
  int step_outputs = 0;                // outputs of compiled steps seen
  int unmatched = 0;                   // without a reference value of the same name
  int shape_mismatch = 0;              // same name, shapes neither equal nor NHWC of each other
};

// Runs `model` on `feeds` on both executors and compares every compiled
// step output with the reference value of the same name. Throws Error as
// either executor does (unknown operator, bad feed). Models with control
// flow have no compiled plan: an error.
ValueComparisonReport compare_compiled_to_reference(const Model& model, const std::map<std::string, Tensor>& feeds,
                                                    const CompileOptions& options = default_compile_options(),
                                                    double float_tolerance = 1e-3);

// The comparison of one pair of tensors (exposed for tests). `nhwc`: the
// compiled tensor is the NHWC permutation of the rank-4 reference.
ValueComparison compare_tensors(const Tensor& compiled, const Tensor& reference, bool nhwc, double float_tolerance);

// A human-readable summary: totals, then up to `max_lines` values in plan
// order whose own (isolated) output differs from the reference at all (the
// first one is where to look), or every compared value when `all`.
std::string describe_comparison(const ValueComparisonReport& report, size_t max_lines = 20, bool all = false);

}  // namespace kvant
