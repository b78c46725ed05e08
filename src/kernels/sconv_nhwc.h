// FP32 2-D convolution, channels last (NHWC): the same math as SConv
// (sconv.h, ONNX Conv plus a fused bias, activation, optional SiLU epilogue
// and optional residual Add) on x [batch, h_in, w_in, c_in] and
// y [batch, h_out, w_out, c_out]:
//   y[b, oy, ox, o] = act(bias[o] + sum_{c, ky, kx} W[o, c, ky, kx] *
//                         x[b, oy * sh - pt + ky * dh, ox * sw - pl + kx * dw, g * cg + c])
// Weights are given in the ONNX layout [c_out, c_in / group, kh, kw].
//
// Paths (chosen in the constructor, named by kernel_name()):
//   sconv_nhwc_1x1        1x1, stride 1, no padding, group 1: one GEMM
//                         y[B HW, c_out] = x[B HW, c_in] W^T, x read in place
//                         as the GEMM's row-major left operand (sgemm.h's
//                         direct A: no input packing at all), W prepacked once
//                         into the sgemm's 16-column B panels (sgemm_pack_b),
//                         bias, residual and act in the micro-kernel's store;
//   sconv_nhwc_depthwise  group == c_in == c_out: a direct kernel vectorised
//                         across channels (8 per ymm on AVX2), 4 output
//                         pixels at a time, any stride, padding and dilation
//                         (sconv_nhwc_kernels.h's table);
//   sconv_nhwc_im2col     any other conv: per tile of output pixels, the
//                         im2col rows [pixel][ky, kx, c] copied from the
//                         channels-last input (one copy of kw * cg floats per
//                         pixel and kernel row when dil_w == 1 and the row is
//                         inside the input, else cg floats per tap), then the
//                         same GEMM per group.
// Summation order: the 1x1 and depthwise paths compute every output with the
// same FMA chain as SConv's 1x1 and depthwise paths (K blocks of 256 in
// channel order; taps ky, kx ascending from zero, then bias and act), so for
// finite weights they give SConv's bits. The im2col path sums over
// (ky, kx, c) instead of SConv's (c, ky, kx): both are float sums of the same
// K products, so they differ by at most about 2 (K + 1) 2^-24 (sum |w x| +
// |bias| + |residual|) (tests/unit/sconv_nhwc_test.cc checks that bound).
// Kernel rows / columns that read only padding for every output are dropped
// at construction as in SConv (SConv::live_taps, decision 57): the conv runs
// over the hull of the live taps, often the 1x1 path (a dilated ASPP conv on
// a small map), and the name gets "+live-taps"; shape() stays the given one.
// Work is split across the pool by output rows / pixel tiles only, so results
// are bit-identical for any pool size. run() allocates nothing.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "kernels/conv_shape.h"
#include "kernels/sconv.h"
#include "kernels/sgemm.h"

namespace kvant {

struct DwNhwcKernel;  // sconv_nhwc_kernels.h

class SConvNhwc {
 public:
  // As SConv's constructors (shape, ONNX-layout weights, bias or nullptr,
  // act, allowed ISA level, epilogue). Throws kInvalidArgument for an
  // inconsistent shape.
  SConvNhwc(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act,
            SConvEpilogue epilogue = SConvEpilogue::kNone);
  SConvNhwc(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act, Isa allowed,
            SConvEpilogue epilogue = SConvEpilogue::kNone, HardSwishParams hard_swish = {});

  // Scratch for run() with a pool of up to `threads` threads (64-byte
  // aligned); 0 for the 1x1 and depthwise paths.
  size_t scratch_bytes(int threads = kSConvMaxThreads) const;

  // x: [batch, h_in, w_in, c_in], y: [batch, h_out, w_out, c_out]; scratch
  // as SConv::run. residual (nullable, shaped as y, not overlapping it):
  // y = act(conv + bias + residual), as SConv::run. Not for the depthwise
  // path (kInvalidArgument; supports_residual()).
  void run(const float* x, float* y, void* scratch, ThreadPool* pool, const float* residual = nullptr) const;
  bool supports_residual() const { return kind_ != Kind::kDepthwise; }

  const char* kernel_name() const { return name_.c_str(); }
  // The shape given to the constructor (run() may compute a smaller kernel).
  const ConvShape& shape() const { return given_; }

 private:
  enum class Kind { k1x1, kIm2col, kDepthwise };
  void run_1x1(const float* x, float* y, int threads, ThreadPool* pool, const float* residual) const;
  void run_im2col(const float* x, float* y, float* scratch, int threads, ThreadPool* pool, const float* residual) const;
  void run_depthwise(const float* x, float* y, int threads, ThreadPool* pool) const;
  void im2col_tile(const float* xb, int g, int p0, int np, float* dst) const;
  void finish(float* y, int64_t n) const;
  void setup(const float* weights, const float* bias, Isa allowed);  // path choice and packing for shape_

  ConvShape given_;  // as constructed
  ConvShape shape_;  // as run: given_, or its live taps
  SgemmActivation act_;
  const VMathKernel* silu_ = nullptr;
  bool hard_swish_ = false;  // SConvEpilogue::kHardSwish, with hs_
  HardSwishParams hs_;
  bool has_epilogue() const { return silu_ != nullptr || hard_swish_; }
  Kind kind_ = Kind::kIm2col;
  std::string name_;
  const DwNhwcKernel* dw_ = nullptr;
  std::vector<PackedSgemmB> packed_;  // one per group: [K = kh kw cg (ky, kx, c), c_out / group]
  std::vector<float> bias_;           // c_out (zeros when none: depthwise), empty when none (GEMM)
  std::vector<float> dw_weights_;     // depthwise: [kh * kw][c]
  int k_ = 0;                         // GEMM K per group
  int tile_rows_ = 0;                 // im2col: output pixels per tile (multiple of 6)
};

}  // namespace kvant
