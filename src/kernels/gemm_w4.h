// 4-bit weights kept 4-bit in memory, unpacked in registers: the weight-only
// INT4 matmuls of LLM decoders (MatMulNBits, or DequantizeLinear(int4/uint4,
// blocked along K) -> MatMul/Gemm), which are bound by weight bandwidth.
//
// W [N, K] (row n = output n) in blocks of `block` (16, 32, 64, 128...) values
// along K, each with a float scale and a 4-bit zero point:
//   w[n, k] = float(code[n, k] - zero[n, b]) * scale[n, b]     b = k / block
// exactly DequantizeLinear's and MatMulNBits' dequantization (float of the
// integer difference, times the scale: one rounding).
//
// W4A32 (FP32 activations, the default):
//   y[m, n] = bias[n] + sum_k x[m, k] * w[n, k]
// gemm_w4a32_avx512 dequantizes 16 codes per step through a 16-entry table
// (float(i - zero) * scale, one per row and block: the same rounding as
// above); gemm_w4a32_avx2 sums x * code and x per block and adds
// scale * (sum x code - zero * sum x) (AVX2 has no 16-entry float lookup);
// both sum k in lane-parallel partial sums, so they differ from the generic
// entry by float rounding only (tests: 1e-5 of sum |x w|). Decode (M = 1)
// streams 8 (AVX-512) or 4 (AVX2) rows of W at a time; prefill (M > 1)
// takes tiles of 4 x 4 rows of x by rows of W (AVX-512: each unpacked
// weight vector serves 4 rows of x from registers), or on AVX2 (M >= 4)
// dequantizes panels of 4 rows x 512 k exactly into an L1 buffer, reused by
// every row of x (M >= 16: panels of 16 rows x 256 k, transposed, for 6 x 16
// outer-product tiles); the full weight is never expanded.
//
// W4A8 (int8 activations, integer dot products, as llama.cpp's Q4_0 x Q8_0):
//   xs[m, b] = max_{k in b} |x[m, k]| / 127,
//   xq[m, k] = clamp(round_half_even(x[m, k] * (1 / xs[m, b])), -127, 127)  (0 when xs = 0)
//   dot[m, n, b] = sum_{k in b} xq[m, k] * (code[n, k] - zero[n, b])         (exact in int32)
//   acc = 0; for b = 0, 1, ...: acc = fma(float(dot[m, n, b]), xs[m, b] * scale[n, b], acc)
//   y[m, n] = acc + bias[n]
// Activations are quantized once per call by one shared function
// (w4_quantize_x); every entry computes the dot products exactly (codes
// 0..15 as uint8 times int8: vpdpbusd, or vpmaddubsw, whose pair sums stay
// below 2 * 15 * 127 and never saturate, then vpmaddwd) and the float steps
// in the order above, so all entries agree bit for bit.
//
// Packed layout (W4Matrix, made once at compile time by w4_pack):
//   codes  [N, k_padded / 2] bytes, k_padded = k_blocks * block rounded up to
//          32; per 32 values of a row, 16 bytes: byte j holds code j in its low
//          nibble and code j + 16 in its high nibble (so a 16-byte load gives
//          two 16-value vectors in k order). Codes past K hold the zero point.
//   scale  per 8-row group g and block b: scale[(g * k_blocks + b) * 8 + n % 8]
//   zero   likewise (0..15; 8 for symmetric int4), rows past N padded.
// x rows handed to the entries are k_padded long with zeros past K
// (w4_pad_x copies when K is not a multiple of the padded length).
//
// W4A8's layout (codes8, made by w4_interleave; the W4A8 entries read only
// it, the W4A32 ones only codes): rows interleaved by 8-row group, so that
// each dword lane of a 32-byte vector is one row and a single
// vpmaddubsw/vpdpbusd against 4 broadcast activation bytes sums 4 products of
// 8 rows at once (no horizontal reduction per block):
//   codes8 [groups, k_padded / 8, 32] bytes; for group g and chunk c
//          (k = 8c .. 8c+7), byte 4 r + j (r < 8, j < 4) holds code(8g + r,
//          8c + j) in its low nibble and code(8g + r, 8c + 4 + j) in its high
//          nibble. Rows past N hold their (padded) zero point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/cpu_features.h"

namespace kvant {

struct GemmW4A32Kernel;  // gemm_w4_kernels.h
struct GemmW4A8Kernel;

struct W4Matrix {
  int n = 0, k = 0, block = 0;
  int k_blocks = 0;             // ceil(k / block)
  int k_padded = 0;             // k_blocks * block rounded up to 32
  std::vector<uint8_t> codes;   // row layout (W4A32); empty after w4_interleave(w, false)
  std::vector<uint8_t> codes8;  // interleaved layout (W4A8); empty until w4_interleave
  std::vector<float> scale;
  std::vector<uint8_t> zero;

