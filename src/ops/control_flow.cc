// Control flow: If, Loop, Scan. Their bodies are subgraphs run through
// ctx.subgraphs (the executor), which makes the enclosing scopes' values
// visible to the body, so bodies may read outer values by name.
//
//   If(cond): runs then_branch or else_branch (no inputs) and forwards its
//     outputs.
//   Loop(M, cond, v...): body(iteration_num, cond_in, v...) ->
//     (cond_out, v'..., scan_k...).
//       i = 0; c = cond (true when omitted)
//       while (i < M (unbounded when omitted) && c) { c, v = body(i, c, v); collect scans; ++i }
//     Outputs: the final v..., then each scan output stacked along a new
//     axis 0 (one slice per iteration). cond_out is honoured even when the
//     cond input is omitted (as ONNX Runtime does), so such a loop can end.
//   Scan (opset 9+): inputs (state..., scan_input...); body(state..., slice...)
//     -> (state'..., scan_output...). Scan input j is sliced along
//     scan_input_axes[j] (default 0), reversed when scan_input_directions[j]
//     is 1; scan output k is stacked along scan_output_axes[k] (default 0),
//     in reverse iteration order when scan_output_directions[k] is 1.
//   Scan (opset 8): an extra leading batch axis on every input and output
//     (scan axis 1), `directions` instead of scan_input_directions, and an
//     optional first input sequence_lens (only all-full lengths supported).
#include <algorithm>
#include <cstring>
#include <limits>

#include "ir/limits.h"
#include "ops/op_registry.h"
#include "ops/op_util.h"

namespace kvant {

namespace {

size_t element_bytes(const KernelContext& ctx, const Tensor& t) {
  const int bits = dtype_bits(t.dtype());
  if (bits < 8) ctx.unsupported(std::string("slicing or stacking ") + dtype_name(t.dtype()) + " tensors");
  return static_cast<size_t>(bits / 8);
}

// t with `axis` removed, holding index `index` along it.
Tensor slice_axis(const KernelContext& ctx, const Tensor& t, int64_t axis, int64_t index) {
  const size_t bytes = element_bytes(ctx, t);
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < t.rank(); ++i) {
    if (i < axis) outer *= t.dim(i);
    if (i > axis) inner *= t.dim(i);
  }
  const int64_t dim = t.dim(static_cast<int>(axis));
  Shape shape = t.shape();
  shape.erase(shape.begin() + axis);
  Tensor out(t.dtype(), shape);
  const auto* src = static_cast<const std::byte*>(t.raw());
  auto* dst = static_cast<std::byte*>(out.raw());
  const size_t row = static_cast<size_t>(inner) * bytes;
  for (int64_t o = 0; o < outer; ++o) {
    std::memcpy(dst + static_cast<size_t>(o) * row, src + static_cast<size_t>(o * dim + index) * row, row);
  }
  return out;
}

// Stacks equally shaped tensors along a new `axis` (in [0, rank]).
Tensor stack_axis(const KernelContext& ctx, const std::vector<Tensor>& parts, int64_t axis, const char* what) {
  const Tensor& first = parts.front();
  const size_t bytes = element_bytes(ctx, first);
  for (const Tensor& p : parts) {
    if (p.dtype() != first.dtype() || p.shape() != first.shape()) {
      ctx.fail(std::string(what) + " changes from " + first.describe() + " to " + p.describe() + " across iterations");
    }
  }
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < first.rank(); ++i) (i < axis ? outer : inner) *= first.dim(i);
  Shape shape = first.shape();
  shape.insert(shape.begin() + axis, static_cast<int64_t>(parts.size()));
  Tensor out(first.dtype(), shape);
  auto* dst = static_cast<std::byte*>(out.raw());
  const size_t row = static_cast<size_t>(inner) * bytes;
  const size_t count = parts.size();
  for (size_t j = 0; j < count; ++j) {
    const auto* src = static_cast<const std::byte*>(parts[j].raw());
    for (int64_t o = 0; o < outer; ++o) {
      std::memcpy(dst + (static_cast<size_t>(o) * count + j) * row, src + static_cast<size_t>(o) * row, row);
    }
  }
  return out;
}

