// Compiled float32 steps for the elementwise operators of detection
// post-processing and control-flow conditions (docs/zoo.md: ssdlite's box
// decoding, the If condition of a scripted model): comparisons to bool,
// Max / Min of two operands, Exp. Each does the reference's float operation
// (src/ops/binary.cc, unary.cc) element by element, so it is bit-exact.
#pragma once

#include <memory>

#include "runtime/step.h"

namespace kvant {

enum class CompareOp { kEqual, kLess, kLessOrEqual, kGreater, kGreaterOrEqual };

// y = a op b (bool) on float32 with numpy broadcasting (NaN compares false,
// except that nothing is equal to it, as in IEEE and the reference).
std::unique_ptr<Step> make_compare_f32_step(CompareOp op);

// Max or Min of two float32 operands with numpy broadcasting; the
// reference's x < y ? y : x (Max) and y < x ? y : x (Min), so a NaN in the
// first operand is kept and one in the second is not.
std::unique_ptr<Step> make_minmax_f32_step(bool max);

// y = exp(x) on float32 (std::exp, as the reference).
std::unique_ptr<Step> make_exp_f32_step();

}  // namespace kvant
