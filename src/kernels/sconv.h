// FP32 2-D convolution, NCHW, ONNX Conv semantics plus a fused bias and
// activation:
//   y[b, o, oy, ox] = act(bias[o] + sum_{c, ky, kx} W[o, c, ky, kx] *
//                         x[b, g * cg + c, oy * sh - pt + ky * dh, ox * sw - pl + kx * dw])
// with g = o / (c_out / group), cg = c_in / group, and x = 0 outside the input.
//
// Paths (chosen in the constructor, named by kernel_name() as
// "<path>/<kernel table entries>", e.g.
// "sconv_im2col/im2col_f32_avx512+sgemm_f32_avx512_12x32"):
//   sconv_1x1          1x1, stride 1, no padding, group 1: y = W X per image,
//                      X's [c_in, HW] rows copied into 16-column panels;
//   sconv_implicit     group 1, strides up to 4, kh kw > 1,
//                      rows wide enough that max_qc * 3 <= w_out (max_qc =
//                      (kw - 1) dil_w / stride_w), entries with b_row_table:
//                      implicit GEMM, no im2col. The input is copied once per
//                      run, zero-padded, into stride_h x stride_w phase
//                      planes per channel (plane (ra, rc) holds the padded
//                      input's rows ra, ra + sh, ... and columns rc, rc + sw,
//                      ...; one plane at stride 1), each wq = w_out + max_qc
//                      wide, so that the im2col row of tap (c, ky, kx) over
//                      the output pixels of the wq-wide grid is one phase
//                      plane read from a fixed offset: the micro-kernel reads
//                      B in place through a table of these row offsets.
//                      Outputs are computed on the grid into a per-thread
//                      tile (max_qc wasted columns per row) and the valid
//                      columns copied out. Same FMAs in the same order as
//                      sconv_im2col;
//   sconv_im2col       any other group-1 conv: im2col of one tile of output
//                      pixels and one K block straight into the panel layout;
//   sconv_group_im2col grouped (not depthwise): the im2col path per group;
//   sconv_depthwise    group == c_in == c_out: a direct kernel over the taps,
//                      a vector of output pixels at a time, from a zero-padded
//                      copy of one input plane, or (in_place entries: AVX2)
//                      from the input plane itself, borders masked
//                      (sconv_kernels.h's table).
// Live taps (any path): kernel rows or columns that read only the padding
// for every output (dilated convs on small planes, e.g. DeepLabV3's ASPP,
// dilation 12..36 on an 8x8 map) are dropped at construction when their
// weights are all finite (0 * inf is NaN): the conv runs over the hull of the
// live taps, kh / kw and the padding cut (only the centre tap on a stride-1
// map of the same size: sconv_1x1); the name gets "+live-taps". Each output
// sums the same products as the full conv less the zero ones, in the same
// order.
// The GEMM paths run W (prepacked once, sgemm_pack_a) against the packed tile
// with sgemm_packed_a_block: per K block of 256, so every output's summation
// order depends only on K, never on the tiling or the thread count.
// Work is split across the ThreadPool by output tiles (image, group, pixel
// tile, row block) or by channels (depthwise); results are bit-identical for
// any pool size. run() allocates nothing.
//
// Epilogue SiLU (SConvEpilogue::kSilu): after bias and activation,
// y = y * sigmoid(y) by the vmath entry of the allowed ISA level (vmath.h),
// applied to each finished output tile (GEMM paths) or plane (depthwise)
// while it is still in cache. vmath's tails take the vector formula, so this
// is bit-identical to one silu_f32 pass over the whole output afterwards.
// Epilogue hard swish (SConvEpilogue::kHardSwish): y = y * max(0, min(1,
// alpha y + beta)), the x * HardSigmoid(x) of exporters before opset 14
// (HardSigmoid -> Mul), by hard_swish_f32 below, the function the
// x_hard_sigmoid_f32 step runs (runtime/steps_act2.cc): the same bits.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "kernels/conv_shape.h"
#include "kernels/sconv_kernels.h"
#include "kernels/sgemm.h"

