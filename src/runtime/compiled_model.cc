#include "runtime/compiled_model.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <unordered_map>

#include "ir/limits.h"
#include "ops/validate.h"
#include "passes/pass.h"
#include "runtime/executor.h"
#include "runtime/memory_plan.h"

namespace kvant {

namespace {

// KVANT_FP32_NHWC: unset or anything but "0": FP32 convs may run NHWC.
bool fp32_nhwc_enabled() {
  const char* e = std::getenv("KVANT_FP32_NHWC");
  return e == nullptr || std::strcmp(e, "0") != 0;
}

// An FP32 2-D Conv the NHWC SConv kernels run: constant float32 4-D weight
// (and bias), float input.
// Or a GlobalAveragePool, 2-D MaxPool (no Indices) or AveragePool of a
// float input (their twins have FP32 steps: steps_pool_nhwc.cc).
// Or an inference-form BatchNormalization of a float input with constant
// float32 parameters (it joins its group's layout; NhwcBatchNormalization
// runs batchnorm_nhwc_f32: steps_norm2.cc).
bool fp32_conv_for_nhwc(const Graph& g, const Node& n, int64_t opset) {
  if (!n.domain.empty() || n.inputs.empty()) return false;
  auto x = g.value_info.find(n.inputs[0]);
  const ValueInfo* in = g.find_input(n.inputs[0]);
  const DType xt = x != g.value_info.end() ? x->second.type.dtype : in != nullptr ? in->type.dtype : DType::kUndefined;
  if (n.op_type == "GlobalAveragePool") return xt == DType::kFloat32;
  if (n.op_type == "MaxPool" || n.op_type == "AveragePool") {
    const bool indices = n.outputs.size() > 1 && !n.outputs[1].empty();
    return !indices && n.attr_ints("kernel_shape").size() == 2 && xt == DType::kFloat32;
  }
  if (n.op_type == "BatchNormalization") {
    if (n.inputs.size() != 5 || (opset >= 14 && n.attr_int("training_mode", 0) != 0) ||
        (opset < 9 && n.attr_int("spatial", 1) == 0)) {
      return false;
    }
    for (size_t i = 1; i < 5; ++i) {
      auto p = g.initializers.find(n.inputs[i]);
      if (p == g.initializers.end() || p->second.dtype() != DType::kFloat32 || p->second.rank() != 1) return false;
    }
    return xt == DType::kFloat32;
  }
  if (n.op_type != "Conv" || n.inputs.size() < 2) return false;
  auto w = g.initializers.find(n.inputs[1]);
  if (w == g.initializers.end() || w->second.dtype() != DType::kFloat32 || w->second.rank() != 4) return false;
  if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
    auto b = g.initializers.find(n.inputs[2]);
    if (b == g.initializers.end() || b->second.dtype() != DType::kFloat32) return false;
  }
  return xt == DType::kFloat32;
}

// KVANT_DYNAMIC_NHWC: unset or anything but "0": dynamic convs may run NHWC.
bool dynamic_nhwc_enabled() {
  const char* e = std::getenv("KVANT_DYNAMIC_NHWC");
  return e == nullptr || std::strcmp(e, "0") != 0;
}

// A dynamic conv the NHWC dynamic conv step runs (steps_dynconv.cc): a 2-D
// ConvInteger reading a DynamicQuantizeLinear, its weight a constant 8-bit
// [M, C/group, kh, kw] with K = C/group * kh * kw inside the GEMM's exact
// bound (steps_dynconv.cc's kMaxGemmK; a wider one runs on the reference,
// which is no place for NHWC).
bool dynamic_conv_for_nhwc(const Graph& g, const Node& n, const Node* x_producer) {
  if (!n.domain.empty() || n.op_type != "ConvInteger" || n.inputs.size() < 3 || x_producer == nullptr ||
      x_producer->op_type != "DynamicQuantizeLinear" || !x_producer->domain.empty()) {
    return false;
  }
  auto w = g.initializers.find(n.inputs[1]);
  if (w == g.initializers.end() || g.find_input(n.inputs[1]) != nullptr || w->second.rank() != 4) return false;
  if (w->second.dtype() != DType::kInt8 && w->second.dtype() != DType::kUInt8) return false;
  const Shape& s = w->second.shape();
  return s[1] * s[2] * s[3] <= 33025;
}

}  // namespace

struct CompiledModel::Value {
  std::string name;
  Tensor tensor;
  DType dtype = DType::kUndefined;  // planned type and shape (the tensor may be released while planning)
  Shape shape;
  bool constant = false;
  int producer = -1;  // step index, -1 for model inputs and constants
  int last_use = -1;
  int root = -1;  // for a view: the value whose bytes it shares
  bool in_arena = false;
  size_t offset = 0;
  size_t extent = 0;  // bytes placed at `offset` (a later run may use up to this many there)
};

