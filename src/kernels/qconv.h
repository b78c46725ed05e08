// Fused INT8 convolution: the integer kernel behind the QDQ pattern
//   DQ(x), DQ(W) [, DQ(bias int32)] -> Conv -> [Relu | Clip] -> QuantizeLinear
// with the semantics of ONNX QLinearConv (src/ops/qlinear.cc is the oracle):
//
//   acc[m, p] = sum_{c, ky, kx} (x[c, p*stride + k*dil - pad] - x_zp) * (w[m, c, ky, kx] - w_zp[m]) + bias[m]  (int32)
//   y[m, p]   = clamp(nearbyint(float(acc) * (x_scale * w_scale[m] / y_scale)) + y_zp, lo, hi)
//
// Padding reads x_zp (contributes 0). nearbyint rounds half to even; the
// multiplier is computed in float exactly as written above. lo/hi are the
// output type's range ([0, 255] or [-128, 127]) intersected with
// [out_min, out_max] (a fused Relu or Clip, in the quantized domain).
//
// Paths, chosen by the constructor from the shape (kernel_name() says which):
//   qconv_ref            Isa::kRef: plain loops.
//   qconv_1x1_gemm_avx2  1x1, stride 1, no padding: NCHW activations [c_in, HW]
//                        are the GEMM's right operand directly: Y[c_out, HW] = W x X.
//   qconv_im2col_avx2    any k/stride/pad/dilation: im2col of a tile of output
//                        positions into scratch, then the same GEMM.
//   qconv_depthwise_avx2 group == c_in == c_out: per-channel multiply-accumulate
//                        over the taps, vectorised across the output width.
//   qconv_grouped_avx2   other groups: the GEMM path once per group.
// 7-bit weights (every |w - w_zp[m]| <= 64, checked at construction; e.g.
// `kvant quantize --reduce-range`): the GEMM paths instead keep activations
// as raw bytes (int8: x ^ 0x80, x_zp + 128) and w' = w - w_zp as int8, and
// use vpmaddubsw (pair sums <= 2*255*64 < 2^15: never saturate), with
//   sum_k (x - x_zp) w' = sum_k x w' - x_zp * sum_k w'
// the second term folded into the bias (padding taps read the raw x_zp byte,
// so they cancel exactly too). Names: qconv_1x1_gemm_u8s7_avx2,
// qconv_im2col_u8s7_avx2, qconv_grouped_u8s7_avx2. Same results bit for bit.
// Otherwise the AVX2 GEMM subtracts both zero points while packing (x - x_zp and
// w - w_zp both lie in [-255, 255], int16) and multiplies with vpmaddwd,
// whose pair sums fit int32: exact with no zero-point correction terms.
//
// Limits: accumulators are int32 (exact while |acc + bias| < 2^31, which
// c_in/group * kh * kw <= 33025 guarantees without bias); AVX2 rounding
// follows MXCSR, like nearbyint (both round half to even by default).
//   qconv_{1x1,im2col}_nhwc+<qgemm entry>  any non-depthwise conv when the
//                        allowed ISA level has vpdpbusd (AVX-VNNI, AVX-512 VNNI)
//                        or AMX, and every one when params.nhwc: the NHWC GEMM
//                        of qconv_gemm.h with the INT8 GEMM table's entry
//                        (8-bit weights, exact).
//   qdw_nhwc_<isa>       depthwise with params.nhwc: qdw_nhwc.h's table,
//                        vectorised across channels.
// Depthwise convs run the AVX2 kernel on every x86 level for now.
//
// run() allocates nothing: the caller passes scratch_bytes() of 64-byte
// aligned scratch. Work is split over at most params.max_threads slots (each
// with its own part of the scratch); every output element is computed the
// same way whatever slot holds it, so results are identical for any pool.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/conv_shape.h"
#include "kernels/cpu_features.h"
#include "runtime/thread_pool.h"