// An empty stack for a scan output that had no iterations: shape [0, dims...]
// from the body's declared output type when it is fully known, else [0].
Tensor empty_stack(const ValueInfo& declared) {
  const DType dtype = declared.type.dtype == DType::kUndefined ? DType::kFloat32 : declared.type.dtype;
  Shape shape = {0};
  if (declared.type.has_shape) {
    for (const Dim& d : declared.type.dims) shape.push_back(d.known() ? d.value : 0);
  }
  return Tensor(dtype, shape);
}

const Graph& body_attr(const KernelContext& ctx, const char* name) {
  const Graph* g = ctx.node.attr_graph(name);
  if (g == nullptr) ctx.fail(std::string("attribute '") + name + "' (a graph) is missing");
  if (ctx.subgraphs == nullptr) throw Error(ErrorCode::kInternal, ctx.node.describe() + ": no subgraph runner");
  return *g;
}

bool truth(const KernelContext& ctx, const Tensor& t, const char* what) {
  if (t.numel() != 1) ctx.fail(std::string(what) + " must hold one value, got " + t.describe());
  return t.get_as_double(0) != 0.0;
}

void if_op(KernelContext& ctx) {
  const bool cond = truth(ctx, ctx.input(0), "cond");
  const Graph& branch = body_attr(ctx, cond ? "then_branch" : "else_branch");
  std::vector<Tensor> outs = ctx.subgraphs->run_subgraph(branch, {});
  if (outs.size() != ctx.node.outputs.size()) {
    ctx.fail(std::string(cond ? "then_branch" : "else_branch") + " returns " + std::to_string(outs.size()) +
             " values; the node has " + std::to_string(ctx.node.outputs.size()) + " outputs");
  }
  for (size_t i = 0; i < outs.size(); ++i) ctx.set_output(i, std::move(outs[i]));
}

void loop_op(KernelContext& ctx) {
  const Graph& body = body_attr(ctx, "body");
  const size_t carried = ctx.num_inputs() >= 2 ? ctx.num_inputs() - 2 : 0;
  if (body.inputs.size() != carried + 2) {
    ctx.fail("body takes " + std::to_string(body.inputs.size()) + " inputs; expected 2 + " + std::to_string(carried) +
             " loop-carried values");
  }
  if (body.outputs.size() < carried + 1) {
    ctx.fail("body returns " + std::to_string(body.outputs.size()) + " values; expected at least " +
             std::to_string(carried + 1));
  }
  const size_t scans = body.outputs.size() - 1 - carried;
  if (ctx.node.outputs.size() > carried + scans) ctx.fail("the node has more outputs than the body produces");
  int64_t max_trips = std::numeric_limits<int64_t>::max();
  if (ctx.has_input(0)) {
    const Tensor& m = ctx.input(0);
    if (m.numel() != 1 || !is_integer(m.dtype())) ctx.fail("M must be one integer, got " + m.describe());
    max_trips = m.get_as_int64(0);
  }
  bool cond = ctx.has_input(1) ? truth(ctx, ctx.input(1), "cond") : true;
  std::vector<Tensor> state;
  for (size_t i = 0; i < carried; ++i) state.push_back(ctx.input(2 + i));
  std::vector<std::vector<Tensor>> scan_parts(scans);
  std::vector<Tensor> args(carried + 2);
  // A hostile or broken model may never stop: at most max_loop_iterations()
  // (ir/limits.h, --max-loop-iterations), then an error naming the node.
  const int64_t cap = max_loop_iterations();
  for (int64_t iter = 0; iter < max_trips && cond; ++iter) {
    if (iter == cap) {
      ctx.fail("still running after " + std::to_string(cap) +
               " iterations (M = " + (ctx.has_input(0) ? std::to_string(max_trips) : std::string("none")) +
               ", condition still true); raise --max-loop-iterations if the model really needs more");
    }
    args[0] = Tensor::scalar<int64_t>(iter);
    args[1] = Tensor::scalar<bool>(cond);
    for (size_t i = 0; i < carried; ++i) args[2 + i] = std::move(state[i]);
    std::vector<Tensor> outs = ctx.subgraphs->run_subgraph(body, args);
    cond = truth(ctx, outs[0], "body's cond_out");
    for (size_t i = 0; i < carried; ++i) state[i] = std::move(outs[1 + i]);
    for (size_t k = 0; k < scans; ++k) scan_parts[k].push_back(std::move(outs[1 + carried + k]));
  }
  for (size_t i = 0; i < carried; ++i) ctx.set_output(i, std::move(state[i]));
  for (size_t k = 0; k < scans; ++k) {
    if (!ctx.wants_output(carried + k)) continue;
    ctx.set_output(carried + k, scan_parts[k].empty() ? empty_stack(body.outputs[1 + carried + k])
                                                      : stack_axis(ctx, scan_parts[k], 0, "a scan output"));
  }
}