CompileOptions default_compile_options(int threads) {
  CompileOptions options;
  options.threads = threads;
  options.isa = selected_isa();
  return options;
}

namespace {

// Errors of a step name its node, once.
[[noreturn]] void rethrow_naming(const Step& step) {
  const std::string who = "node \"" + printable(step.name) + "\"";
  try {
    throw;
  } catch (const Error& e) {
    const std::string message = e.what();
    if (message.find(who) != std::string::npos) throw;
    throw Error(e.code(), who + ": " + message);
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::kInvalidArgument, who + ": out of memory");
  }
}

// Arena and scratch blocks, counted against the memory budget (ir/limits.h)
// while they live.
std::shared_ptr<std::byte> allocate_block(size_t bytes, const char* what) {
  const size_t size = std::max<size_t>(64, (bytes + 63) / 64 * 64);
  const auto budgeted = static_cast<int64_t>(size);
  reserve_memory(budgeted, what);
  void* p = std::aligned_alloc(64, size);
  if (p == nullptr) {
    release_memory(budgeted);
    throw Error(ErrorCode::kInvalidArgument,
                std::string("out of memory allocating ") + describe_bytes(budgeted) + " for " + what);
  }
  std::memset(p, 0, size);
  return std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [budgeted](std::byte* q) {
    std::free(q);
    release_memory(budgeted);
  });
}

std::string format_bytes(size_t bytes) {
  std::ostringstream os;
  os.precision(1);
  os << std::fixed;
  if (bytes >= (size_t{1} << 20)) {
    os << static_cast<double>(bytes) / (1 << 20) << " MiB";
  } else {
    os << static_cast<double>(bytes) / 1024 << " KiB";
  }
  return os.str();
}

}  // namespace

CompiledModel::CompiledModel(const Model& model, const CompileOptions& options) : model_(model), options_(options) {
  validate_model(model_);  // the same checks, and messages, as ReferenceExecutor (ops/validate.h)
  if (options_.threads < 1) {
    throw Error(ErrorCode::kInvalidArgument, "threads must be at least 1, got " + std::to_string(options_.threads));
  }
  if (options_.threads > 1) pool_ = std::make_unique<ThreadPool>(options_.threads);
  auto missing = unsupported_operators(model_);
  if (!missing.empty()) {
    std::string msg = "unsupported operators: ";
    for (size_t i = 0; i < missing.size(); ++i) msg += (i ? "; " : "") + missing[i];
    throw Error(ErrorCode::kUnsupported, msg);
  }
  run_to_fixed_point(model_.graph, {eliminate_identity, fold_batchnorm, codes_through_moves, eliminate_dead_nodes});
  if (options_.nhwc) {
    // Quantized convolutions and pools (input a DequantizeLinear, output
    // read only by a QuantizeLinear, through at most a Relu/Clip: the fused
    // integer steps) keep NHWC activations between them
    // (passes/nhwc_layout.cc).
    std::unordered_map<std::string, const Node*> producer;
    std::unordered_map<std::string, std::vector<const Node*>> readers;
    for (const Node& n : model_.graph.nodes) {
      for (const auto& o : n.outputs) producer[o] = &n;
      for (const auto& in : n.inputs) readers[in].push_back(&n);
    }
    const auto sole_reader = [&](const std::string& v) -> const Node* {
      auto it = readers.find(v);
      if (it == readers.end() || it->second.size() != 1 || is_graph_output(model_.graph, v)) return nullptr;
      return it->second[0]->domain.empty() ? it->second[0] : nullptr;
    };
    const auto quantized_input = [&](const Node& n) {
      auto it = producer.find(n.inputs[0]);
      if (it == producer.end() || it->second->op_type != "DequantizeLinear" || !it->second->domain.empty()) {
        return false;
      }
      const Node* next = sole_reader(n.outputs[0]);
      if (next != nullptr && (next->op_type == "Relu" || next->op_type == "Clip")) next = sole_reader(next->outputs[0]);
      return next != nullptr && next->op_type == "QuantizeLinear";
    };
    // FP32 convolutions with a constant float weight (the SConv steps) join
    // them (kernels/sconv_nhwc.h), the same group-majority rule deciding
    // where the layout changes; KVANT_FP32_NHWC=0 keeps them NCHW (A/B).
    const bool fp32_nhwc = fp32_nhwc_enabled();
    const bool dynamic_nhwc = dynamic_nhwc_enabled();  // KVANT_DYNAMIC_NHWC=0 keeps dynamic convs NCHW (A/B)
    const auto convert = [&](const Node& n) {
      // A standalone BatchNormalization joins only on float32 (its
      // DQ -> BN -> Q form keeps the NCHW per-channel tables).
      if (n.op_type == "BatchNormalization") {
        auto it = producer.find(n.inputs[0]);
        const bool dq = it != producer.end() && it->second->op_type == "DequantizeLinear";
        return !dq && fp32_nhwc && fp32_conv_for_nhwc(model_.graph, n, model_.opset());
      }
      if (quantized_input(n)) return true;
      if (n.op_type == "ConvInteger") {
        auto it = producer.find(n.inputs[0]);
        return dynamic_nhwc && dynamic_conv_for_nhwc(model_.graph, n, it == producer.end() ? nullptr : it->second);
      }
      return fp32_nhwc && fp32_conv_for_nhwc(model_.graph, n, model_.opset());
    };
    if (nhwc_layout(model_.graph, model_.opset(), convert)) model_.opset_imports["com.kvant"] = 1;
  }
  compile();
  // The steps hold what they need (packed weights, or the constants their
  // inputs name): the graph's other initializers are dropped, so the
  // unpacked weights are freed once the caller's model goes too.
  std::vector<bool> read(values_.size(), false);
  for (const auto& step : steps_) {
    for (int v : step->inputs) {
      if (v >= 0) read[static_cast<size_t>(v)] = true;
    }
  }
  for (int v : output_ids_) {  // a model output that is a constant (e.g. an If branch's)
    if (v >= 0) read[static_cast<size_t>(v)] = true;
  }
  for (auto it = model_.graph.initializers.begin(); it != model_.graph.initializers.end();) {
    auto id = value_ids_.find(it->first);
    const bool needed = model_.graph.find_input(it->first) != nullptr ||
                        (id != value_ids_.end() && read[static_cast<size_t>(id->second)]);
    if (needed) {
      ++it;
      continue;
    }
    if (id != value_ids_.end()) values_[static_cast<size_t>(id->second)].tensor = Tensor();
    it = model_.graph.initializers.erase(it);
  }
}

