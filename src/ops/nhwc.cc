// kvant's internal channels-last operators (domain "com.kvant"), which the
// layout pass (passes/nhwc_layout.cc) puts in place of 2-D Conv and pooling
// nodes so that chains of them keep their activations in NHWC, the layout
// the integer and float GEMM kernels want:
//
//   NhwcConv(X [N,H,W,C], W [M,C/g,kh,kw], B?)  = T(Conv(T^-1(X), W, B))
//   NhwcConvInteger(X, W, x_zp?, w_zp?)        = T(ConvInteger(T^-1(X), W, x_zp, w_zp))
//   NhwcMaxPool, NhwcAveragePool, NhwcGlobalAveragePool, NhwcGlobalMaxPool,
//   NhwcBatchNormalization (scale, B, mean, var stay 1-D)
//                                               = T(op(T^-1(X)))
// with T = Transpose(perm [0,2,3,1]) and the original node's attributes
// (weights stay in ONNX's OIHW layout), plus `onnx_opset`: the ai.onnx
// opset whose operator they wrap. The reference kernels below are that
// definition: transpose in, run the standard operator, transpose out. They
// are what `--reference` and compile-time folding run; compiled models run
// the NHWC kernels (runtime/steps_conv.cc, steps_elementwise.cc).
#include <cstring>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "ops/strided_copy.h"

namespace kvant {

namespace {

// x [d0, d1, d2, d3] -> y [d0, d2, d3, d1] (to_nhwc) or [d0, d3, d1, d2].
Tensor permute4(const KernelContext& ctx, const Tensor& x, bool to_nhwc) {
  if (x.rank() != 4) ctx.fail("expects a 4-D input, got " + x.describe());
  const Shape& s = x.shape();
  const int64_t perm[4] = {0, to_nhwc ? 2 : 3, to_nhwc ? 3 : 1, to_nhwc ? 1 : 2};
  Shape out_shape(4);
  std::vector<int64_t> strides(4);
  const int64_t in_strides[4] = {s[1] * s[2] * s[3], s[2] * s[3], s[3], 1};
  for (int d = 0; d < 4; ++d) {
    out_shape[static_cast<size_t>(d)] = s[static_cast<size_t>(perm[d])];
    strides[static_cast<size_t>(d)] = in_strides[perm[d]];
  }
  Tensor y(x.dtype(), out_shape);
  strided_copy(static_cast<std::byte*>(y.raw()), static_cast<const std::byte*>(x.raw()), out_shape, strides,
               element_size(ctx, x.dtype()));
  return y;
}

// Runs the standard operator `op_type` on the NCHW form of input 0 and
// returns its outputs in NHWC.
void run_as_nchw(KernelContext& ctx, std::string_view op_type) {
  const OpDef* op = find_op("", op_type);
  if (op == nullptr) ctx.unsupported(std::string("no ") + std::string(op_type) + " operator");
  const Tensor x = permute4(ctx, ctx.input(0), false);
  KernelContext inner{ctx.node, ctx.node.attr_int("onnx_opset", ctx.opset), ctx.inputs, {}, ctx.subgraphs};
  inner.inputs[0] = &x;
  inner.outputs.resize(ctx.node.outputs.size());
  op->run(inner);
  for (size_t i = 0; i < inner.outputs.size(); ++i) {
    if (!inner.outputs[i].defined()) continue;
    ctx.set_output(i, inner.outputs[i].rank() == 4 ? permute4(ctx, inner.outputs[i], true) : inner.outputs[i]);
  }
}

void nhwc_conv(KernelContext& ctx) { run_as_nchw(ctx, "Conv"); }
void nhwc_conv_integer(KernelContext& ctx) { run_as_nchw(ctx, "ConvInteger"); }
void nhwc_max_pool(KernelContext& ctx) { run_as_nchw(ctx, "MaxPool"); }
void nhwc_average_pool(KernelContext& ctx) { run_as_nchw(ctx, "AveragePool"); }
void nhwc_global_average_pool(KernelContext& ctx) { run_as_nchw(ctx, "GlobalAveragePool"); }
void nhwc_global_max_pool(KernelContext& ctx) { run_as_nchw(ctx, "GlobalMaxPool"); }
void nhwc_batch_norm(KernelContext& ctx) { run_as_nchw(ctx, "BatchNormalization"); }

}  // namespace

std::span<const OpDef> nhwc_ops() {
  static const OpDef ops[] = {
      {"NhwcConv", "com.kvant", nhwc_conv},
      {"NhwcConvInteger", "com.kvant", nhwc_conv_integer},
      {"NhwcMaxPool", "com.kvant", nhwc_max_pool},
      {"NhwcAveragePool", "com.kvant", nhwc_average_pool},
      {"NhwcGlobalAveragePool", "com.kvant", nhwc_global_average_pool},
      {"NhwcGlobalMaxPool", "com.kvant", nhwc_global_max_pool},
      {"NhwcBatchNormalization", "com.kvant", nhwc_batch_norm},
  };
  return ops;
}

}  // namespace kvant
