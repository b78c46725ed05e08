// The integer MatMul of two quantized activations (steps_qmatmul.cc).
#pragma once

#include <memory>

#include "runtime/steps.h"

namespace kvant {

// DQ(a) , DQ(b) -> MatMul -> Q, a [..., M, K] and b [..., K, N] both
// computed (uint8 or int8 codes, one scale and zero point each), batch dims
// broadcast: the exact int32 GEMM per batch, requantized as QLinearMatMul
// does, y = clamp(nearbyint(float(acc) * (a.scale * b.scale / y.scale)) + y.zp).
std::unique_ptr<Step> make_qmatmul_step(const QuantScalar& a, const QuantScalar& b, const QuantScalar& y, Isa isa,
                                        int threads);

}  // namespace kvant