CompiledModel::~CompiledModel() = default;

int CompiledModel::value_index(const std::string& name) {
  if (name.empty()) return -1;
  auto it = value_ids_.find(name);
  if (it != value_ids_.end()) return it->second;
  const int id = static_cast<int>(values_.size());
  values_.push_back(Value{});
  values_.back().name = name;
  auto init = model_.graph.initializers.find(name);
  if (init != model_.graph.initializers.end() && model_.graph.find_input(name) == nullptr) {
    values_.back().tensor = init->second;
    values_.back().constant = true;
  }
  value_ids_.emplace(name, id);
  return id;
}

void CompiledModel::plan(const std::map<std::string, Tensor>& feeds) {
  planned_ = false;
  for (Value& v : values_) {
    if (!v.constant) v.tensor = Tensor();
    v.producer = -1;
    v.last_use = -1;
    v.root = -1;
    v.in_arena = false;
  }
  planned_input_shapes_.clear();
  for (int id : input_ids_) {
    values_[static_cast<size_t>(id)].tensor = feeds.at(values_[static_cast<size_t>(id)].name);
    planned_input_shapes_.push_back(values_[static_cast<size_t>(id)].tensor.shape());
  }
  const size_t n = steps_.size();
  step_in_.assign(n, {});
  step_out_.assign(n, {});
  step_runs_.assign(n, true);
  size_t scratch = 0;
  std::vector<TensorSpec> specs;
  // Which step reads each value last (a view's reads count for its root),
  // known before running: the planning run frees an intermediate after its
  // last reader, so it holds the live tensors, not all of them at once.
  std::vector<int> root_of(values_.size());
  for (size_t id = 0; id < values_.size(); ++id) root_of[id] = static_cast<int>(id);
  std::vector<int> last_read(values_.size(), -1);
  for (size_t s = 0; s < n; ++s) {
    const Step& step = *steps_[s];
    for (int id : step.inputs) {
      if (id >= 0) last_read[static_cast<size_t>(root_of[static_cast<size_t>(id)])] = static_cast<int>(s);
    }
    if (step.kind() == Step::Kind::kView && step.outputs[0] >= 0 && step.inputs[0] >= 0) {
      root_of[static_cast<size_t>(step.outputs[0])] = root_of[static_cast<size_t>(step.inputs[0])];
    }
  }
  std::vector<bool> keep(values_.size(), false);  // model inputs and outputs, constants, planned constants
  for (int id : input_ids_) keep[static_cast<size_t>(id)] = true;
  for (int id : output_ids_) keep[static_cast<size_t>(root_of[static_cast<size_t>(id)])] = true;
  for (size_t id = 0; id < values_.size(); ++id) keep[id] = keep[id] || values_[id].constant;
  // Values fixed by the input shapes (Step::reads_shapes_only): computed by
  // this run and kept, their steps skipped afterwards.
  std::vector<bool> fixed(values_.size(), false);
  for (size_t id = 0; id < values_.size(); ++id) fixed[id] = values_[id].constant;
  step_fixed_.assign(n, false);
  std::vector<std::vector<int>> views_of(values_.size());  // root -> its views
  auto record = [&](int id) {
    Value& v = values_[static_cast<size_t>(id)];
    v.dtype = v.tensor.dtype();
    v.shape = v.tensor.shape();
  };
  auto release = [&](int root) {
    if (keep[static_cast<size_t>(root)]) return;
    values_[static_cast<size_t>(root)].tensor = Tensor();
    for (int view : views_of[static_cast<size_t>(root)]) values_[static_cast<size_t>(view)].tensor = Tensor();
  };
  for (int id : input_ids_) record(id);
  // 1. Run every step once with its own buffers: shapes and lifetimes.
  for (size_t s = 0; s < n; ++s) {
    Step& step = *steps_[s];
    try {
      for (int id : step.inputs) {
        if (id < 0) {
          step_in_[s].push_back(nullptr);
          continue;
        }
        Value& v = values_[static_cast<size_t>(id)];
        if (!v.tensor.defined()) {
          throw Error(ErrorCode::kInvalidArgument, "step " + step.name + ": input \"" + v.name + "\" has no value");
        }
        v.last_use = static_cast<int>(s);
        step_in_[s].push_back(&v.tensor);
      }
      for (int id : step.outputs) {
        step_out_[s].push_back(id < 0 ? nullptr : &values_[static_cast<size_t>(id)].tensor);
        if (id >= 0) values_[static_cast<size_t>(id)].producer = static_cast<int>(s);
      }
      if (step.kind() != Step::Kind::kFallback) {
        specs.clear();
        step.infer(step_in_[s], specs);
        if (specs.size() < step.outputs.size()) throw Error(ErrorCode::kInternal, step.name + ": too few output specs");
        for (size_t i = 0; i < step.outputs.size(); ++i) {
          if (step.outputs[i] < 0) continue;
          Value& out = values_[static_cast<size_t>(step.outputs[i])];
          if (step.kind() == Step::Kind::kView) {
            out.tensor = step_in_[s][0]->reshaped(specs[i].shape);
            const Value& src = values_[static_cast<size_t>(step.inputs[0])];
            out.root = src.root >= 0 ? src.root : step.inputs[0];
            views_of[static_cast<size_t>(out.root)].push_back(step.outputs[i]);
          } else {
            out.tensor = Tensor(specs[i].dtype, specs[i].shape);
          }
        }
      }
      if (step.kind() != Step::Kind::kView) {
        const size_t need = step.scratch_bytes(step_in_[s]);
        scratch = std::max(scratch, need);
        std::shared_ptr<std::byte> temp = allocate_block(need, "a step's planning scratch");
        step.run(step_in_[s], step_out_[s], temp.get(), pool_.get());
      }
      bool is_fixed = step.deterministic() && !step.outputs.empty();
      if (!step.reads_shapes_only()) {
        for (int id : step.inputs) is_fixed = is_fixed && (id < 0 || fixed[static_cast<size_t>(id)]);
      }
      if (is_fixed) {
        step_fixed_[s] = true;
        for (int id : step.outputs) {
          if (id < 0) continue;
          fixed[static_cast<size_t>(id)] = true;
          keep[static_cast<size_t>(id)] = true;
          keep[static_cast<size_t>(root_of[static_cast<size_t>(id)])] = true;
        }
      }
      for (int id : step.outputs) {
        if (id < 0) continue;
        record(id);
        if (last_read[static_cast<size_t>(root_of[static_cast<size_t>(id)])] < 0)
          release(root_of[static_cast<size_t>(id)]);
      }
      for (int id : step.inputs) {
        if (id >= 0 && last_read[static_cast<size_t>(root_of[static_cast<size_t>(id)])] == static_cast<int>(s)) {
          release(root_of[static_cast<size_t>(id)]);
        }
      }
    } catch (...) {
      rethrow_naming(step);
    }
  }
  // 2. Lifetimes: a view keeps its root alive; model outputs live to the end.
  const int end = static_cast<int>(n);
  // Inputs stay intact too: a caller may fill them once and run many times.
  for (int id : output_ids_) values_[static_cast<size_t>(id)].last_use = end;
  for (int id : input_ids_) values_[static_cast<size_t>(id)].last_use = end;
  for (Value& v : values_) {
    if (v.root >= 0) {
      Value& r = values_[static_cast<size_t>(v.root)];
      r.last_use = std::max(r.last_use, v.last_use);
    }
  }
  // 3. Arena: model inputs and every kernel output.
  std::vector<BufferRequest> requests;
  std::vector<int> owners;
  for (size_t id = 0; id < values_.size(); ++id) {
    Value& v = values_[id];
    if (v.constant || v.root >= 0 || v.dtype == DType::kUndefined || fixed[id]) continue;
    const bool is_input = std::find(input_ids_.begin(), input_ids_.end(), static_cast<int>(id)) != input_ids_.end();
    const bool is_kernel_output =
        v.producer >= 0 && steps_[static_cast<size_t>(v.producer)]->kind() == Step::Kind::kKernel;
    if (!is_input && !is_kernel_output) continue;
    int64_t numel = 1;
    for (int64_t d : v.shape) numel *= d;
    const size_t bytes = static_cast<size_t>((numel * dtype_bits(v.dtype) + 7) / 8);
    requests.push_back({bytes, is_input ? -1 : v.producer, std::max(v.last_use, v.producer)});
    owners.push_back(static_cast<int>(id));
  }
  const MemoryPlan memory = plan_memory(requests);
  arena_ = allocate_block(memory.arena_bytes, "the compiled model's arena");
  scratch_ = allocate_block(scratch, "the compiled model's scratch");
  for (size_t i = 0; i < owners.size(); ++i) {
    Value& v = values_[static_cast<size_t>(owners[i])];
    Tensor placed = Tensor::view(v.dtype, v.shape, arena_, arena_.get() + memory.offsets[i]);
    if (v.tensor.defined())
      std::memcpy(placed.raw(), v.tensor.raw(), v.tensor.nbytes());  // this run's inputs and outputs
    v.tensor = placed;
    v.in_arena = true;
    v.offset = memory.offsets[i];
    v.extent = requests[i].bytes;
  }
  // 4. Steps whose outputs the input shapes fix never run again; views over
  // stable bytes (arena, constants) are bound once.
  for (size_t s = 0; s < n; ++s) {
    if (step_fixed_[s]) step_runs_[s] = false;
  }
  for (size_t s = 0; s < n; ++s) {
    Step& step = *steps_[s];
    if (step.kind() != Step::Kind::kView) continue;
    Value& out = values_[static_cast<size_t>(step.outputs[0])];
    const Value& root = values_[static_cast<size_t>(out.root)];
    if (root.in_arena || root.constant || fixed[static_cast<size_t>(out.root)]) {
      out.tensor = step_in_[s][0]->reshaped(out.shape);
      step_runs_[s] = false;
    }
  }
  scratch_capacity_ = scratch;
  ++plans_;
  stats_ = PlanStats{};
  stats_.arena_bytes = memory.arena_bytes;
  stats_.tensor_bytes = memory.total_bytes;
  stats_.scratch_bytes = scratch;
  for (size_t s = 0; s < n; ++s) {
    if (step_fixed_[s]) {
      ++stats_.fixed_steps;
      continue;
    }
    switch (steps_[s]->kind()) {
      case Step::Kind::kKernel: ++stats_.kernel_steps; break;
      case Step::Kind::kView: ++stats_.view_steps; break;
      case Step::Kind::kFallback: ++stats_.fallback_steps; break;
    }
  }
  planned_ = true;
}