namespace kvant {

class ThreadPool;    // runtime/thread_pool.h
struct VMathKernel;  // kernels/vmath_kernels.h

// What follows bias and activation in the store (see above).
enum class SConvEpilogue { kNone, kSilu, kHardSwish };
// kHardSwish's HardSigmoid parameters (ONNX's defaults are 0.2, 0.5;
// PyTorch's hardswish exports 1/6, 0.5).
// divide6: the opset-14 HardSwish operator instead, x * max(0, min(1, x / 6
// + 0.5)) (a divide by 6, as the reference does: not alpha = 1/6, whose
// multiply rounds differently); alpha and beta unused.
struct HardSwishParams {
  float alpha = 1.0f / 6.0f;
  float beta = 0.5f;
  bool divide6 = false;
};

// y[i] = x[i] * max(0, min(1, alpha * x[i] + beta)) for i < n (x == y
// allowed): one multiply, one add, two compares and one multiply per value,
// in that order (no FMA), for the conv epilogue and the unfused step alike.
void hard_swish_f32(const float* x, float* y, int64_t n, float alpha, float beta);
// y[i] = x[i] * max(0, min(1, x[i] / 6 + 0.5)): the HardSwish operator
// (opset 14), the reference's operations in its order, for the conv epilogue
// (HardSwishParams::divide6) and the hard_swish_f32 step alike.
void hard_swish_op_f32(const float* x, float* y, int64_t n);
// The epilogue's function for `p`: one of the two above.
inline void hard_swish_f32(const float* x, float* y, int64_t n, const HardSwishParams& p) {
  if (p.divide6) {
    hard_swish_op_f32(x, y, n);
  } else {
    hard_swish_f32(x, y, n, p.alpha, p.beta);
  }
}

// run() uses at most this many scratch slices (threads).
constexpr int kSConvMaxThreads = 8;

class SConv {
 public:
  // weights: float [c_out, c_in / group, kh, kw] (ONNX layout); bias: c_out
  // floats or nullptr; act fused into the store. Prepacks once. Throws
  // kInvalidArgument for an inconsistent shape.
  SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act);
  // Same with the kernels picked for the allowed ISA level (the above uses
  // selected_isa(), read once); entries this CPU cannot run are passed over.
  SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act, Isa allowed);
  // Same with an epilogue after the activation (see above), for the
  // selected_isa() level or the allowed one.
  SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act, SConvEpilogue epilogue);
  SConv(const ConvShape& shape, const float* weights, const float* bias, SgemmActivation act, Isa allowed,
        SConvEpilogue epilogue, HardSwishParams hard_swish = {});

  // Scratch for run() with a pool of up to `threads` threads (64-byte
  // aligned): threads slices, each sized for the largest tile. The default
  // covers any pool (run uses at most kSConvMaxThreads slices).
  size_t scratch_bytes(int threads = kSConvMaxThreads) const;

  // x: [batch, c_in, h_in, w_in], y: [batch, c_out, h_out, w_out]. scratch
  // must hold scratch_bytes(t) for t >= min(pool size, kSConvMaxThreads)
  // (t = 1 when pool is null). pool may be null.
  // residual (nullable, shaped as y, not overlapping y): a residual Add
  // fused into the store, y = act(conv + bias + residual): the same float
  // operations in the same order as act(add(conv + bias, residual)) for
  // every non-NaN value (act as the micro-kernels' epilogue: max(v, lo),
  // so a NaN sum becomes lo, as in the Conv + Relu fusion). Not for the
  // depthwise path (kInvalidArgument; supports_residual()).
  void run(const float* x, float* y, void* scratch, ThreadPool* pool, const float* residual = nullptr) const;
  bool supports_residual() const { return kind_ != Kind::kDepthwise; }

  const char* kernel_name() const { return name_.c_str(); }
  // The shape given to the constructor (run() may compute a smaller kernel:
  // "+live-taps" above).
  const ConvShape& shape() const { return given_; }

  // Dead taps: when some kernel rows or columns read only the padding for
  // every output, reduced gets the conv over the hull of the live ones (kh,
  // kw and the padding cut) and live_weights their weights; false, nothing
  // set, when every tap lives or a dropped weight is not finite.
  static bool live_taps(const ConvShape& s, const float* weights, ConvShape& reduced, std::vector<float>& live_weights);

 private:
  enum class Kind { k1x1, kIm2col, kImplicit, kGroup, kDepthwise };
  void run_gemm(const float* x, float* y, float* scratch, int threads, ThreadPool* pool, const float* residual) const;
  void run_implicit(const float* x, float* y, float* scratch, int threads, ThreadPool* pool,
                    const float* residual) const;
  void run_depthwise(const float* x, float* y, float* scratch, int threads, ThreadPool* pool) const;
  void setup(const float* weights, Isa allowed);  // path choice and prepacking for shape_
  void pack_tile(const float* x, int n0, int nc, int k0, int kl, float* dst) const;
  // The epilogue over n contiguous outputs (in place); nothing without one.
  void finish(float* y, int64_t n) const;

  ConvShape given_;  // as constructed
  ConvShape shape_;  // as run: given_, or its live taps
  SgemmActivation act_;
  const VMathKernel* silu_ = nullptr;  // the epilogue's vmath entry, null for none
  bool hard_swish_ = false;            // kHardSwish, with hs_
  HardSwishParams hs_;
  bool has_epilogue() const { return silu_ != nullptr || hard_swish_; }
  Kind kind_ = Kind::kIm2col;
  const DwConvKernel* dw_ = nullptr;      // depthwise: the table entry
  const Im2colKernel* im2col_ = nullptr;  // im2col paths: the packer entry
  std::string name_;
  std::vector<PackedSgemmA> packed_;  // one per group (GEMM paths)
  std::vector<float> bias_;           // c_out, empty when none
  std::vector<float> dw_weights_;     // depthwise: [c][kh * kw]
  int k_ = 0;                         // GEMM K per group: c_in / group * kh * kw
  int tile_n_ = 0;                    // output pixels per GEMM tile (multiple of 16)
  int dw_wp_ = 0, dw_hp_ = 0;         // depthwise padded plane
  int dw_margin_ = 0;                 // depthwise in place: the zero row's margins
  size_t slice_floats_ = 0;           // scratch floats per thread, multiple of 16
  // Implicit GEMM: the padded planes (hp x wp, plane_ floats apart, batch *
  // c_in of them, pad_floats_ in all, before the per-thread slices) and the
  // B row offsets of the k_ im2col rows.
  int imp_wp_ = 0, imp_hp_ = 0;
  size_t phase_ = 0, plane_ = 0, pad_floats_ = 0;
  std::vector<char> phase_used_;  // per phase plane: read by some tap
  std::vector<int64_t> b_rows_;
};

}  // namespace kvant
