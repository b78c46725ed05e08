// ReduceSum / ReduceMean / ReduceMax on float32, and Where, as arena steps.
//
// Reductions (src/ops/reduce.cc is the reference): after dropping size-1
// dims and merging neighbours, the input must be [outer kept, reduced, inner
// kept] (a reduction over the last axes, the first axes, or a middle run of
// axes: every form the zoo's models use); each output sums in double in the
// reference's order (r ascending), so the results are bit-exact:
//   Sum: float(sum), Mean: float(sum / count), Max: float(max) with NaN
//   propagating (the first NaN met wins, as in the reference).
// Other layouts (reduced axes that are not neighbours) run the reference op
// and copy its result (the plan prints "(reference, copied)").
//
// Where(cond, x, y): out = cond ? x : y over the numpy broadcast of the
// three shapes, any element size; the broadcast loop (outer dims with
// per-operand strides, an inner run) is planned once in infer().
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "ops/op_registry.h"
#include "ops/op_util.h"
#include "runtime/steps_fp32.h"

namespace kvant {

namespace {

class ReduceF32Step : public Step {
 public:
  ReduceF32Step(ReduceOp op, std::vector<int64_t> axes, bool keepdims)
      : op_(op), axes_(std::move(axes)), keepdims_(keepdims) {}
  std::string kernel() const override {
    const char* what = op_ == ReduceOp::kSum    ? "reduce_sum_f32"
                       : op_ == ReduceOp::kMean ? "reduce_mean_f32"
                                                : "reduce_max_f32";
    return simple_ ? what : std::string(what) + " (reference, copied)";
  }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& x = *in[0];
    if (x.dtype() != DType::kFloat32) {
      throw Error(ErrorCode::kInvalidArgument, name + ": needs float32, got " + x.describe());
    }
    const int64_t rank = x.rank();
    std::vector<bool> reduced(static_cast<size_t>(rank), axes_.empty());
    for (int64_t a : axes_) {
      if (a < -rank || a >= rank || (rank == 0 && a != 0 && a != -1)) {
        throw Error(ErrorCode::kInvalidArgument,
                    name + ": axis " + std::to_string(a) + " is out of range for " + x.describe());
      }
      if (rank == 0) continue;
      const auto d = static_cast<size_t>(a < 0 ? a + rank : a);
      if (reduced[d])
        throw Error(ErrorCode::kInvalidArgument, name + ": axis " + std::to_string(a) + " is listed twice");
      reduced[d] = true;
    }
    Shape out_shape;
    for (size_t d = 0; d < reduced.size(); ++d) {
      if (!reduced[d]) {
        out_shape.push_back(x.shape()[d]);
      } else if (keepdims_) {
        out_shape.push_back(1);
      }
    }
    std::vector<std::pair<bool, int64_t>> groups;  // (reduced, size), as the reference's fast path
    for (size_t d = 0; d < reduced.size(); ++d) {
      if (x.shape()[d] == 1) continue;
      if (!groups.empty() && groups.back().first == reduced[d]) {
        groups.back().second *= x.shape()[d];
      } else {
        groups.emplace_back(reduced[d], x.shape()[d]);
      }
    }
    outer_ = len_ = inner_ = 1;
    size_t g = 0;
    if (g < groups.size() && !groups[g].first) outer_ = groups[g++].second;
    if (g < groups.size() && groups[g].first) len_ = groups[g++].second;
    if (g < groups.size() && !groups[g].first) inner_ = groups[g++].second;
    simple_ = g == groups.size() && x.numel() > 0;
    if (!simple_) {
      reference_node_.op_type = op_ == ReduceOp::kSum    ? "ReduceSum"
                                : op_ == ReduceOp::kMean ? "ReduceMean"
                                                         : "ReduceMax";
      reference_node_.name = name;
      reference_node_.inputs = {"x"};
      reference_node_.outputs = {"y"};
      reference_node_.attributes["keepdims"] = int_attr(keepdims_ ? 1 : 0);
      if (!axes_.empty()) reference_node_.attributes["axes"] = ints_attr(axes_);
    }
    out.assign(1, {DType::kFloat32, out_shape});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool* pool) override {
    if (!simple_) {  // attribute axes, as at opset 13 (ReduceSum: 11)
      KernelContext ctx{reference_node_, op_ == ReduceOp::kSum ? 11 : 13, {in[0]}, {}, nullptr};
      ctx.outputs.resize(1);
      find_op("", reference_node_.op_type)->run(ctx);
      std::memcpy(out[0]->raw(), ctx.outputs[0].raw(), ctx.outputs[0].nbytes());
      return;
    }
    const float* x = in[0]->data<float>();
    float* y = out[0]->data<float>();
    const int64_t len = len_, inner = inner_;
    const double count = static_cast<double>(len);
    const bool max = op_ == ReduceOp::kMax;
    const bool mean = op_ == ReduceOp::kMean;
    auto finish = [&](double a) { return static_cast<float>(mean ? a / count : a); };
    parallel_for(pool, outer_, [&](int64_t o0, int64_t o1) {
      for (int64_t o = o0; o < o1; ++o) {
        const float* xo = x + o * len * inner;
        float* yo = y + o * inner;
        if (inner == 1) {
          double a = max ? -std::numeric_limits<double>::infinity() : 0.0;
          if (max) {
            for (int64_t r = 0; r < len && !std::isnan(a); ++r) {
              const double v = static_cast<double>(xo[r]);
              a = std::isnan(v) ? v : std::max(a, v);
            }
          } else {
            for (int64_t r = 0; r < len; ++r) a += static_cast<double>(xo[r]);
          }
          yo[0] = finish(a);
          continue;
        }
        constexpr int64_t kBlock = 256;
        double acc[kBlock];
        for (int64_t j0 = 0; j0 < inner; j0 += kBlock) {
          const int64_t nj = std::min(kBlock, inner - j0);
          std::fill(acc, acc + nj, max ? -std::numeric_limits<double>::infinity() : 0.0);
          for (int64_t r = 0; r < len; ++r) {
            const float* row = xo + r * inner + j0;
            if (max) {
              for (int64_t j = 0; j < nj; ++j) {
                const double v = static_cast<double>(row[j]);
                acc[j] = std::isnan(acc[j]) ? acc[j] : std::isnan(v) ? v : std::max(acc[j], v);
              }
            } else {
              for (int64_t j = 0; j < nj; ++j) acc[j] += static_cast<double>(row[j]);
            }
          }
          for (int64_t j = 0; j < nj; ++j) yo[j0 + j] = finish(acc[j]);
        }
      }
    });
  }

