// Session (kvant.h): a CompiledModel (runtime/compiled_model.h), or the
// reference executor when asked, behind the public types.
#include <cstring>

#include "api/api_internal.h"
#include "runtime/compiled_model.h"
#include "runtime/executor.h"
#include "runtime/thread_pool.h"

namespace kvant {

struct Session::Impl {
  std::vector<TensorInfo> inputs, outputs;
  std::unique_ptr<CompiledModel> compiled;
  // SessionOptions::reference: the executor refers to the model, which the
  // Session keeps (shared with the OnnxModel).
  OnnxModel reference_model;
  std::unique_ptr<ReferenceExecutor> reference;
  bool planned = false;  // the compiled model's buffers are placed (prepare, or a run in place)

  bool in_place() const { return compiled != nullptr; }
  std::map<std::string, Tensor> feeds(const Feeds& feeds) const {
    std::map<std::string, Tensor> out;
    for (const auto& [name, view] : feeds) out[name] = ApiAccess::view(view, "input \"" + name + "\"");
    return out;
  }
};

namespace {

std::string names_of(const std::vector<TensorInfo>& infos) {
  std::string names;
  for (const auto& info : infos) names += (names.empty() ? "" : ", ") + info.name;
  return names.empty() ? "none" : names;
}

Result<size_t> index_of(const std::vector<TensorInfo>& infos, const std::string& name, const char* kind) {
  for (size_t i = 0; i < infos.size(); ++i) {
    if (infos[i].name == name) return i;
  }
  return not_found(std::string("the model has no ") + kind + " named \"" + name + "\" (" + kind +
                   "s: " + names_of(infos) + ")");
}

std::string describe_view(DataType dtype, const std::vector<int64_t>& shape) {
  return std::string(data_type_name(dtype)) + shape_to_string(shape);
}

}  // namespace

Status check_input(const TensorInfo& declared, const TensorView& given, std::map<std::string, int64_t>* symbolic_dims) {
  return guarded([&]() -> Status {
    ValueInfo value;
    value.name = declared.name;
    value.type.dtype = static_cast<DType>(static_cast<int32_t>(declared.dtype));
    value.type.has_shape = declared.has_shape;
    for (size_t i = 0; i < declared.shape.size(); ++i) {
      Dim d;
      d.value = declared.shape[i];
      if (i < declared.dim_names.size()) d.param = declared.dim_names[i];
      value.type.dims.push_back(d);
    }
    std::map<std::string, int64_t> local;
    check_input_type(value, ApiAccess::view(given, "input \"" + declared.name + "\""),
                     symbolic_dims ? *symbolic_dims : local);
    return Status();
  });
}

Session::Session() : impl_(std::make_unique<Impl>()) {}
Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

Result<Session> Session::create(const OnnxModel& model, const SessionOptions& options) {
  return guarded([&]() -> Result<Session> {
    const OnnxModel::Impl& in = ApiAccess::impl(model, "Session::create");
    Session session;
    Impl& s = *session.impl_;
    s.inputs = in.inputs;
    s.outputs = in.outputs;
    try {
      if (options.reference) {
        s.reference_model = model;
        s.reference = std::make_unique<ReferenceExecutor>(in.runnable());
      } else {
        if (options.threads < 1 || options.threads > max_pool_threads()) {
          return invalid_argument("SessionOptions::threads " + std::to_string(options.threads) +
                                  ": must be between 1 and " + std::to_string(max_pool_threads()) +
                                  " (4 x the hardware threads, at most 256)");
        }
        CompileOptions compile;
        compile.threads = options.threads;
        compile.isa = options.isa.empty() ? selected_isa() : isa_from_name(options.isa.c_str(), cpu_features());
        compile.nhwc = options.nhwc;
        s.compiled = std::make_unique<CompiledModel>(in.runnable(), compile);
      }
    } catch (const Error& e) {
      // As the command: errors of the model name its file.
      return Status(e.code(), in.display_name + ": " + e.what());
    } catch (const std::bad_alloc&) {
      return invalid_argument(in.display_name + ": out of memory while compiling the model");
    }
    return session;
  });
}

const std::vector<TensorInfo>& Session::inputs() const { return impl_->inputs; }
const std::vector<TensorInfo>& Session::outputs() const { return impl_->outputs; }

Result<size_t> Session::input_index(const std::string& name) const { return index_of(impl_->inputs, name, "input"); }
Result<size_t> Session::output_index(const std::string& name) const { return index_of(impl_->outputs, name, "output"); }

Result<Tensors> Session::run(const Feeds& feeds) {
  return guarded([&]() -> Result<Tensors> {
    Impl& s = *impl_;
    const std::map<std::string, Tensor> in = s.feeds(feeds);
    s.planned = false;  // a failed run may leave the plan half made
    std::map<std::string, Tensor> out = s.reference ? s.reference->run(in) : s.compiled->run(in);
    s.planned = s.in_place();
    Tensors result;
    for (const auto& [name, tensor] : out) result[name] = ApiAccess::wrap(tensor);
    return result;
  });
}

Status Session::run(const Feeds& feeds, const std::map<std::string, MutableTensorView>& outputs) {
  return guarded([&]() -> Status {
    Impl& s = *impl_;
    std::vector<std::pair<size_t, const MutableTensorView*>> wanted;
    for (const auto& [name, view] : outputs) {
      auto index = output_index(name);
      if (!index.ok()) return index.status();
      ApiAccess::view(view, "output \"" + name + "\"");  // checks type, shape and data
      wanted.emplace_back(*index, &view);
    }
    const std::map<std::string, Tensor> in = s.feeds(feeds);
    std::map<std::string, Tensor> copied;  // the results when they are not left in place
    std::vector<const Tensor*> results(s.outputs.size(), nullptr);
    s.planned = false;
    if (s.in_place()) {
      s.compiled->run_in_place(in);
      s.planned = true;
      for (size_t i = 0; i < results.size(); ++i) results[i] = &s.compiled->output(i);
    } else {
      copied = s.reference->run(in);
      for (size_t i = 0; i < results.size(); ++i) results[i] = &copied.at(s.outputs[i].name);
    }
    // Every buffer is checked before any is written.
    for (const auto& [i, view] : wanted) {
      const Tensor& t = *results[i];
      if (ApiAccess::to_data_type(t.dtype()) != view->dtype || t.shape() != view->shape) {
        return invalid_argument("output \"" + s.outputs[i].name + "\" is " + t.describe() + ", but its buffer is " +
                                describe_view(view->dtype, view->shape));
      }
    }
    for (const auto& [i, view] : wanted) {
      const Tensor& t = *results[i];
      if (t.nbytes()) std::memcpy(view->data, t.raw(), t.nbytes());
    }
    return Status();
  });
}

Status Session::prepare(const std::map<std::string, std::vector<int64_t>>& input_shapes) {
  return guarded([&]() -> Status {
    Impl& s = *impl_;
    if (!s.in_place()) {
      return unsupported(
          "prepare: this session runs on the reference executor (SessionOptions::reference); use run(feeds)");
    }
    for (const auto& [name, shape] : input_shapes) {
      auto index = input_index(name);
      if (!index.ok()) return index.status();
    }
    // The shapes are checked as a run checks its feeds, on zero-filled
    // tensors of the declared types.
    std::map<std::string, Tensor> zeros;
    for (const TensorInfo& info : s.inputs) {
      auto it = input_shapes.find(info.name);
      if (it == input_shapes.end()) return invalid_argument("prepare: no shape for input \"" + info.name + "\"");
      zeros[info.name] = Tensor(ApiAccess::to_dtype(info.dtype, "input \"" + info.name + "\""), it->second);
    }
    s.planned = false;
    s.compiled->run_in_place(zeros);
    s.planned = true;
    return Status();
  });
}

Result<MutableTensorView> Session::input_buffer(const std::string& name) {
  return guarded([&]() -> Result<MutableTensorView> {
    auto index = input_index(name);
    if (!index.ok()) return index.status();
    if (!impl_->planned) return invalid_argument("input_buffer: call prepare() first");
    Tensor& t = impl_->compiled->input(*index);
    return MutableTensorView{t.raw(), ApiAccess::to_data_type(t.dtype()), t.shape()};
  });
}

Status Session::run() {
  return guarded([&]() -> Status {
    if (!impl_->planned) return invalid_argument("run(): call prepare() first, and write the inputs to input_buffer()");
    impl_->compiled->run();
    return Status();
  });
}

Result<TensorView> Session::output_buffer(const std::string& name) const {
  return guarded([&]() -> Result<TensorView> {
    auto index = output_index(name);
    if (!index.ok()) return index.status();
    if (!impl_->planned) return invalid_argument("output_buffer: call prepare() first");
    const Tensor& t = impl_->compiled->output(*index);
    return TensorView{t.raw(), ApiAccess::to_data_type(t.dtype()), t.shape()};
  });
}

std::string Session::describe() const {
  if (impl_->reference) return "reference executor (plain kernels, 1 thread)\n";
  return impl_->compiled->describe_plan();
}

const char* step_kind_name(StepKind kind) {
  switch (kind) {
    case StepKind::kKernel: return "kernel";
    case StepKind::kView: return "view";
    case StepKind::kFallback: return "fallback";
  }
  return "unknown";
}

namespace {

Status no_plan_on_reference(const char* call) {
  return unsupported(std::string(call) +
                     ": this session runs on the reference executor (SessionOptions::reference), which has no "
                     "compiled plan");
}

StepKind public_kind(Step::Kind kind) {
  switch (kind) {
    case Step::Kind::kView: return StepKind::kView;
    case Step::Kind::kFallback: return StepKind::kFallback;
    case Step::Kind::kKernel: break;
  }
  return StepKind::kKernel;
}

}  // namespace

Result<SessionPlan> Session::plan() const {
  return guarded([&]() -> Result<SessionPlan> {
    if (!impl_->compiled) return no_plan_on_reference("plan");
    const CompiledModel& c = *impl_->compiled;
    SessionPlan plan;
    plan.isa = isa_name(c.options().isa);
    plan.threads = c.options().threads;
    plan.planned = c.planned();
    for (size_t s = 0; s < c.steps().size(); ++s) {
      const Step& step = *c.steps()[s];
      PlanStep out;
      out.kernel = step.kernel();
      out.kind = public_kind(step.kind());
      out.node = step.name;
      out.fused = step.fused.empty() ? std::vector<std::string>{step.name} : step.fused;
      out.fixed = c.step_fixed(s);
      for (int id : step.outputs) {
        if (id < 0 || !plan.planned) continue;
        const auto info = c.value_info(id);
        const auto place = c.placement(id);
        out.outputs.push_back(PlanValue{info.name, ApiAccess::to_data_type(info.dtype), info.shape,
                                        place.in_arena ? static_cast<int64_t>(place.offset) : -1, place.view});
      }
      plan.steps.push_back(std::move(out));
    }
    const PlanStats stats = c.stats();
    plan.kernel_steps = stats.kernel_steps;
    plan.view_steps = stats.view_steps;
    plan.fallback_steps = stats.fallback_steps;
    plan.fixed_steps = stats.fixed_steps;
    plan.arena_bytes = static_cast<int64_t>(stats.arena_bytes);
    plan.tensor_bytes = static_cast<int64_t>(stats.tensor_bytes);
    plan.scratch_bytes = static_cast<int64_t>(stats.scratch_bytes);
    plan.weight_bytes = static_cast<int64_t>(stats.weight_bytes);
    return plan;
  });
}

Status Session::set_profiling(bool on) {
  return guarded([&]() -> Status {
    if (!impl_->compiled) return no_plan_on_reference("set_profiling");
    impl_->compiled->set_profiling(on);
    return Status();
  });
}

Result<SessionProfile> Session::profile() const {
  return guarded([&]() -> Result<SessionProfile> {
    if (!impl_->compiled) return no_plan_on_reference("profile");
    const CompiledModel& c = *impl_->compiled;
    SessionProfile profile;
    profile.runs = c.profiled_runs();
    const std::vector<double>& seconds = c.step_seconds();
    for (size_t s = 0; s < c.steps().size(); ++s) {
      const double ms = s < seconds.size() ? 1e3 * seconds[s] : 0.0;
      profile.steps.push_back(StepTime{c.steps()[s]->kernel(), c.steps()[s]->name, ms});
      profile.total_ms += ms;
    }
    return profile;
  });
}

std::string Session::describe_profile(size_t top) const {
  if (!impl_->compiled) return "no profile: the reference executor has no compiled plan\n";
  return impl_->compiled->describe_profile(top);
}

}  // namespace kvant
