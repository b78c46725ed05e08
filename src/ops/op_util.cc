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

WindowGeometry window_geometry(const KernelContext& ctx, const Shape& in, const std::vector<int64_t>& kernel,
                               bool ceil_mode) {
  const size_t n = in.size();
  const Node& node = ctx.node;
  WindowGeometry g;
  g.in = in;
  g.kernel = kernel;
  g.strides = node.attr_ints("strides", std::vector<int64_t>(n, 1));
  g.dilations = node.attr_ints("dilations", std::vector<int64_t>(n, 1));
  std::vector<int64_t> pads = node.attr_ints("pads", std::vector<int64_t>(2 * n, 0));
  if (kernel.size() != n) {
    ctx.fail("kernel_shape has " + std::to_string(kernel.size()) + " dims but the input has " + std::to_string(n) +
             " spatial dims");
  }
  if (g.strides.size() != n) ctx.fail("strides must have " + std::to_string(n) + " values");
  if (g.dilations.size() != n) ctx.fail("dilations must have " + std::to_string(n) + " values");
  if (pads.size() != 2 * n) ctx.fail("pads must have " + std::to_string(2 * n) + " values");
  for (size_t i = 0; i < n; ++i) {
    if (kernel[i] < 1) ctx.fail("kernel_shape values must be positive");
    if (g.strides[i] < 1) ctx.fail("strides must be positive");
    if (g.dilations[i] < 1) ctx.fail("dilations must be positive");
    if (pads[i] < 0 || pads[i + n] < 0) ctx.fail("pads must be non-negative");
  }
  const std::string auto_pad = node.attr_string("auto_pad", "NOTSET");
  g.pads_begin.assign(n, 0);
  g.pads_end.assign(n, 0);
  g.out.assign(n, 0);
  for (size_t i = 0; i < n; ++i) {
    const int64_t k_eff = (kernel[i] - 1) * g.dilations[i] + 1;
    const int64_t s = g.strides[i];
    if (auto_pad == "NOTSET") {
      g.pads_begin[i] = pads[i];
      g.pads_end[i] = pads[i + n];
      const int64_t span = in[i] + pads[i] + pads[i + n] - k_eff;
      if (span < 0) ctx.fail("the window does not fit the padded input along spatial dim " + std::to_string(i));
      int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
      if (ceil_mode && (out - 1) * s >= in[i] + pads[i]) --out;
      g.out[i] = out;
    } else if (auto_pad == "VALID") {
      if (in[i] < k_eff) ctx.fail("the window is larger than the input along spatial dim " + std::to_string(i));
      g.out[i] = (in[i] - k_eff) / s + 1;
    } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      g.out[i] = (in[i] + s - 1) / s;
      const int64_t total = std::max<int64_t>(0, (g.out[i] - 1) * s + k_eff - in[i]);
      g.pads_begin[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.pads_end[i] = total - g.pads_begin[i];
    } else {
      ctx.fail("auto_pad '" + auto_pad + "' is not one of NOTSET, SAME_UPPER, SAME_LOWER, VALID");
    }
  }
  return g;
}

void pad_geometry_to_rank(WindowGeometry& g, size_t rank) {
  while (g.in.size() < rank) {
    g.in.insert(g.in.begin(), 1);
    g.kernel.insert(g.kernel.begin(), 1);
    g.strides.insert(g.strides.begin(), 1);
    g.dilations.insert(g.dilations.begin(), 1);
    g.pads_begin.insert(g.pads_begin.begin(), 0);
    g.pads_end.insert(g.pads_end.begin(), 0);
    g.out.insert(g.out.begin(), 1);
  }
}

}  // namespace kvant
