// Compiled steps for FP32 operators that used to run on reference kernels
// (issue 10, docs/zoo.md finding 5), and the quantized form of a standalone
// BatchNormalization. Each make_* returns the step (the compiler fills in
// its inputs/outputs); the math of each is on top of its .cc file.
#pragma once

#include <memory>
#include <vector>

#include "runtime/steps.h"

namespace kvant {

// BatchNormalization in inference form on float32 [N, C, ...] (steps_norm2.cc):
// y = clamp(x * a[c] + b[c]) with a = scale / sqrt(var + eps) and
// b = B - mean * a computed in double once and rounded to float.
// `channels_last`: the layout pass's NhwcBatchNormalization twin, x [N, H, W, C]
// (channel = last dim), the same expression, so bit-identical to the NCHW step.
std::unique_ptr<Step> make_batchnorm_step(std::vector<float> a, std::vector<float> b, FloatClamp clamp,
                                          bool channels_last = false);

// DQ -> BatchNormalization -> [Relu|Clip] -> Q on codes [N, C, ...]: one
// 256-entry table per channel, tabulated by running the reference ops, so
// it equals the QDQ simulation bit for bit. `tables` holds C * 256 output
// codes (as bytes), indexed by channel * 256 + the input's raw byte; the
// byte lookup kernel of kernels/lookup_u8.h for `isa`.
std::unique_ptr<Step> make_channel_lookup_step(std::vector<uint8_t> tables, int64_t channels, bool x_signed,
                                               bool y_signed, Isa isa);

// LayerNormalization (opset 17) over dims [axis, rank) with constant scale
// and bias broadcast to the normalized shape (steps_norm2.cc).
std::unique_ptr<Step> make_layernorm_axis_step(int64_t axis, float eps, Tensor scale, Tensor bias);

// InstanceNormalization on float32 [N, C, spatial...] with scale and B, C
// values each (steps_norm2.cc; the arithmetic of make_layernorm_axis_step).
std::unique_ptr<Step> make_instancenorm_step(float eps, std::vector<double> scale, std::vector<double> bias);

// The mean and 1 / sqrt(var + eps) of cols floats (population variance),
// in double with the two sums taken as eight interleaved partial sums
// (steps_norm2.cc): the statistics of the normalization steps.
void row_mean_inv_std(const float* x, int64_t cols, double eps, double& mean, double& inv_std);

// GroupNormalization (opset 18: scale and B one value per group; 21: per
// channel) on float32 [N, C, spatial...] with num_groups groups: the
// statistics of each (n, group) over its C / groups channels and spatial
// values (row_mean_inv_std), then y = (x - mean) * inv_std * scale + B in
// double, rounded to float (steps_groupnorm.cc).
std::unique_ptr<Step> make_groupnorm_step(float eps, int64_t groups, bool per_channel, std::vector<double> scale,
                                          std::vector<double> bias);

// AveragePool, 2-D, float32 NCHW (steps_pool2.cc), bit-exact with the
// reference: `node` gives the window.
std::unique_ptr<Step> make_avgpool_f32_step(const Node& node, int64_t opset);

// The layout pass's NhwcMaxPool / NhwcAveragePool (average) on float32
// [N, H, W, C] (steps_pool_nhwc.cc, kernels/pool_nhwc.h), bit-exact with
// the reference; `node` gives the window, `isa` the kernel table's level.
std::unique_ptr<Step> make_pool_nhwc_f32_step(const Node& node, int64_t opset, bool average, Isa isa);

// HardSigmoid y = max(0, min(1, alpha x + beta)); with `times_x`,
// x * HardSigmoid(x) (the Mul of an opset-13 hard swish); HardSwish itself
// is x * max(0, min(1, x / 6 + 0.5)) (steps_act2.cc). Bit-exact.
std::unique_ptr<Step> make_hard_sigmoid_step(float alpha, float beta, bool times_x);
std::unique_ptr<Step> make_hard_swish_step();

// Dropout in inference form whose mask output is read: y = x copied, mask
// all true (bool; opset 10+) (steps_act2.cc).
std::unique_ptr<Step> make_dropout_mask_step(int64_t opset);

// ReduceSum / ReduceMean / ReduceMax on float32 with the axes fixed at
// compile time (empty: all), keepdims; sums in double in the reference's
// order (bit-exact) (steps_reduce.cc).
enum class ReduceOp { kSum, kMean, kMax };
std::unique_ptr<Step> make_reduce_f32_step(ReduceOp op, std::vector<int64_t> axes, bool keepdims);

// Where(cond bool, x, y) of any one element type with broadcasting of all
// three (steps_reduce.cc).
std::unique_ptr<Step> make_where_step();

// ConvTranspose, 2-D, float32 NCHW: weight [C, M/group, KH, KW] (packed
// once), bias M floats or null; `node` gives strides, pads, dilations,
// output_padding, output_shape and auto_pad (steps_convt.cc).
std::unique_ptr<Step> make_conv_transpose_step(const Node& node, const Tensor& weight, const Tensor* bias);

// GRU (steps_gru.cc) with float weights W [dirs, 3H, I], R [dirs, 3H, H],
// B [dirs, 6H] or null; reverse_only for direction "reverse". Inputs X,
// initial_h (optional); outputs Y, Y_h.
std::unique_ptr<Step> make_gru_step(const Tensor& w, const Tensor& r, const Tensor* b, bool reverse_only,
                                    bool linear_before_reset);

// A view with a unit dim inserted at `axis` (insert) or removed from it
// (!insert): a 1-D Conv runs as the 2-D one on [N, C, 1, L] (steps_act2.cc).
std::unique_ptr<Step> make_unit_dim_view_step(int64_t axis, bool insert);

}  // namespace kvant
