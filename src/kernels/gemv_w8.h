// FP32 activations times INT8 weights, for weight-bandwidth-bound layers
// (batch-1 RNN recurrences, weight-only INT8 matmuls):
//
//   y[m, n] = scale[n] * sum_k x[m, k] * w[n, k]          (w int8, row n contiguous)
//
// which is DequantizeLinear(w) (symmetric, per output row or per tensor)
// followed by a float matmul, up to float summation order. The weights stay
// int8 in memory (4x less traffic than FP32) and are widened to float in
// registers. The kernels are one table (gemv_w8_kernels.h, best first):
// gemv_w8_avx512 (four rows at a time, 16 k per zmm, masked k tail),
// gemv_w8_avx2 (four rows, 8 k per ymm, scalar k tail) and gemv_w8_generic
// (8 partial sums per row, the AVX2 order); each sums k in lane-parallel
// partial sums, then the lanes, so entries differ by float summation order
// only (the tests state the bound).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"

namespace kvant {

struct GemvW8Kernel;  // gemv_w8_kernels.h

// Blocked (block > 0, a multiple of 8): one scale per row and block of
// `block` values along k, y[m, n] = sum_b scale[n, b] * sum_{k in b} x[m, k] w[n, k]
// (the weight-only INT8 export); entries with a row_blocked function only.
struct W8Matrix {
  int n = 0, k = 0;
  int block = 0;             // 0: one scale per row
  std::vector<int8_t> w;     // [n, k]
  std::vector<float> scale;  // n values, or n * ceil(k / block)
};

// The first entry `allowed`, the CPU and the build accept; the default,
// gemv_w8_pick(selected_isa()) picked once.
const GemvW8Kernel& gemv_w8_pick(Isa allowed);
const GemvW8Kernel& gemv_w8_blocked_pick(Isa allowed);  // the first with row_blocked
const GemvW8Kernel& gemv_w8_default();
const char* gemv_w8_name(const GemvW8Kernel& kernel);

// y[m, :] for m < M; x row stride ldx, y row stride ldy. accumulate: y += ...
// A blocked w needs a kernel with row_blocked (gemv_w8_blocked_pick).
// With the default entry, or with `kernel`.
void gemv_w8(const W8Matrix& w, const float* x, int ldx, int M, float* y, int ldy, bool accumulate);
void gemv_w8(const GemvW8Kernel& kernel, const W8Matrix& w, const float* x, int ldx, int M, float* y, int ldy,
             bool accumulate);

}  // namespace kvant
