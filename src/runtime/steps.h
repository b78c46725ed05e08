// The compiled steps kvant has kernels for, and the small facts the compiler
// passes to them. Each make_* returns the step (the compiler fills in its
// inputs/outputs); the math of each is on top of its .cc file.
#pragma once

#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "kernels/cpu_features.h"
#include "kernels/gemv_w8.h"
#include "kernels/sgemm.h"
#include "runtime/step.h"

namespace kvant {

// A per-tensor quantization of an activation: uint8 or int8.
struct QuantScalar {
  float scale = 1.0f;
  int32_t zero_point = 0;
  bool is_signed = false;
  int32_t qmin() const { return is_signed ? -128 : 0; }
  int32_t qmax() const { return is_signed ? 127 : 255; }
};

// Float output bounds of a fused Relu / Clip (none: +-inf).
struct FloatClamp {
  float lo = -std::numeric_limits<float>::infinity();
  float hi = std::numeric_limits<float>::infinity();
  bool active() const {
    return lo != -std::numeric_limits<float>::infinity() || hi != std::numeric_limits<float>::infinity();
  }
  SgemmActivation activation() const;
};

// Quantized bounds of a clamp under `q`: Q(lo), Q(hi), as QuantizeLinear
// would compute them, intersected with the type's range. Exact because
// rounding after a division by a positive scale is monotone.
void quantized_bounds(const FloatClamp& clamp, const QuantScalar& q, int32_t& qmin, int32_t& qmax);

// QuantizeLinear / DequantizeLinear with one scale and zero point.
std::unique_ptr<Step> make_quantize_step(const QuantScalar& q);
std::unique_ptr<Step> make_dequantize_step(const QuantScalar& q);

// y = clamp(x W + bias): x float [..., K], W constant [K, N] (or [N, K] when
// trans_b), bias N floats or empty.
std::unique_ptr<Step> make_sgemm_step(const Tensor& weight, bool trans_b, std::vector<float> bias, FloatClamp clamp);

// The integer form of DQ(x) x DQ(W) + bias -> [Relu|Clip] -> Q (or no Q:
// float output). weight: int8 [K, N] after any transpose, w_zp per column
// (empty = 0), w_scale 1 or N, bias_q int32 per column (scale x*w) or empty.
struct QGemmParams {
  QuantScalar x;
  std::vector<int8_t> weight;
  int k = 0, n = 0;
  std::vector<int8_t> w_zp;
  std::vector<float> w_scale;
  std::vector<int32_t> bias_q;
  std::optional<QuantScalar> y;  // nullopt: float output
  FloatClamp clamp;
  Isa isa = Isa::kRef;
};
std::unique_ptr<Step> make_qgemm_step(QGemmParams params);

}  // namespace kvant

namespace kvant {

// y_q[i] = table[x_q[i]]: any chain of elementwise unary ops between a DQ and
// a Q, tabulated over the 256 input codes by running the reference ops, so
// it equals the QDQ simulation bit for bit. `table` holds 256 output codes
// (as int32), indexed by the input's byte.
std::unique_ptr<Step> make_lookup_step(const std::vector<int32_t>& table, bool x_signed, bool y_signed,
                                       std::string what, Isa isa);

// DQ(a), DQ(b) -> Add (or Mul) -> [Relu|Clip] -> Q on equal shapes, computed
// with the simulation's float operations per element (bit-exact).
std::unique_ptr<Step> make_qadd_step(const QuantScalar& a, const QuantScalar& b, const QuantScalar& y,
                                     const FloatClamp& clamp, Isa isa, bool multiply = false);

// MaxPool (2-D, NCHW or NHWC, no indices) on quantized codes; valid when
// the DQ before and the Q after share scale and zero point. `node` is the
// MaxPool or NhwcMaxPool (its attributes give the window).
std::unique_ptr<Step> make_qmaxpool_step(const Node& node, int64_t opset, bool is_signed, bool nhwc = false);

// DQ -> GlobalAveragePool -> Q: the mean of the dequantized values per
// channel, summed in float in the reference's order, quantized.
// The same kernel on float32 (NaN handling: comparisons skip NaN, as std::max does).
std::unique_ptr<Step> make_maxpool_f32_step(const Node& node, int64_t opset);

std::unique_ptr<Step> make_qglobal_avgpool_step(const QuantScalar& x, const QuantScalar& y, bool nhwc, Isa isa);

}  // namespace kvant

namespace kvant {

// DynamicQuantizeLinear(x) -> MatMulInteger(., W const) -> Cast -> Mul(x_scale * w_scale)
// [-> Add(bias const)] [-> Relu|Clip]: x quantized per call exactly as the
// reference DynamicQuantizeLinear does, the exact u8s8 GEMM, then
// y = float(acc) * (x_scale * w_scale[n]) + bias[n]: bit-exact with the
// simulation. weight int8 [K, N] (uint8 shifted), w_zp N values or empty.
struct DynamicGemmParams {
  std::vector<int8_t> weight;
  int k = 0, n = 0;
  std::vector<int8_t> w_zp;
  std::vector<float> w_scale;  // 1 or N
  std::vector<float> bias;     // N or empty
  FloatClamp clamp;
  Isa isa = Isa::kRef;
};
std::unique_ptr<Step> make_dynamic_gemm_step(DynamicGemmParams params);

// y = x x B for float x [..., M, K] and float B [..., K, N], neither constant,
// batch dims broadcast: one sgemm per batch (e.g. attention scores).
std::unique_ptr<Step> make_batched_matmul_step(const Node& node);

}  // namespace kvant

