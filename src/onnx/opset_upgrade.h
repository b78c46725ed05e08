// Upgrading a model's default-domain opset, for features that only a newer
// opset has (blocked DequantizeLinear and int4 types need opset 21; per-axis
// QuantizeLinear/DequantizeLinear need 13).
//
// From 7..12 to 13: passes/upgrade_opset13.cc rewrites every operator whose
// meaning or signature changed (docs/opsets.md lists them).
//
// From 13..20 to 21 the only changes that break old graphs are rewritten:
//   opset 18  Reduce{Max,Min,Mean,Prod,L1,L2,LogSum,LogSumExp,SumSquare}:
//             the `axes` attribute becomes an int64 input;
//   opset 18  Split without a `split` input needs `num_outputs`.
// Every other change in 14..21 adds optional attributes, inputs or types whose
// defaults keep the old meaning. Ops whose meaning changed otherwise (DFT,
// GridSample in opset 20) make the upgrade fail with their name.
#pragma once

#include "ir/graph.h"

namespace kvant {

// Throws Error(kUnsupported) for a model below opset 7 or one using an op
// the upgrade cannot carry over (naming the node).
void upgrade_opset(Model& model, int64_t target = 21);

}  // namespace kvant
