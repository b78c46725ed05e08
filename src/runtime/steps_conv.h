// Compiled convolution steps (2-D, NCHW): the integer form of
// DQ(x), DQ(W) [, DQ(bias)] -> Conv [-> Relu|Clip] -> Q, and FP32 Conv
// [-> Relu|Clip]. The kernels (src/kernels/qconv.h, sconv.h) need the input
// size, so each step builds its kernel when the plan learns the shapes.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "kernels/conv_shape.h"
#include "kernels/sconv.h"
#include "runtime/steps.h"

namespace kvant {

// A Conv node's attributes, for a 2-D convolution (4-D input and weight).
struct QConvFacts {
  std::vector<int64_t> strides{1, 1}, dilations{1, 1}, pads{0, 0, 0, 0};  // pads: top, left, bottom, right
  std::string auto_pad = "NOTSET";
  int64_t group = 1;
};
// False when the node is not a 2-D Conv kvant compiles (the reference runs it).
bool conv_facts(const Node& node, QConvFacts& facts);
// The kernel geometry for input x [N, C, H, W] and weight [M, C/group, kh,
// kw] (auto_pad resolved); throws kInvalidArgument naming the step on a
// mismatch.
ConvShape conv_shape(const std::string& name, const QConvFacts& facts, const Shape& x, const Shape& w);

// weight: int8 [M, C/group, kh, kw] (uint8 weights already shifted by -128);
// w_scale / w_zp: 1 or M values (w_zp empty = 0); bias: M int32 values in
// the accumulator's scale, or empty. nhwc: x and y are [N, H, W, C] (an
// NhwcConv of the layout pass). nullptr when no kernel fits.
std::unique_ptr<Step> make_qconv_step(const QConvFacts& facts, const QuantScalar& x, const QuantScalar& y,
                                      const std::vector<int8_t>& weight, const Shape& w_shape,
                                      const std::vector<float>& w_scale, const std::vector<int32_t>& w_zp,
                                      const std::vector<int32_t>& bias, const FloatClamp& clamp, Isa isa, int threads,
                                      bool nhwc = false);
// DynamicQuantizeLinear(x) -> ConvInteger(., W const, x_zp, w_zp const) ->
// Cast(float) -> Mul(x_scale * w_scale) [-> Add(bias)] [-> Relu|Clip]
// (steps_dynconv.cc): x quantized per call as the reference
// DynamicQuantizeLinear does, the exact integer convolution, then
// y = float(acc) * (x_scale * w_scale[m]) [+ bias[m]], clamped: bit-exact
// with the simulation.
struct DynamicConvParams {
  QConvFacts facts;
  std::vector<int8_t> weight;  // int8 [M, C/group, kh, kw] (uint8 weights shifted by -128)
  Shape w_shape;
  std::vector<int32_t> w_zp;   // M values (after the same shift) or empty (0)
  std::vector<float> w_scale;  // 1 or M values
  std::vector<float> bias;     // M values or empty
  FloatClamp clamp;
  Isa isa = Isa::kRef;
  int threads = 1;
  // x and y are [N, H, W, C] (an NhwcConvInteger of the layout pass): the
  // GEMM reads x's codes in place and writes y's rows, the float path runs
  // SConvNhwc; no int16 depthwise path (depthwise convs take the float path,
  // or the GEMM past its bound).
  bool nhwc = false;
};
// nullptr when no exact kernel fits (K above the int32 bound; the reference runs it).
std::unique_ptr<Step> make_dynamic_conv_step(DynamicConvParams params);
// When both are dynamic conv steps and the consumer reads the producer's
// output 0: the producer also writes that output's range {lo, hi, nan} as
// output 1 (measured as it writes, block by block) and the consumer reads it
// as input 1 instead of its own range pass over x. The compiler appends the
// value to both; false (nothing changed) for other steps.
bool link_dynamic_conv_range(Step& producer, Step& consumer);
// FP32 Conv [-> Relu|Clip]; with residual, Conv -> Add(other) [-> Relu|Clip]
// as one step: inputs x and other (shaped as the conv's output: the compiler
// fuses only then, infer checks it), y = act(conv(x) + bias + other), the
// Add done in the conv's store (SConv::run's residual). Not for depthwise
// convs. With silu, Conv [-> Relu|Clip] -> SiLU (x * Sigmoid(x), the vmath
// silu of make_silu_step applied in the conv's store, bit-identical to it);
// residual and silu are never both set. With hard_swish (set: the
// HardSigmoid's alpha and beta), Conv [-> Relu|Clip] -> HardSigmoid -> Mul(x)
// by hard_swish_f32 in the store (kernels/sconv.h), bit-identical to the
// x_hard_sigmoid_f32 step (divide6: the HardSwish operator, bit-identical
// to the hard_swish_f32 step); not with residual or silu either. nhwc: x, y (and
// other) are [N, H, W, C] (an NhwcConv of the layout pass;
// kernels/sconv_nhwc.h).
std::unique_ptr<Step> make_sconv_step(const QConvFacts& facts, const Tensor& weight, const Tensor* bias,
                                      const FloatClamp& clamp, int threads, bool residual = false, bool silu = false,
                                      bool nhwc = false, std::optional<HardSwishParams> hard_swish = std::nullopt);

}  // namespace kvant
