// Concat, Split, Slice, Pad, Expand and Tile as kernel steps, in any dtype of 8 bits or more:
// they copy rows into the arena instead of allocating per run. The checks,
// output shapes and copies are the reference operators' own (ops/tensor.cc,
// ops/gather.cc, ops/pad.cc: concat_shape/concat_into,
// split_sizes/split_into, slice_layout/slice_into, pad_layout/pad_into,
// expand_shape/expand_into, tile_layout/tile_into), so results are identical bytes and bad inputs
// give the reference's errors, naming the node.
#include "ops/op_util.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

// A step that runs a reference op's geometry and copy with its node and opset.
class CopyStep : public Step {
 public:
  CopyStep(const Node& node, int64_t opset) : node_(node), opset_(opset) {}
  std::string kernel() const override { return "copy_" + node_.op_type; }

 protected:
  KernelContext context(std::span<const Tensor* const> in) const {
    KernelContext ctx{node_, opset_, {}, {}, nullptr};
    ctx.inputs.assign(in.begin(), in.end());
    return ctx;
  }
  Node node_;
  int64_t opset_;
};

class ConcatStep : public CopyStep {
 public:
  using CopyStep::CopyStep;
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const KernelContext ctx = context(in);
    out.assign(1, {in[0]->dtype(), concat_shape(ctx)});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const KernelContext ctx = context(in);
    concat_into(ctx, *out[0]);
  }
};

class SplitStep : public CopyStep {
 public:
  using CopyStep::CopyStep;
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const KernelContext ctx = context(in);
    const std::vector<int64_t> sizes = split_sizes(ctx);
    const Tensor& x = *in[0];
    const auto axis = static_cast<size_t>(normalize_axis(ctx, node_.attr_int("axis", 0), x.rank()));
    out.clear();
    for (int64_t s : sizes) {
      Shape shape = x.shape();
      shape[axis] = s;
      out.push_back({x.dtype(), shape});
    }
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const KernelContext ctx = context(in);
    split_into(ctx, split_sizes(ctx), out);
  }
};

class SliceStep : public CopyStep {
 public:
  using CopyStep::CopyStep;
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const KernelContext ctx = context(in);
    out.assign(1, {in[0]->dtype(), slice_layout(ctx).out_shape});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const KernelContext ctx = context(in);
    slice_into(ctx, slice_layout(ctx), *out[0]);
  }
};

class PadStep : public CopyStep {
 public:
  using CopyStep::CopyStep;
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const KernelContext ctx = context(in);
    out.assign(1, {in[0]->dtype(), pad_layout(ctx).out_shape});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const KernelContext ctx = context(in);
    pad_into(ctx, pad_layout(ctx), *out[0]);
  }
};

class ExpandStep : public CopyStep {
 public:
  using CopyStep::CopyStep;
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const KernelContext ctx = context(in);
    out.assign(1, {in[0]->dtype(), expand_shape(ctx)});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const KernelContext ctx = context(in);
    expand_into(ctx, *out[0]);
  }
};

class TileStep : public CopyStep {
 public:
  using CopyStep::CopyStep;
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const KernelContext ctx = context(in);
    out.assign(1, {in[0]->dtype(), tile_layout(ctx).out_shape});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const KernelContext ctx = context(in);
    tile_into(ctx, tile_layout(ctx), *out[0]);
  }
};

}  // namespace

std::unique_ptr<Step> make_copy_step(const Node& node, int64_t opset) {
  if (!node.domain.empty()) return nullptr;
  if (node.op_type == "Concat") return std::make_unique<ConcatStep>(node, opset);
  if (node.op_type == "Split") return std::make_unique<SplitStep>(node, opset);
  if (node.op_type == "Slice") return std::make_unique<SliceStep>(node, opset);
  if (node.op_type == "Pad") return std::make_unique<PadStep>(node, opset);
  if (node.op_type == "Expand" && node.inputs.size() == 2) return std::make_unique<ExpandStep>(node, opset);
  if (node.op_type == "Tile" && node.inputs.size() == 2) return std::make_unique<TileStep>(node, opset);
  return nullptr;
}

}  // namespace kvant
