// Round to nearest with MSE-optimal clipping, the cheap baseline of
// weight-only INT4 (issue 12): a group's [min, max] range is shrunk to
// [r * min, r * max] for the r in {1, 0.98, 0.96, ..., 0.5} whose
// round-to-nearest codes reconstruct the group with the least squared error
//   err(r) = sum_i (w_i - (q_i - zp) * scale)^2,  (scale, zp) = choose_qparams(r * min, r * max)
// (the largest r on ties, so r = 1, plain min/max, wins unless clipping
// helps). Clipping the few largest weights of a group buys a finer step for
// all the others; at 4 bits (15 steps) this lowers the weight error of
// Gaussian-like groups by about a fifth. Non-finite values are skipped (they
// only reach here with --allow-nonfinite).
#pragma once

#include <cstdint>

#include "quant/quant_params.h"

namespace kvant {

// values[i * stride] for i < count: in, the group's [lo, hi] (lo <= 0 <= hi);
// out, the clipped range to hand to choose_qparams.
void mse_clip_range(const float* values, int64_t count, int64_t stride, DType storage, Symmetry symmetry, float* lo,
                    float* hi);

}  // namespace kvant