std::string CompiledModel::plan_line(size_t s) const {
  const Step& step = *steps_[s];
  std::ostringstream line;
  line << s << "  " << (step_fixed_[s] ? "fixed by the input shapes: " : "") << step.kernel() << "  " << step.name;
  if (step.fused.size() > 1) line << " (+" << step.fused.size() - 1 << " fused)";
  for (int id : step.outputs) {
    if (id < 0) continue;
    const Value& v = values_[static_cast<size_t>(id)];
    line << "  -> " << dtype_name(v.dtype) << shape_to_string(v.shape);
    if (v.in_arena) line << " @" << v.offset;
    if (v.root >= 0) line << " (view)";
    if (step.kind() == Step::Kind::kFallback && !step_fixed_[s]) line << " (allocated)";
  }
  return line.str();
}

// New input shapes on the placement of the last plan (design decision 55):
// one pass over the steps that infers each output's shape from its inputs
// (which this pass has just computed, so shape inputs hold their values),
// binds it at its planned offset, and runs the step. Steps fixed by the
// input shapes run again (their outputs are small and live outside the
// arena; a kernel's are rewritten in place when the shape is unchanged).
// Returns false, having run part of the model, when an input or output
// needs more bytes than its place holds, a step more scratch, or a value
// changes type: the caller then plans anew from the same feeds.
bool CompiledModel::run_on_placement(const std::map<std::string, Tensor>& feeds) {
  auto bytes_of = [](DType dtype, const Shape& shape) {
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    return static_cast<size_t>((numel * dtype_bits(dtype) + 7) / 8);
  };
  for (int id : input_ids_) {
    Value& v = values_[static_cast<size_t>(id)];
    const Tensor& src = feeds.at(v.name);
    if (!v.in_arena || src.dtype() != v.dtype || bytes_of(src.dtype(), src.shape()) > v.extent) return false;
  }
  // Whether a value may differ from the last pass in shape, or, for a value
  // fixed by the input shapes, in content: a fixed step none of whose inputs
  // changed keeps its outputs (the shape arithmetic on an input whose shape
  // stayed, as input_ids [1, 1] from token to token).
  std::vector<char>& changed = changed_buffer_;
  changed.assign(values_.size(), 0);
  for (int id : input_ids_) {
    Value& v = values_[static_cast<size_t>(id)];
    const Tensor& src = feeds.at(v.name);
    changed[static_cast<size_t>(id)] = src.shape() != v.shape;
    v.shape = src.shape();
    v.tensor = Tensor::view(v.dtype, v.shape, arena_, arena_.get() + v.offset);
    std::memcpy(v.tensor.raw(), src.raw(), src.nbytes());
  }
  std::vector<TensorSpec>& specs = spec_buffer_;
  for (size_t s = 0; s < steps_.size(); ++s) {
    Step& step = *steps_[s];
    if (step_fixed_[s]) {
      bool inputs_changed = false;
      for (int id : step.inputs) inputs_changed = inputs_changed || (id >= 0 && changed[static_cast<size_t>(id)]);
      if (!inputs_changed) continue;
      for (int id : step.outputs) {
        if (id >= 0) changed[static_cast<size_t>(id)] = 1;
      }
    }
    auto set_shape = [&](Value& out, int id, const Shape& shape) {
      if (!step_fixed_[s]) changed[static_cast<size_t>(id)] = out.shape != shape;
      out.shape = shape;
    };
    try {
      if (step.kind() == Step::Kind::kFallback) {
        step.run(step_in_[s], step_out_[s], scratch_.get(), pool_.get());
        for (int id : step.outputs) {
          if (id < 0) continue;
          Value& out = values_[static_cast<size_t>(id)];
          if (out.tensor.dtype() != out.dtype) return false;
          set_shape(out, id, out.tensor.shape());
        }
        continue;
      }
      specs.clear();
      step.infer(step_in_[s], specs);
      if (specs.size() < step.outputs.size()) return false;
      for (size_t i = 0; i < step.outputs.size(); ++i) {
        if (step.outputs[i] < 0) continue;
        Value& out = values_[static_cast<size_t>(step.outputs[i])];
        if (specs[i].dtype != out.dtype) return false;
        if (step.kind() == Step::Kind::kView) {
          out.tensor = step_in_[s][0]->reshaped(specs[i].shape);
        } else if (out.in_arena) {
          if (bytes_of(out.dtype, specs[i].shape) > out.extent) return false;
          out.tensor = Tensor::view(out.dtype, specs[i].shape, arena_, arena_.get() + out.offset);
        } else if (step_fixed_[s]) {
          if (out.tensor.shape() != specs[i].shape) out.tensor = Tensor(out.dtype, specs[i].shape);
        } else {
          return false;  // a kernel output the plan did not place
        }
        set_shape(out, step.outputs[i], specs[i].shape);
      }
      if (step.kind() == Step::Kind::kView) continue;
      if (step.scratch_bytes(step_in_[s]) > scratch_capacity_) return false;
      step.run(step_in_[s], step_out_[s], scratch_.get(), pool_.get());
    } catch (...) {
      rethrow_naming(step);
    }
  }
  for (size_t i = 0; i < input_ids_.size(); ++i) {
    planned_input_shapes_[i] = values_[static_cast<size_t>(input_ids_[i])].shape;
  }
  return true;
}