namespace kvant {

// How a broadcast binary op walks its output: dims of size 1 dropped and
// neighbouring dims where each operand is broadcast the same way merged;
// dims[0] is the innermost run, sa/sb the operands' element strides per dim
// (0: broadcast). A [N,C,H,W] x [N,C,1,1] product becomes rows of H*W.
// Rank at most 8 (throws otherwise).
struct BroadcastWalk {
  int rank = 0;
  int64_t dims[8] = {}, sa[8] = {}, sb[8] = {};
};
BroadcastWalk plan_broadcast(const Shape& y, const Shape& a, const Shape& b);

enum class BinaryOp { kAdd, kSub, kMul, kDiv };
// y = clamp(a op b) on float32 with broadcasting.
std::unique_ptr<Step> make_binary_step(BinaryOp op, const FloatClamp& clamp);
// "Clamp" (Relu/Clip: y = min(max(x, lo), hi)), "Sigmoid", "Tanh", "Erf", and
// "Neg", "Abs", "Sqrt", "Reciprocal", "Pow" (exponent clamp.hi) with the
// reference's expressions, so bit-identical, on float32.
std::unique_ptr<Step> make_unary_step(const std::string& op, const FloatClamp& clamp);
// Softmax over the last axis (vectorised exp, vmath.h); other axes: reference.
std::unique_ptr<Step> make_softmax_step(const Node& node, int64_t opset);
// GlobalAveragePool on float32 (double sums, as the reference).
std::unique_ptr<Step> make_global_avgpool_f32_step();
// Its NHWC twin (NhwcGlobalAveragePool): x [N, H, W, C] -> [N, 1, 1, C], the
// same double sums in pixel order.
std::unique_ptr<Step> make_global_avgpool_nhwc_f32_step();
// y = (x - mean) / sqrt(var + eps) [* gamma] [+ beta] over the last axis
// (gamma/beta empty: none), steps_norm.cc.
std::unique_ptr<Step> make_layernorm_step(float eps, std::vector<float> gamma, std::vector<float> beta);
// y = (x * (erf(x / divisor) + 1)) * half, steps_norm.cc.
std::unique_ptr<Step> make_gelu_step(float divisor, float half);
// y = x * sigmoid(x), steps_norm.cc.
std::unique_ptr<Step> make_silu_step();
// Transpose (perm empty: reversed axes), steps_transpose.cc; 8-bit matrix
// transposes through layout_u8.h's byte transpose picked for `isa`.
std::unique_ptr<Step> make_transpose_step(std::vector<int64_t> perm, Isa isa);

}  // namespace kvant

namespace kvant {

// LSTM (steps_rnn.cc) with float weights W [dirs, 4H, I], R [dirs, 4H, H],
// B [dirs, 8H] or null; reverse_only for direction "reverse". Inputs X,
// initial_h, initial_c (optional); outputs Y, Y_h, Y_c. r8: the recurrent
// weights as int8 rows with scales, one per direction, or empty.
std::unique_ptr<Step> make_lstm_step(const Tensor& w, const Tensor& r, const Tensor* b, bool reverse_only,
                                     std::vector<W8Matrix> r8);

// Gather (any dtype; indices int32/int64) as a copy into the arena, and
// Gather of DequantizeLinear(constant 8-bit table, scale per tensor or per
// axis[, zero point]): only the gathered rows are dequantized (steps_data.cc).
std::unique_ptr<Step> make_gather_step(int64_t axis);
std::unique_ptr<Step> make_gather_dequantize_step(Tensor table, int64_t axis, std::vector<float> scale,
                                                  std::vector<int32_t> zero_point, int64_t dq_axis);
// Concat, Split, Slice, Pad as copies into the arena with the reference ops'
// semantics (steps_copy.cc); nullptr for other ops.
std::unique_ptr<Step> make_copy_step(const Node& node, int64_t opset);
// Cast to `to` (a numeric type) with Cast's element rules.
std::unique_ptr<Step> make_cast_step(const Node& node, DType to);

// If/Loop/Scan: the reference kernel, with each body run as a compiled model
// of its own (steps_control.cc). The step's inputs are the node's, then the
// computed outer values `captures` its bodies read; the outer constants they
// read (`constants`, e.g. weights shared by both branches of an If) become
// initializers of the bodies, so their kernels prepack them.
struct CompileOptions;
std::unique_ptr<Step> make_control_flow_step(const Node& node, int64_t opset, const Model& parent,
                                             const CompileOptions& options, std::vector<std::string> captures,
                                             std::map<std::string, Tensor> constants);

}  // namespace kvant

namespace kvant {

// Resize (steps_resize.cc): nearest / linear / cubic over the last two axes,
// every coordinate mode but tf_crop_and_resize, bit-exact against the
// reference; float32, and uint8/int8 codes for nearest. nullptr for forms it
// does not take (antialias, axes, keep_aspect_ratio_policy, unknown modes).
std::unique_ptr<Step> make_resize_step(const Node& node, int64_t opset, int threads, Isa isa);

}  // namespace kvant
