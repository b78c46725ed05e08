// FP32 activations times INT8 weights, for weight-bandwidth-bound layers
// (batch-1 RNN recurrences, weight-only INT8 matmuls):
//
//   y[m, n] = scale[n] * sum_k x[m, k] * w[n, k]          (w int8, row n contiguous)
//
// which is DequantizeLinear(w) (symmetric, per output row or per tensor)
// followed by a float matmul, up to float summation order. The weights stay
// int8 in memory (4x less traffic than FP32) and are widened to float in
// registers. AVX2+FMA: four rows at a time, eight k per step, then one
// horizontal sum per row; a scalar path with the same order otherwise.
#pragma once

#include <cstdint>
#include <vector>

namespace kvant {

struct W8Matrix {
  int n = 0, k = 0;
  std::vector<int8_t> w;     // [n, k]
  std::vector<float> scale;  // n values
};

// y[m, :] for m < M; x row stride ldx, y row stride ldy. accumulate: y += ...
void gemv_w8(const W8Matrix& w, const float* x, int ldx, int M, float* y, int ldy, bool accumulate);

}  // namespace kvant