  size_t row_bytes() const { return static_cast<size_t>(k_padded) / 2; }
  size_t param_index(int row, int b) const {
    return (static_cast<size_t>(row / 8) * static_cast<size_t>(k_blocks) + static_cast<size_t>(b)) * 8 +
           static_cast<size_t>(row % 8);
  }
  // Bytes held (codes, scales, zero points).
  size_t bytes() const { return codes.size() + codes8.size() + scale.size() * sizeof(float) + zero.size(); }
};

// Packs W from its codes: code(row, k) in 0..15 for row < n, k < k;
// scale(row, b) and zero(row, b) (0..15) for b < ceil(k / block).
// block: a power of two >= 16.
template <typename Code, typename Scale, typename Zero>
W4Matrix w4_pack(int n, int k, int block, Code&& code, Scale&& scale, Zero&& zero) {
  W4Matrix w;
  w.n = n;
  w.k = k;
  w.block = block;
  w.k_blocks = (k + block - 1) / block;
  w.k_padded = (w.k_blocks * block + 31) / 32 * 32;
  const int groups = (n + 7) / 8;
  w.scale.assign(static_cast<size_t>(groups) * static_cast<size_t>(w.k_blocks) * 8, 0.0f);
  w.zero.assign(w.scale.size(), 8);
  w.codes.assign(static_cast<size_t>(n) * w.row_bytes(), 0);
  for (int row = 0; row < n; ++row) {
    for (int b = 0; b < w.k_blocks; ++b) {
      w.scale[w.param_index(row, b)] = scale(row, b);
      w.zero[w.param_index(row, b)] = static_cast<uint8_t>(zero(row, b));
    }
    uint8_t* bytes = w.codes.data() + static_cast<size_t>(row) * w.row_bytes();
    for (int kk = 0; kk < w.k_padded; ++kk) {
      const int b = kk / block < w.k_blocks ? kk / block : w.k_blocks - 1;
      const int c = kk < k ? static_cast<int>(code(row, kk)) : w.zero[w.param_index(row, b)];
      const int chunk = kk / 32, j = kk % 32;
      uint8_t& byte = bytes[chunk * 16 + j % 16];
      byte = static_cast<uint8_t>(byte | ((c & 15) << (j < 16 ? 0 : 4)));
    }
  }
  return w;
}

// Makes w.codes8 from w.codes (the W4A8 entries' layout, above); drops the
// row layout unless keep_rows (then both W4A32 and W4A8 can run on w).
void w4_interleave(W4Matrix& w, bool keep_rows);

// The first entry `allowed`, the CPU and the build accept (W4A8: and that
// handles `block`).
const GemmW4A32Kernel& gemm_w4a32_pick(Isa allowed);
const GemmW4A8Kernel& gemm_w4a8_pick(Isa allowed, int block);
const char* gemm_w4_name(const GemmW4A32Kernel& kernel);
const char* gemm_w4_name(const GemmW4A8Kernel& kernel);

// x [m, ldx] (k used) -> x rows k_padded long, zero past k, into `out` when
// k != k_padded (returns out), else x itself (ld unchanged).
const float* w4_pad_x(const W4Matrix& w, const float* x, int64_t ldx, int m, float* out, int64_t& ld);
// W4A8's activations: xq [m, k_padded], xs and xsum [m, k_blocks] (the sum
// of each block's xq, for the zero-point term).
void w4_quantize_x(const W4Matrix& w, const float* x, int64_t ldx, int m, int8_t* xq, float* xs, int32_t* xsum);

// y [m, ldy] columns [n0, n1) (n0 a multiple of 8); bias N floats or null.
// x from w4_pad_x (ld k_padded or the caller's). gemm_w4a32 needs w.codes,
// gemm_w4a8 w.codes8 (w4_interleave): an Error (kInvalidArgument) otherwise.
void gemm_w4a32(const GemmW4A32Kernel& kernel, const W4Matrix& w, const float* x, int64_t ldx, int m, float* y,
                int64_t ldy, const float* bias, int n0, int n1);
void gemm_w4a8(const GemmW4A8Kernel& kernel, const W4Matrix& w, const int8_t* xq, const float* xs, const int32_t* xsum,
               int m, float* y, int64_t ldy, const float* bias, int n0, int n1);

}  // namespace kvant
