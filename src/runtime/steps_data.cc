// Data movement and conversion as kernel steps (they write into the arena
// and allocate nothing per run):
//
//   Gather        y[o, n..., i] = x[o, idx[n...], i]    any dtype; idx int32/int64, in [-dim, dim)
//   Gather of DQ  y[o, n..., i] = (q[o, idx[n...], i] - zp[c]) * scale[c]
//                 q a constant int8/uint8 table (an embedding), c its
//                 per-tensor or per-axis channel; only the gathered rows are
//                 dequantized, so the table stays 8-bit in memory. The
//                 product is the one DequantizeLinear computes (float of the
//                 int difference, times the float scale), so the step is
//                 bit-exact against DQ then Gather.
//   Cast          y[i] = convert(x[i])                  Cast's own element rules (ops/cast.cc)
#include <cstring>

#include "ops/op_util.h"
#include "runtime/steps.h"

namespace kvant {

namespace {

// Gather's output shape; throws on a bad axis. Returns outer / dim / inner
// (elements) of x split at the axis.
struct GatherGeometry {
  int64_t outer = 1, dim = 0, inner = 1;
};

GatherGeometry gather_geometry(const std::string& name, const Shape& x, const Shape& idx, int64_t axis, Shape& out) {
  const int64_t rank = static_cast<int64_t>(x.size());
  if (rank == 0) throw Error(ErrorCode::kInvalidArgument, name + ": Gather's data must have rank >= 1");
  if (axis < -rank || axis >= rank) {
    throw Error(ErrorCode::kInvalidArgument,
                name + ": axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  }
  const size_t a = static_cast<size_t>(axis < 0 ? axis + rank : axis);
  GatherGeometry g;
  out.assign(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(a));
  out.insert(out.end(), idx.begin(), idx.end());
  out.insert(out.end(), x.begin() + static_cast<std::ptrdiff_t>(a) + 1, x.end());
  for (size_t i = 0; i < a; ++i) g.outer *= x[i];
  g.dim = x[a];
  for (size_t i = a + 1; i < x.size(); ++i) g.inner *= x[i];
  return g;
}

// Reads index i of an int32/int64 tensor, wrapped and range-checked.
int64_t gather_index(const std::string& name, const Tensor& idx, int64_t i, int64_t dim) {
  const int64_t v = idx.dtype() == DType::kInt64 ? idx.data<int64_t>()[i] : idx.data<int32_t>()[i];
  const int64_t fixed = v < 0 ? v + dim : v;
  if (fixed < 0 || fixed >= dim) {
    throw Error(ErrorCode::kInvalidArgument,
                name + ": index " + std::to_string(v) + " is out of range for a dim of size " + std::to_string(dim));
  }
  return fixed;
}

void check_indices(const std::string& name, const Tensor& idx) {
  if (idx.dtype() != DType::kInt64 && idx.dtype() != DType::kInt32) {
    throw Error(ErrorCode::kInvalidArgument, name + ": Gather's indices must be int32 or int64, got " + idx.describe());
  }
}

class GatherStep : public Step {
 public:
  explicit GatherStep(int64_t axis) : axis_(axis) {}
  std::string kernel() const override { return "gather"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_indices(name, *in[1]);
    Shape s;
    gather_geometry(name, in[0]->shape(), in[1]->shape(), axis_, s);
    out.assign(1, {in[0]->dtype(), s});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const Tensor& x = *in[0];
    const Tensor& idx = *in[1];
    Shape s;
    const GatherGeometry g = gather_geometry(name, x.shape(), idx.shape(), axis_, s);
    if (out[0]->numel() == 0) return;
    const size_t elem = x.nbytes() / static_cast<size_t>(x.numel());
    const size_t row = static_cast<size_t>(g.inner) * elem;
    const auto* src = static_cast<const std::byte*>(x.raw());
    auto* dst = static_cast<std::byte*>(out[0]->raw());
    const int64_t n = idx.numel();
    for (int64_t i = 0; i < n; ++i) {  // check every index before writing
      gather_index(name, idx, i, g.dim);
    }
    for (int64_t o = 0; o < g.outer; ++o) {
      const std::byte* base = src + static_cast<size_t>(o * g.dim) * row;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = gather_index(name, idx, i, g.dim);
        std::memcpy(dst + static_cast<size_t>(o * n + i) * row, base + static_cast<size_t>(j) * row, row);
      }
    }
  }

 private:
  int64_t axis_;
};

// Gather rows of a constant 8-bit table, dequantized as they are copied.
class GatherDequantStep : public Step {
 public:
  GatherDequantStep(Tensor table, int64_t axis, std::vector<float> scale, std::vector<int32_t> zp, int64_t dq_axis)
      : table_(std::move(table)), axis_(axis), scale_(std::move(scale)), zp_(std::move(zp)) {
    Shape s;
    geo_ = gather_geometry("Gather", table_.shape(), {}, axis_, s);
    const int64_t rank = table_.rank();
    const int64_t a = axis_ < 0 ? axis_ + rank : axis_;
    // The channel of element (o, j, i) of the table viewed as [outer, dim, inner].
    if (scale_.size() > 1) {
      const int64_t d = dq_axis < 0 ? dq_axis + rank : dq_axis;
      int64_t stride = 1;  // elements between channel steps, within its part
      if (d > a) {
        for (int64_t k = d + 1; k < rank; ++k) stride *= table_.dim(static_cast<int>(k));
        mode_ = Mode::kInner;
      } else if (d == a) {
        mode_ = Mode::kRow;
      } else {
        for (int64_t k = d + 1; k < a; ++k) stride *= table_.dim(static_cast<int>(k));
        mode_ = Mode::kOuter;
      }
      stride_ = stride;
    }
  }
  std::string kernel() const override { return "gather_dequantize_u8"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    check_indices(name, *in[0]);
    Shape s;
    gather_geometry(name, table_.shape(), in[0]->shape(), axis_, s);
    out.assign(1, {DType::kFloat32, s});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const Tensor& idx = *in[0];
    float* y = out[0]->data<float>();
    const int64_t n = idx.numel();
    const int64_t channels = static_cast<int64_t>(scale_.size());
    for (int64_t i = 0; i < n; ++i) gather_index(name, idx, i, geo_.dim);
    const bool is_signed = table_.dtype() == DType::kInt8;
    const auto* q = static_cast<const uint8_t*>(table_.raw());
    for (int64_t o = 0; o < geo_.outer; ++o) {
      for (int64_t i = 0; i < n; ++i) {
        const int64_t j = gather_index(name, idx, i, geo_.dim);
        const uint8_t* src = q + (o * geo_.dim + j) * geo_.inner;
        float* dst = y + (o * n + i) * geo_.inner;
        int64_t c = 0;
        if (mode_ == Mode::kRow) c = j;
        if (mode_ == Mode::kOuter) c = (o / stride_) % channels;
        for (int64_t k = 0; k < geo_.inner; ++k) {
          if (mode_ == Mode::kInner) c = (k / stride_) % channels;
          const int32_t v = is_signed ? static_cast<int32_t>(static_cast<int8_t>(src[k])) : src[k];
          const int64_t diff = int64_t{v} - zp_[static_cast<size_t>(c)];
          dst[k] = static_cast<float>(diff) * scale_[static_cast<size_t>(c)];
        }
      }
    }
  }

 private:
  enum class Mode { kTensor, kInner, kRow, kOuter };
  Tensor table_;
  int64_t axis_;
  std::vector<float> scale_;
  std::vector<int32_t> zp_;
  GatherGeometry geo_;
  Mode mode_ = Mode::kTensor;
  int64_t stride_ = 1;
};

class CastStep : public Step {
 public:
  explicit CastStep(const Node& node, DType to) : node_(node), to_(to) {}
  std::string kernel() const override { return std::string("cast_to_") + dtype_name(to_); }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    out.assign(1, {to_, in[0]->shape()});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    const Tensor& x = *in[0];
    if (x.numel() == 0) return;
    if (x.dtype() == to_) {
      std::memcpy(out[0]->raw(), x.raw(), x.nbytes());
      return;
    }
    const KernelContext ctx{node_, 0, {}, {}, nullptr};
    cast_elements(ctx, x.dtype(), to_, x.raw(), out[0]->raw(), x.numel());
  }

 private:
  Node node_;
  DType to_;
};

}  // namespace

std::unique_ptr<Step> make_gather_step(int64_t axis) { return std::make_unique<GatherStep>(axis); }

std::unique_ptr<Step> make_gather_dequantize_step(Tensor table, int64_t axis, std::vector<float> scale,
                                                  std::vector<int32_t> zero_point, int64_t dq_axis) {
  return std::make_unique<GatherDequantStep>(std::move(table), axis, std::move(scale), std::move(zero_point), dq_axis);
}

std::unique_ptr<Step> make_cast_step(const Node& node, DType to) { return std::make_unique<CastStep>(node, to); }

}  // namespace kvant