void CompiledModel::prepare(const std::map<std::string, Shape>& input_shapes) {
  std::map<std::string, Tensor> feeds;
  for (int id : input_ids_) {
    const Value& v = values_[static_cast<size_t>(id)];
    auto it = input_shapes.find(v.name);
    if (it == input_shapes.end())
      throw Error(ErrorCode::kInvalidArgument, "prepare: no shape for input \"" + v.name + "\"");
    const ValueInfo* info = model_.graph.find_input(v.name);
    feeds[v.name] = Tensor(info->type.dtype, it->second);
  }
  plan(feeds);
}

Tensor& CompiledModel::input(size_t i) {
  if (!planned_ || i >= input_ids_.size())
    throw Error(ErrorCode::kInvalidArgument, "input(" + std::to_string(i) + "): not planned or out of range");
  return values_[static_cast<size_t>(input_ids_[i])].tensor;
}

const Tensor& CompiledModel::output(size_t i) const {
  if (!planned_ || i >= output_ids_.size())
    throw Error(ErrorCode::kInvalidArgument, "output(" + std::to_string(i) + "): not planned or out of range");
  return values_[static_cast<size_t>(output_ids_[i])].tensor;
}

void CompiledModel::run() {
  if (!planned_) throw Error(ErrorCode::kInvalidArgument, "run: call prepare() first");
  if (profiling_) {
    step_seconds_.resize(steps_.size(), 0.0);
    for (size_t s = 0; s < steps_.size(); ++s) {
      const auto start = std::chrono::steady_clock::now();
      if (step_runs_[s]) steps_[s]->run(step_in_[s], step_out_[s], scratch_.get(), pool_.get());
      step_seconds_[s] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    ++profiled_runs_;
    return;
  }
  size_t s = 0;
  try {
    for (; s < steps_.size(); ++s) {
      if (step_runs_[s]) steps_[s]->run(step_in_[s], step_out_[s], scratch_.get(), pool_.get());
      if (observer_) observe(s);
    }
  } catch (...) {
    rethrow_naming(*steps_[s]);
  }
}

CompiledModel::ValueInfoView CompiledModel::value_info(int id) const {
  const Value& v = values_.at(static_cast<size_t>(id));
  return {v.name, v.constant ? &v.tensor : nullptr, v.dtype, v.shape};
}

std::vector<Tensor> CompiledModel::run_step_alone(size_t s, const std::vector<const Tensor*>& inputs) {
  Step& step = *steps_.at(s);
  std::vector<Tensor> outs(step.outputs.size());
  if (inputs.size() != step.inputs.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                "run_step_alone: step " + step.name + " takes " + std::to_string(step.inputs.size()) + " inputs");
  }
  if (step.kind() == Step::Kind::kView) {
    if (!outs.empty() && step.outputs[0] >= 0 && !inputs.empty() && inputs[0] != nullptr) {
      outs[0] = inputs[0]->reshaped(values_[static_cast<size_t>(step.outputs[0])].shape);
    }
    return outs;
  }
  std::vector<Tensor*> out_ptrs;
  for (size_t i = 0; i < outs.size(); ++i) out_ptrs.push_back(step.outputs[i] < 0 ? nullptr : &outs[i]);
  try {
    if (step.kind() == Step::Kind::kKernel) {
      std::vector<TensorSpec> specs;
      step.infer(inputs, specs);
      for (size_t i = 0; i < outs.size() && i < specs.size(); ++i) {
        if (step.outputs[i] >= 0) outs[i] = Tensor(specs[i].dtype, specs[i].shape);
      }
    }
    std::shared_ptr<std::byte> temp = allocate_block(step.scratch_bytes(inputs), "a step's scratch");
    step.run(inputs, out_ptrs, temp.get(), pool_.get());
  } catch (...) {
    rethrow_naming(step);
  }
  return outs;
}