 private:
  ReduceOp op_;
  std::vector<int64_t> axes_;
  bool keepdims_;
  mutable int64_t outer_ = 1, len_ = 1, inner_ = 1;  // planned by infer()
  mutable bool simple_ = false;
  mutable Node reference_node_;
};

class WhereStep : public Step {
 public:
  static constexpr int kMaxRank = 8;
  std::string kernel() const override { return "where"; }
  void infer(std::span<const Tensor* const> in, std::vector<TensorSpec>& out) const override {
    const Tensor& c = *in[0];
    const Tensor& x = *in[1];
    const Tensor& y = *in[2];
    if (c.dtype() != DType::kBool || x.dtype() != y.dtype() || dtype_bits(x.dtype()) < 8 ||
        dtype_bits(x.dtype()) > 64 || x.dtype() == DType::kString) {
      throw Error(ErrorCode::kInvalidArgument, name +
                                                   ": needs a bool condition and two values of one numeric type, got " +
                                                   c.describe() + ", " + x.describe() + ", " + y.describe());
    }
    Shape shape;
    const size_t rank = std::max({c.shape().size(), x.shape().size(), y.shape().size()});
    shape.assign(rank, 1);
    for (const Tensor* t : {&c, &x, &y}) {
      const size_t off = rank - t->shape().size();
      for (size_t d = 0; d < t->shape().size(); ++d) {
        const int64_t v = t->shape()[d];
        int64_t& s = shape[off + d];
        if (v == s || v == 1) continue;
        if (s != 1) {
          throw Error(ErrorCode::kInvalidArgument, name + ": shapes " + c.describe() + ", " + x.describe() + ", " +
                                                       y.describe() + " do not broadcast");
        }
        s = v;
      }
    }
    plan_ = make_broadcast_plan(shape, {c.shape(), x.shape(), y.shape()});
    if (plan_.outer.size() > kMaxRank) {
      throw Error(ErrorCode::kUnsupported, name + ": more than " + std::to_string(kMaxRank) + " broadcast dims");
    }
    elem_ = static_cast<size_t>(dtype_bits(x.dtype()) / 8);
    out.assign(1, {x.dtype(), shape});
  }
  void run(std::span<const Tensor* const> in, std::span<Tensor* const> out, std::byte*, ThreadPool*) override {
    switch (elem_) {
      case 1: walk<uint8_t>(in, *out[0]); break;
      case 2: walk<uint16_t>(in, *out[0]); break;
      case 4: walk<uint32_t>(in, *out[0]); break;
      default: walk<uint64_t>(in, *out[0]); break;
    }
  }

 private:
  template <typename T>
  void walk(std::span<const Tensor* const> in, Tensor& out) const {
    const auto* pc = static_cast<const bool*>(in[0]->raw());
    const auto* px = static_cast<const T*>(in[1]->raw());
    const auto* py = static_cast<const T*>(in[2]->raw());
    auto* po = static_cast<T*>(out.raw());
    if (out.numel() == 0) return;
    const size_t rank = plan_.outer.size();
    int64_t index[kMaxRank] = {}, off[4] = {};
    const int64_t inner = plan_.inner;
    const int64_t s1 = plan_.inner_stride[1], s2 = plan_.inner_stride[2], s3 = plan_.inner_stride[3];
    for (;;) {
      T* o = po + off[0];
      const bool* c = pc + off[1];
      const T* a = px + off[2];
      const T* b = py + off[3];
      if (s1 == 1 && s2 == 1 && s3 == 1) {
        for (int64_t i = 0; i < inner; ++i) o[i] = c[i] ? a[i] : b[i];
      } else {
        for (int64_t i = 0; i < inner; ++i) o[i] = c[i * s1] ? a[i * s2] : b[i * s3];
      }
      size_t d = rank;
      for (; d-- > 0;) {
        ++index[d];
        for (size_t k = 0; k < 4; ++k) off[k] += plan_.outer_strides[k][d];
        if (index[d] < plan_.outer[d]) break;
        for (size_t k = 0; k < 4; ++k) off[k] -= plan_.outer_strides[k][d] * plan_.outer[d];
        index[d] = 0;
      }
      if (d == static_cast<size_t>(-1)) return;
    }
  }

  mutable BroadcastPlan plan_;  // planned by infer()
  mutable size_t elem_ = 4;
};

}  // namespace

std::unique_ptr<Step> make_reduce_f32_step(ReduceOp op, std::vector<int64_t> axes, bool keepdims) {
  return std::make_unique<ReduceF32Step>(op, std::move(axes), keepdims);
}
std::unique_ptr<Step> make_where_step() { return std::make_unique<WhereStep>(); }

}  // namespace kvant
