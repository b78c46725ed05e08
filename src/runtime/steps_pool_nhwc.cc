// MaxPool and AveragePool twins of the layout pass (NhwcMaxPool,
// NhwcAveragePool: ops/nhwc.cc) on float32 [N, H, W, C], run by the
// channels-last kernels of kernels/pool_nhwc.h, bit-exact with the reference
// (transpose, the NCHW reference pool, transpose back). The window comes from
// the node (strides, pads, auto_pad, dilations, ceil_mode, count_include_pad)
// through the reference's window_geometry, once per input shape.
#include <limits>
#include <optional>

#include "kernels/pool_nhwc.h"
#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "runtime/steps_fp32.h"

namespace kvant {

namespace {

class PoolNhwcF32Step : public Step {
 public:
  PoolNhwcF32Step(const Node& node, int64_t opset, bool average, Isa isa)
      : node_(node), opset_(opset), average_(average), isa_(isa) {}
  std::string kernel() const override {
    return std::string(average_ ? "avgpool_nhwc_f32/" : "maxpool_nhwc_f32/") +
           (pool_ ? pool_->kernel_name() : "pool_nhwc_f32");
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32 || x.rank() != 4) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs float32 NHWC, got " + x.describe());
    }
    KernelContext ctx{node_, opset_, {}, {}, nullptr};
    const std::vector<int64_t> kernel = node_.attr_ints("kernel_shape");
    if (kernel.size() != 2) throw Error(ErrorCode::kInvalidArgument, name + ": needs a 2-D kernel_shape");
    const WindowGeometry g = window_geometry(ctx, {x.dim(1), x.dim(2)}, kernel, node_.attr_int("ceil_mode", 0) != 0);
    const int64_t all[] = {x.dim(0),        x.dim(3),        x.dim(1),       x.dim(2),
                           g.out[0],        g.out[1],        g.kernel[0],    g.kernel[1],
                           g.strides[0],    g.strides[1],    g.dilations[0], g.dilations[1],
                           g.pads_begin[0], g.pads_begin[1], g.pads_end[0],  g.pads_end[1]};
    for (int64_t v : all) {
      if (v < 0 || v > std::numeric_limits<int>::max() / 4) {
        throw Error(ErrorCode::kInvalidArgument, name + ": a size of the pooling window is out of range");
      }
    }
    PoolNhwcShape s;
    s.batch = static_cast<int>(x.dim(0));
    s.c = static_cast<int>(x.dim(3));
    s.h_in = static_cast<int>(x.dim(1));
    s.w_in = static_cast<int>(x.dim(2));
    s.h_out = static_cast<int>(g.out[0]);
    s.w_out = static_cast<int>(g.out[1]);
    s.kh = static_cast<int>(g.kernel[0]);
    s.kw = static_cast<int>(g.kernel[1]);
    s.stride_h = static_cast<int>(g.strides[0]);
    s.stride_w = static_cast<int>(g.strides[1]);
    s.dil_h = static_cast<int>(g.dilations[0]);
    s.dil_w = static_cast<int>(g.dilations[1]);
    s.pad_top = static_cast<int>(g.pads_begin[0]);
    s.pad_left = static_cast<int>(g.pads_begin[1]);
    s.pad_bottom = static_cast<int>(g.pads_end[0]);
    s.pad_right = static_cast<int>(g.pads_end[1]);
    empty_ = x.numel() == 0 || g.out[0] == 0 || g.out[1] == 0;
    if (!empty_ && (!pool_ || !same(pool_->shape(), s))) {
      pool_.emplace(s, average_, node_.attr_int("count_include_pad", 0) != 0, isa_);
    }
    out.assign(1, {DType::kFloat32, {x.dim(0), g.out[0], g.out[1], x.dim(3)}});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    if (empty_) return;
    pool_->run(in[0]->data<float>(), out[0]->data<float>(), pool);
  }

 private:
  static bool same(const PoolNhwcShape& a, const PoolNhwcShape& b) {
    return a.batch == b.batch && a.c == b.c && a.h_in == b.h_in && a.w_in == b.w_in && a.h_out == b.h_out &&
           a.w_out == b.w_out && a.kh == b.kh && a.kw == b.kw && a.stride_h == b.stride_h && a.stride_w == b.stride_w &&
           a.dil_h == b.dil_h && a.dil_w == b.dil_w && a.pad_top == b.pad_top && a.pad_left == b.pad_left &&
           a.pad_bottom == b.pad_bottom && a.pad_right == b.pad_right;
  }

  Node node_;
  int64_t opset_;
  bool average_;
  Isa isa_;
  mutable std::optional<PoolNhwc> pool_;  // set by infer()
  mutable bool empty_ = false;
};

}  // namespace

std::unique_ptr<Step> make_pool_nhwc_f32_step(const Node& node, int64_t opset, bool average, Isa isa) {
  return std::make_unique<PoolNhwcF32Step>(node, opset, average, isa);
}

}  // namespace kvant