// The opset-9 Scan over explicit state and scan input tensors.
std::vector<Tensor> run_scan(const KernelContext& ctx, const Graph& body, std::vector<Tensor> state,
                             const std::vector<Tensor>& scan_inputs, const std::vector<int64_t>& in_axes,
                             const std::vector<int64_t>& in_dirs, const std::vector<int64_t>& out_axes_attr,
                             const std::vector<int64_t>& out_dirs) {
  const size_t n_state = state.size(), n_in = scan_inputs.size();
  if (body.inputs.size() != n_state + n_in) {
    ctx.fail("body takes " + std::to_string(body.inputs.size()) + " inputs; expected " +
             std::to_string(n_state + n_in));
  }
  if (body.outputs.size() < n_state) ctx.fail("body returns fewer values than there are states");
  const size_t n_out = body.outputs.size() - n_state;
  int64_t length = -1;
  std::vector<int64_t> axes(n_in);
  for (size_t j = 0; j < n_in; ++j) {
    const Tensor& t = scan_inputs[j];
    if (t.rank() == 0) ctx.fail("scan input " + std::to_string(j) + " must have rank >= 1");
    axes[j] = normalize_axis(ctx, j < in_axes.size() ? in_axes[j] : 0, t.rank());
    const int64_t len = t.dim(static_cast<int>(axes[j]));
    if (length >= 0 && len != length) ctx.fail("scan inputs have different sequence lengths");
    length = len;
  }
  if (length < 0) ctx.fail("Scan needs at least one scan input");
  std::vector<std::vector<Tensor>> parts(n_out);
  std::vector<Tensor> args(n_state + n_in);
  for (int64_t t = 0; t < length; ++t) {
    for (size_t i = 0; i < n_state; ++i) args[i] = std::move(state[i]);
    for (size_t j = 0; j < n_in; ++j) {
      const bool reverse = j < in_dirs.size() && in_dirs[j] != 0;
      args[n_state + j] = slice_axis(ctx, scan_inputs[j], axes[j], reverse ? length - 1 - t : t);
    }
    std::vector<Tensor> outs = ctx.subgraphs->run_subgraph(body, args);
    for (size_t i = 0; i < n_state; ++i) state[i] = std::move(outs[i]);
    for (size_t k = 0; k < n_out; ++k) parts[k].push_back(std::move(outs[n_state + k]));
  }
  std::vector<Tensor> results = std::move(state);
  for (size_t k = 0; k < n_out; ++k) {
    if (parts[k].empty()) {
      results.push_back(empty_stack(body.outputs[n_state + k]));
      continue;
    }
    if (k < out_dirs.size() && out_dirs[k] != 0) std::reverse(parts[k].begin(), parts[k].end());
    const int64_t rank = parts[k].front().rank() + 1;
    const int64_t axis = normalize_axis(ctx, k < out_axes_attr.size() ? out_axes_attr[k] : 0, rank);
    results.push_back(stack_axis(ctx, parts[k], axis, "a scan output"));
  }
  return results;
}