void CompiledModel::observe(size_t s) {
  std::vector<std::string> names;
  std::vector<const Tensor*> outputs;
  for (int id : steps_[s]->outputs) {
    if (id < 0) continue;
    names.push_back(values_[static_cast<size_t>(id)].name);
    outputs.push_back(&values_[static_cast<size_t>(id)].tensor);
  }
  observer_(s, *steps_[s], names, outputs);
}

void CompiledModel::set_profiling(bool on) {
  profiling_ = on;
  step_seconds_.assign(steps_.size(), 0.0);
  profiled_runs_ = 0;
}

std::string CompiledModel::describe_profile(size_t top) const {
  std::ostringstream os;
  if (profiled_runs_ == 0) return "no profiled runs\n";
  double total = 0;
  for (double t : step_seconds_) total += t;
  std::vector<size_t> order(step_seconds_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return step_seconds_[a] > step_seconds_[b]; });
  char line[512];
  std::snprintf(line, sizeof(line), "profile over %d runs: %.3f ms per run in steps\n", profiled_runs_,
                1e3 * total / profiled_runs_);
  os << line;
  std::map<std::string, double> by_kernel;
  for (size_t s = 0; s < steps_.size(); ++s) {
    std::string k = steps_[s]->kernel();
    by_kernel[k.substr(0, k.find(" ("))] += step_seconds_[s];
  }
  std::vector<std::pair<double, std::string>> kinds;
  for (const auto& [k, t] : by_kernel) kinds.push_back({t, k});
  std::sort(kinds.rbegin(), kinds.rend());
  os << "  by kernel:\n";
  for (const auto& [t, k] : kinds) {
    std::snprintf(line, sizeof(line), "    %6.2f%%  %8.3f ms  %s\n", 100.0 * t / total, 1e3 * t / profiled_runs_,
                  k.c_str());
    os << line;
  }
  os << "  top steps:\n";
  for (size_t i = 0; i < order.size() && i < top; ++i) {
    const size_t s = order[i];
    std::snprintf(line, sizeof(line), "    %6.2f%%  %8.3f ms  #%zu %s  %s\n", 100.0 * step_seconds_[s] / total,
                  1e3 * step_seconds_[s] / profiled_runs_, s, steps_[s]->kernel().c_str(), steps_[s]->name.c_str());
    os << line;
  }
  return os.str();
}

