#include "ops/op_util.h"

#include <algorithm>

namespace kvant {

int64_t normalize_axis(const KernelContext& ctx, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1)) {
    ctx.fail("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(rank));
  }
  return axis < 0 ? axis + rank : axis;
}

Shape broadcast_shapes(const KernelContext& ctx, const Shape& a, const Shape& b) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      ctx.fail("shapes " + shape_to_string(a) + " and " + shape_to_string(b) + " do not broadcast");
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<int64_t> contiguous_strides(const Shape& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) strides[i - 1] = strides[i] * shape[i];
  return strides;
}

std::vector<int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<int64_t> strides(out.size(), 0);
  const std::vector<int64_t> own = contiguous_strides(in);
  const size_t offset = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) {
    strides[offset + i] = in[i] == 1 ? 0 : own[i];
  }
  return strides;
}

BroadcastPlan make_broadcast_plan(const Shape& out_shape, const std::vector<Shape>& in_shapes) {
  const size_t operands = in_shapes.size() + 1;
  std::vector<std::vector<int64_t>> strides(operands);
  strides[0] = contiguous_strides(out_shape);
  for (size_t k = 1; k < operands; ++k) strides[k] = broadcast_strides(in_shapes[k - 1], out_shape);
  // Merge dims from the innermost outwards: dim d folds into the run below it
  // when, for every operand, stride[d] == stride[d+1] * size[d+1] (0 == 0 too).
  Shape dims;
  std::vector<std::vector<int64_t>> merged(operands);
  for (size_t d = out_shape.size(); d-- > 0;) {
    if (out_shape[d] == 1) continue;  // size-1 dims move no operand
    bool fold = !dims.empty();
    for (size_t k = 0; fold && k < operands; ++k) fold = strides[k][d] == merged[k].back() * dims.back();
    if (fold) {
      dims.back() *= out_shape[d];
      // the merged run keeps the inner stride; nothing else changes
    } else {
      dims.push_back(out_shape[d]);
      for (size_t k = 0; k < operands; ++k) merged[k].push_back(strides[k][d]);
    }
  }
  BroadcastPlan plan;
  plan.outer_strides.resize(operands);
  plan.inner_stride.assign(operands, 0);
  if (dims.empty()) return plan;  // a single element (or none; for_each_index skips a 0-size outer)
  plan.inner = dims.front();
  for (size_t k = 0; k < operands; ++k) plan.inner_stride[k] = merged[k].front();
  for (size_t i = dims.size(); i-- > 1;) {  // back to outermost-first order
    plan.outer.push_back(dims[i]);
    for (size_t k = 0; k < operands; ++k) plan.outer_strides[k].push_back(merged[k][i]);
  }
  return plan;
}

}  // namespace kvant