void scan_op(KernelContext& ctx) {
  const Graph& body = body_attr(ctx, "body");
  const Node& node = ctx.node;
  const int64_t num_scan_inputs = node.attr_int("num_scan_inputs", -1);
  const size_t first = ctx.opset < 9 ? 1 : 0;  // opset 8: input 0 is sequence_lens
  if (num_scan_inputs <= 0 || ctx.num_inputs() < first + static_cast<size_t>(num_scan_inputs)) {
    ctx.fail("num_scan_inputs " + std::to_string(num_scan_inputs) + " does not fit the node's inputs");
  }
  const size_t n_in = static_cast<size_t>(num_scan_inputs);
  const size_t n_state = ctx.num_inputs() - first - n_in;
  std::vector<Tensor> state, scan_inputs;
  for (size_t i = 0; i < n_state; ++i) state.push_back(ctx.input(first + i));
  for (size_t j = 0; j < n_in; ++j) scan_inputs.push_back(ctx.input(first + n_state + j));
  if (ctx.opset >= 9) {
    std::vector<Tensor> results = run_scan(ctx, body, state, scan_inputs, node.attr_ints("scan_input_axes"),
                                           node.attr_ints("scan_input_directions"), node.attr_ints("scan_output_axes"),
                                           node.attr_ints("scan_output_directions"));
    if (results.size() < node.outputs.size()) ctx.fail("the node has more outputs than the body produces");
    for (size_t i = 0; i < results.size(); ++i) ctx.set_output(i, std::move(results[i]));
    return;
  }
  // Opset 8: run each batch entry separately (scan axis 0 once the batch axis
  // is sliced off), then stack the results along the batch axis.
  const std::vector<int64_t> dirs = node.attr_ints("directions");
  std::vector<Tensor> all = state;
  all.insert(all.end(), scan_inputs.begin(), scan_inputs.end());
  int64_t batch = -1;
  for (const Tensor& t : all) {
    if (t.rank() == 0 || (batch >= 0 && t.dim(0) != batch)) ctx.fail("inputs must share the batch axis 0");
    batch = t.dim(0);
  }
  for (const Tensor& t : scan_inputs) {
    if (t.rank() < 2) ctx.fail("scan inputs need rank >= 2 (batch, sequence, ...)");
  }
  if (ctx.has_input(0)) {
    for (int64_t len : ctx.input(0).to_int64_vector()) {
      if (len != scan_inputs.front().dim(1)) ctx.unsupported("sequence_lens shorter than the sequence");
    }
  }
  std::vector<std::vector<Tensor>> per_batch;
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<Tensor> s, x;
    for (const Tensor& t : state) s.push_back(slice_axis(ctx, t, 0, b));
    for (const Tensor& t : scan_inputs) x.push_back(slice_axis(ctx, t, 0, b));
    per_batch.push_back(run_scan(ctx, body, s, x, {}, dirs, {}, {}));
  }
  for (size_t i = 0; i < node.outputs.size() && !per_batch.empty(); ++i) {
    if (i >= per_batch.front().size()) ctx.fail("the node has more outputs than the body produces");
    std::vector<Tensor> parts;
    for (auto& r : per_batch) parts.push_back(std::move(r[i]));
    ctx.set_output(i, stack_axis(ctx, parts, 0, "a Scan output"));
  }
}

constexpr OpDef kControlFlowOps[] = {
    {"If", "", if_op},
    {"Loop", "", loop_op},
    {"Scan", "", scan_op},
};

}  // namespace

std::span<const OpDef> control_flow_ops() { return kControlFlowOps; }

}  // namespace kvant
