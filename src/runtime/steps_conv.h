// Compiled convolution steps (2-D, NCHW): the integer form of
// DQ(x), DQ(W) [, DQ(bias)] -> Conv [-> Relu|Clip] -> Q, and FP32 Conv
// [-> Relu|Clip]. The kernels (src/kernels/qconv.h, sconv.h) need the input
// size, so each step builds its kernel when the plan learns the shapes.
#pragma once

#include <memory>
#include <vector>

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

// weight: int8 [M, C/group, kh, kw] (uint8 weights already shifted by -128);
// w_scale / w_zp: 1 or M values (w_zp empty = 0); bias: M int32 values in
// the accumulator's scale, or empty. nhwc: x and y are [N, H, W, C] (an
// NhwcConv of the layout pass). nullptr when no kernel fits.
std::unique_ptr<Step> make_qconv_step(const QConvFacts& facts, const QuantScalar& x, const QuantScalar& y,
                                      const std::vector<int8_t>& weight, const Shape& w_shape,
                                      const std::vector<float>& w_scale, const std::vector<int32_t>& w_zp,
                                      const std::vector<int32_t>& bias, const FloatClamp& clamp, Isa isa, int threads,
                                      bool nhwc = false);
std::unique_ptr<Step> make_sconv_step(const QConvFacts& facts, const Tensor& weight, const Tensor* bias,
                                      const FloatClamp& clamp, int threads);

}  // namespace kvant