std::map<std::string, Tensor> CompiledModel::run(const std::map<std::string, Tensor>& feeds) {
  run_in_place(feeds);
  std::map<std::string, Tensor> result;
  for (size_t i = 0; i < output_ids_.size(); ++i)
    result[values_[static_cast<size_t>(output_ids_[i])].name] = output(i).clone();
  return result;
}

void CompiledModel::run_in_place(const std::map<std::string, Tensor>& feeds) {
  // Check names, types and shapes as the reference executor does.
  std::map<std::string, int64_t> bindings;
  std::map<std::string, Tensor> complete;
  for (const ValueInfo& in : model_.graph.inputs) {
    auto it = feeds.find(in.name);
    if (it == feeds.end()) {
      auto init = model_.graph.initializers.find(in.name);
      if (init == model_.graph.initializers.end()) {
        throw Error(ErrorCode::kInvalidArgument,
                    "input \"" + in.name + "\" (" + in.type.to_string() + ") was not given");
      }
      complete[in.name] = init->second;
      continue;
    }
    check_input_type(in, it->second, bindings);
    complete[in.name] = it->second;
  }
  for (const auto& [name, t] : feeds) {
    if (!complete.count(name) || model_.graph.find_input(name) == nullptr) {
      std::string names;
      for (const auto& in : model_.graph.inputs) names += (names.empty() ? "" : ", ") + in.name;
      throw Error(ErrorCode::kInvalidArgument, "the model has no input named \"" + name + "\" (inputs: " + names + ")");
    }
  }
  bool same = planned_;
  for (size_t i = 0; same && i < input_ids_.size(); ++i) {
    same = complete.at(values_[static_cast<size_t>(input_ids_[i])].name).shape() == planned_input_shapes_[i];
  }
  // KVANT_REPLAN=1 plans for every new shape as before decision 55 (to
  // measure what keeping the placement saves).
  static const bool replan_always = [] {
    const char* e = std::getenv("KVANT_REPLAN");
    return e != nullptr && std::string(e) == "1";
  }();
  if (!same && planned_ && !observer_ && !profiling_ && !replan_always) {
    // Only the shapes changed: keep the placement when everything fits it.
    if (run_on_placement(complete)) return;
  }
  if (!same) {
    plan(complete);
    // The planning run computed every output from these very feeds and plan()
    // kept them (copied into the arena, or in their own tensors): a second
    // run would repeat it. Callers whose shapes change every call (a decoder's
    // growing cache, llm/decoder.h) pay one run, not two. An observer or the
    // profiler wants to see a run, so they still get one.
    if (!observer_ && !profiling_) return;
  }
  for (size_t i = 0; i < input_ids_.size(); ++i) {
    const Tensor& src = complete.at(values_[static_cast<size_t>(input_ids_[i])].name);
    std::memcpy(input(i).raw(), src.raw(), src.nbytes());
  }
  run();
}

std::string CompiledModel::describe_plan() const {
  std::ostringstream os;
  os << "steps: " << steps_.size() << " (" << stats_.kernel_steps << " kernels, " << stats_.view_steps << " views, "
     << stats_.fallback_steps << " reference fallbacks, " << stats_.fixed_steps << " fixed by the input shapes), ISA "
     << isa_name(options_.isa) << ", threads " << options_.threads << "\n";
  for (size_t s = 0; planned_ && s < steps_.size(); ++s) os << "  " << plan_line(s) << "\n";
  os << "arena: " << format_bytes(stats_.arena_bytes) << " (" << stats_.arena_bytes << " bytes) for tensors totalling "
     << format_bytes(stats_.tensor_bytes) << " (" << stats_.tensor_bytes << " bytes) without reuse; scratch "
     << format_bytes(stats_.scratch_bytes) << "\n";
  return os.str();
}

PlanStats CompiledModel::stats() const { return stats_; }

CompiledModel::Placement CompiledModel::placement(int id) const {
  const Value& v = values_.at(static_cast<size_t>(id));
  return Placement{v.in_arena, v.in_arena ? v.offset : 0, v.root >= 0};
}

}  // namespace kvant
