// The GEMM path of the INT8 convolution (qconv.h has the math) for CPUs with
// vpdpbusd or AMX: the convolution as one GEMM per group over rows of output
// pixels, in NHWC,
//
//   acc[p, m] = sum_k A[p, k] * B[k, m]   with k = (ky * kw + kx) * cin_g + c,
//   A[p, k]   = x[c, oy * sh - pt + ky * dh, ox * sw - pl + kx * dw]  (x_zp outside),
//   B[k, m]   = w[m, c, ky, kx]  (int8, w_zp per column),
//
// by an entry of the INT8 GEMM table (gemm_s8.h: exact, zero points handled
// by its corrections), then requantized per column (layout_u8.h). The input
// is transposed once per image into NHWC rows (int8 inputs flipped to uint8
// with x_zp + 128 on the way); a 1x1 stride-1 unpadded conv reads those rows
// as A directly, others gather A rows per block of pixels (im2col in NHWC: a
// run of cin_g bytes per tap). The output block is requantized into rows and
// transposed into the NCHW planes. Results are bit-identical to the
// reference path: integer accumulation is exact, the requantization the same
// float operations.
//
// Rows in place (7-bit weights on AVX2, NHWC, one group, no weight zero
// point; name qconv_rows_nhwc+<entry>): instead of im2col, the input is
// copied once per image into a padded NHWC image (x_zp's byte around it)
// and the GEMM reads each pixel's taps there in place through one row
// pointer per pixel (gemm_u8s8_segments_requant): a segment per kernel row
// (kw * c_in contiguous bytes) without dilation along W, else one per tap
// (c_in bytes), B's rows in the same order with zero rows padding each run
// to a multiple of 4 bytes (the bytes read past a run meet zero weights).
// Taps that read only padding for every output pixel are dropped with their
// rows of B (they add (x_zp - x_zp) * w = 0), and the padded image covers
// only what the live taps read. KVANT_QCONV_ROWS=0 turns the path off (A/B).
//
// Work: per image, the transpose (split by channel blocks), then items
// (group, block of pixels) over the pool, each slot with its own scratch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/dynamic_quant.h"
#include "kernels/gemm_s8.h"
#include "kernels/layout_u8.h"
#include "kernels/qconv.h"

namespace kvant {

class QConvGemm {
 public:
  // p: validated by QConv; w_zp: c_out values; allowed: the ISA level.
  QConvGemm(const QConvParams& p, const int8_t* weights, const std::vector<int32_t>& w_zp, Isa allowed);

  // Scratch for `slots` slots (64-byte aligned pieces).
  size_t scratch_bytes(int slots) const;

  // x, y: NCHW images (params' types). bias/mult: c_out values; lo/hi the
  // output bounds in the output type.
  void run(const uint8_t* x, uint8_t* y, uint8_t* scratch, int slots, ThreadPool* pool, const int32_t* bias,
           const float* mult, int32_t lo, int32_t hi) const;

  // The dynamic convolution's form (steps_dynconv.cc): x is a uint8 image
  // batch quantized with this call's zero point x_zp (the constructor's
  // p.x_zp is not used: build with x_zp 0), NCHW, and each block's
  // accumulators are dequantized into the float NCHW planes by fq.dequant_t
  // (dynamic_quant.h); with p.nhwc, x and y are NHWC: x's rows are read in
  // place and each block is dequantized into y's rows by fq.dequant, its
  // range then measured by fq.range while the rows are in cache:
  //   y[m, p] = clamp(float(acc[p, m]) * mult[m] + bias[m], lo, hi)
  // bias may be null. Same scratch as run(). ranges (null: not wanted): 4
  // floats per slot, {lo, hi, nan} initialised by the caller, which each
  // slot widens by the values it writes (dequant_t's range, in registers):
  // the next dynamic step's input range.
  void run_dequant(const uint8_t* x, uint8_t x_zp, float* y, uint8_t* scratch, int slots, ThreadPool* pool,
                   const FloatQuantKernel& fq, const float* mult, const float* bias, float lo, float hi,
                   float* ranges) const;

  const char* name() const { return name_.c_str(); }

 private:
  void im2col_rows(const uint8_t* x_nhwc, int g, int p0, int rows, uint8_t fill, uint8_t* out) const;
  // The GEMM's A for group g's output rows p0 .. p0 + rows: the NHWC input
  // rows themselves (direct_: 1x1, stride 1) or their im2col in `cols`,
  // padding read as `fill`; `lda` is set to its row stride.
  const uint8_t* a_rows(const uint8_t* x_nhwc, int g, int p0, int rows, uint8_t fill, uint8_t* cols, int& lda) const;

  void run_rows(const uint8_t* x, uint8_t* y, uint8_t* scratch, int slots, ThreadPool* pool, const int32_t* bias,
                const float* mult, int32_t lo, int32_t hi) const;

  QConvParams p_;
  int cin_g_ = 0, cout_g_ = 0, k_ = 0;
  bool rows_ = false;                 // rows in place (above); packed_[0] then has K = kh * seg_k_
  int seg_k_ = 0;                     // kw * c_in rounded up to 4
  int padded_h_ = 0, padded_w_ = 0;   // the padded image, pixels
  int iy_min_ = 0, ix_min_ = 0;       // the input pixel at padded (0, 0) (negative: padding)
  std::vector<int64_t> seg_offsets_;  // per segment, bytes from a pixel's first live tap
  bool direct_ = false;               // 1x1, stride 1, no padding: A = the NHWC rows
  int block_rows_ = 0;                // output pixels per item
  uint8_t x_fill_ = 0;                // the raw byte of x_zp (after the int8 flip)
  std::vector<PackedB> packed_;       // per group
  const TransposeU8Kernel* transpose_ = nullptr;
  size_t shared_bytes_ = 0, slot_bytes_ = 0;
  std::string name_;
};

}  // namespace kvant