namespace kvant {

class QConvGemm;  // qconv_gemm.h

struct QConvParams {
  ConvShape shape;
  bool x_signed = false;  // activation: uint8 (or int8 when x_signed)
  float x_scale = 1;
  int32_t x_zp = 0;
  bool y_signed = false;  // output: uint8 or int8
  float y_scale = 1;
  int32_t y_zp = 0;
  std::vector<float> w_scale;                     // 1 value (per tensor) or c_out values (per channel)
  std::vector<int32_t> w_zp;                      // empty (all zero), 1, or c_out values; weights are int8
  std::vector<int32_t> bias;                      // empty or c_out int32 values (scale x_scale*w_scale)
  int32_t out_min = -1 << 30, out_max = 1 << 30;  // extra clamp in the quantized output domain
  // x and y in NHWC ([batch, h, w, c]) instead of NCHW: the GEMM path (any
  // ISA, through the GEMM table) or, for depthwise, the NHWC depthwise table.
  bool nhwc = false;
  // Built for QConvGemm::run_dequant (dynamic convs: float output): the
  // in-place rows form (requantized output only) is not used.
  bool dequant = false;
  // Most threads run() will use (scratch is sized for this many); <= 0 means
  // std::thread::hardware_concurrency(). A larger pool just leaves threads idle.
  int max_threads = 0;
};

class QConv {
 public:
  // weights: int8 [c_out, c_in/group, kh, kw] (ONNX layout). Picks the path
  // and kernels the ISA level `isa` allows and prepacks once. Throws
  // kvant::Error (kInvalidArgument) on an inconsistent shape or parameters,
  // kUnsupported for an Isa this CPU or build lacks.
  QConv(const QConvParams& params, const int8_t* weights, Isa isa);
  ~QConv();
  QConv(QConv&&) noexcept;

  size_t scratch_bytes() const;  // per-call scratch the caller provides (64-byte aligned)

  // x: [batch, c_in, h_in, w_in], y: [batch, c_out, h_out, w_out] (NCHW;
  // NHWC when params.nhwc), uint8 or int8 per params. Allocates nothing. pool
  // may be null.
  void run(const void* x, void* y, void* scratch, ThreadPool* pool) const;

  const char* kernel_name() const;

  enum class Path { kRef, kGemm1x1, kIm2col, kDepthwise, kGrouped, kGemmNhwc, kDepthwiseNhwc };
  Path path() const { return path_; }
  const QConvParams& params() const { return p_; }

 private:
  void run_ref(const uint8_t* x, uint8_t* y) const;
  void run_gemm(const uint8_t* x, uint8_t* y, uint8_t* scratch, ThreadPool* pool) const;
  void run_depthwise(const uint8_t* x, uint8_t* y, uint8_t* scratch, ThreadPool* pool) const;
  void run_depthwise_nhwc(const uint8_t* x, uint8_t* y, uint8_t* scratch, ThreadPool* pool) const;

  QConvParams p_;
  Isa isa_;
  Path path_ = Path::kRef;
  int slots_ = 1;
  std::vector<int8_t> weights_;    // original layout (ref path only)
  std::vector<int32_t> w_zp_;      // c_out values
  std::vector<int32_t> bias_;      // c_out values, padded to the packing block
  std::vector<float> multiplier_;  // c_out values, padded
  int32_t lo_ = 0, hi_ = 255;      // output clamp, quantized domain
  // GEMM paths: per group, weights (w - w_zp) as int16 in blocks of rows.
  bool u8s7_ = false;    // 7-bit weight path: packed_w8_, bias_u8s7_, quads_
  bool direct_ = false;  // 1x1, stride 1, no padding: X rows are packed as they are
  int k_ = 0, pairs_ = 0, m_blocks_ = 0, tile_cols_ = 0, tiles_ = 0;
  std::vector<int16_t> packed_w_;  // [group][m_block][pair][kRowBlock][2]
  int quads_ = 0;
  std::vector<int8_t> packed_w8_;   // [group][m_block][quad][kRowBlock][4] of w - w_zp
  std::vector<int32_t> bias_u8s7_;  // bias - x_zp' * sum_k w', padded like bias_
  // Depthwise: per channel the (w - w_zp) tap pairs, and tap offsets.
  std::vector<int32_t> dw_weights_;  // [c][tap pair] as packed int16 pairs
  std::vector<int32_t> dw_offsets_;  // [tap pair][2] offsets into the padded plane
  int dw_rows_ = 0, dw_width_ = 0;   // padded plane: rows, width of one phase
  size_t slot_bytes_ = 0;
  std::unique_ptr<QConvGemm> gemm_;            // kGemmNhwc
  const struct QDwKernel* dw_nhwc_ = nullptr;  // kDepthwiseNhwc
  std::vector<int16_t> dw_nhwc_weights_;
  std::vector<int32_t> dw_nhwc_bias_;  // bias with the x_zp correction
};

}  // namespace kvant
