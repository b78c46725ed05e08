// Weight-only quantized matmuls compiled without expanding the weights to
// FP32 (steps_wq.cc has the math; kernels/gemm_w4.h the kernels):
//   com.microsoft.MatMulNBits (bits 4)                          => gemm_w4a32, or gemm_w4a8 at accuracy_level 4
//   DequantizeLinear(int4/uint4 const, blocked along K) -> MatMul|Gemm  => gemm_w4a32
//   MatMulNBits (bits 8), DequantizeLinear(int8/uint8 const, symmetric:
//   blocked along K, per output channel or per tensor) -> MatMul|Gemm     => gemv_w8 (int8 rows, blocked scales)
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/gemm_w4.h"
#include "kernels/gemv_w8.h"
#include "runtime/step.h"

namespace kvant {

struct WqGemmParams {
  W4Matrix w;
  std::optional<W8Matrix> w8;     // set: 8-bit weights (w unused)
  std::vector<float> bias;        // N floats or empty
  bool int8_activations = false;  // W4A8 instead of W4A32
  Isa isa = Isa::kRef;
};
std::unique_ptr<Step> make_wq_gemm_step(WqGemmParams params);

// MatMulNBits' B uint8 [N, k_blocks, block / 2] (4-bit codes, low nibble
// first along K), scales [N * k_blocks] and packed uint4 zero points
// [N * ceil(k_blocks / 2)] (null: 8), as W4Matrix. Null when the shapes or
// types do not fit (the reference operator then reports it at run time).
std::optional<W4Matrix> w4_from_matmul_nbits(int64_t K, int64_t N, int64_t block, const Tensor& b, const Tensor& scales,
                                             const Tensor* zero_points);

// DequantizeLinear(q int4/uint4, scale float32, zero_point) with block_size
// `block` along the reduction axis: q [K, N] blocked along axis 0 (MatMul, or
// Gemm without transB) or q [N, K] along axis 1 (trans_b). Null when it is
// not that form (a power-of-two block >= 16 is needed).
std::optional<W4Matrix> w4_from_blocked_dq(const Tensor& q, const Tensor& scale, const Tensor* zero_point, int64_t axis,
                                           int64_t block, bool trans_b);

// 8-bit weights as int8 rows [N, K] with scales (gemv_w8.h), symmetric only
// (zero point 0 for int8, 128 for uint8 and MatMulNBits); null otherwise.
std::optional<W8Matrix> w8_from_matmul_nbits(int64_t K, int64_t N, int64_t block, const Tensor& b, const Tensor& scales,
                                             const Tensor* zero_points);
// q [K, N] (or [N, K] when trans_b) with block_size `block` along K, or
// (block 0) a scale per output channel or one scale.
std::optional<W8Matrix> w8_from_dq(const Tensor& q, const Tensor& scale, const Tensor* zero_point, int64_t axis,
                                   int64_t block, bool trans_b);

}  // namespace kvant
