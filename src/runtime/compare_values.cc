#include "runtime/compare_values.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "runtime/executor.h"

namespace kvant {

namespace {

bool is_code(DType t) { return t == DType::kUInt8 || t == DType::kInt8 || t == DType::kUInt4 || t == DType::kInt4; }

// [N,H,W,C] (compiled) against [N,C,H,W] (reference).
bool is_nhwc_of(const Shape& compiled, const Shape& reference) {
  return compiled.size() == 4 && reference.size() == 4 && compiled != reference && compiled[0] == reference[0] &&
         compiled[1] == reference[2] && compiled[2] == reference[3] && compiled[3] == reference[1];
}

}  // namespace

ValueComparison compare_tensors(const Tensor& compiled, const Tensor& reference, bool nhwc, double float_tolerance) {
  ValueComparison c;
  c.dtype = compiled.dtype();
  c.shape = compiled.shape();
  c.nhwc = nhwc;
  c.numel = compiled.numel();
  const bool codes = is_code(compiled.dtype()) && compiled.dtype() == reference.dtype();
  const Shape& s = compiled.shape();  // [N,H,W,C] when nhwc
  auto reference_index = [&](int64_t i) -> int64_t {
    if (!nhwc) return i;
    const int64_t ch = s[3], w = s[2], h = s[1];
    const int64_t cc = i % ch, ww = (i / ch) % w, hh = (i / ch / w) % h, n = i / ch / w / h;
    return ((n * ch + cc) * h + hh) * w + ww;
  };
  for (int64_t i = 0; i < c.numel; ++i) {
    const double r = reference.get_as_double(reference_index(i));
    c.max_reference = std::max(c.max_reference, std::fabs(r));
  }
  for (int64_t i = 0; i < c.numel; ++i) {
    const double a = compiled.get_as_double(i), r = reference.get_as_double(reference_index(i));
    const double d = (std::isnan(a) && std::isnan(r)) ? 0.0 : std::fabs(a - r);
    if (d != 0.0) ++c.differing;
    if (std::isnan(d) || d > c.max_diff) c.max_diff = d;
    const double limit = codes ? 1.0 : float_tolerance * c.max_reference;
    if (std::isnan(d) || d > limit) ++c.beyond_one_step;
  }
  return c;
}

namespace {

// The reference's NCHW tensor in the compiled plan's NHWC layout.
Tensor to_nhwc(const Tensor& t) {
  const Shape& s = t.shape();
  const size_t bytes = static_cast<size_t>(dtype_bits(t.dtype()) / 8);
  Tensor out(t.dtype(), Shape{s[0], s[2], s[3], s[1]});
  const auto* src = static_cast<const std::byte*>(t.raw());
  auto* dst = static_cast<std::byte*>(out.raw());
  const int64_t c = s[1], hw = s[2] * s[3];
  for (int64_t n = 0; n < s[0]; ++n) {
    for (int64_t ch = 0; ch < c; ++ch) {
      for (int64_t p = 0; p < hw; ++p) {
        std::memcpy(dst + static_cast<size_t>((n * hw + p) * c + ch) * bytes,
                    src + static_cast<size_t>((n * c + ch) * hw + p) * bytes, bytes);
      }
    }
  }
  return out;
}

}  // namespace

ValueComparisonReport compare_compiled_to_reference(const Model& model, const std::map<std::string, Tensor>& feeds,
                                                    const CompileOptions& options, double float_tolerance) {
  std::map<std::string, Tensor> reference_values;
  {
    ReferenceExecutor reference(model);
    reference.set_observer([&](const Node& node, const std::vector<Tensor>& outputs) {
      for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
        if (!node.outputs[i].empty() && outputs[i].defined()) reference_values[node.outputs[i]] = outputs[i].clone();
      }
    });
    (void)reference.run(feeds);
    for (const auto& [name, t] : feeds) reference_values[name] = t;
  }
  CompiledModel compiled(model, options);
  ValueComparisonReport report;
  std::map<std::string, bool> nhwc_of;  // compared values: whether the plan holds them NHWC
  struct Alone {
    Tensor tensor;
    size_t step;
  };
  std::map<int, Alone> isolated_values;  // values only the plan has, computed alone from reference values
  // Compares a compiled tensor with the reference value `name`; false when
  // there is none or the shapes do not correspond.
  auto compare = [&](const std::string& name, const Tensor& got, ValueComparison& c) {
    auto it = reference_values.find(name);
    if (it == reference_values.end() || !got.defined()) return false;
    const Tensor& ref = it->second;
    const bool same = got.shape() == ref.shape();
    const bool nhwc = !same && is_nhwc_of(got.shape(), ref.shape());
    if ((!same && !nhwc) || got.numel() != ref.numel()) return false;
    if (got.dtype() == DType::kString || ref.dtype() == DType::kString) return false;  // no numeric difference
    c = compare_tensors(got, ref, nhwc, float_tolerance);
    // [N,S,S,S]: the shape does not tell the layouts apart; the closer
    // reading wins.
    const Shape& g = got.shape();
    if (same && g.size() == 4 && g[1] == g[2] && g[2] == g[3] && c.differing > 0) {
      ValueComparison t = compare_tensors(got, ref, true, float_tolerance);
      if (t.differing < c.differing) c = std::move(t);
    }
    return true;
  };
  compiled.set_observer([&](size_t s, const Step& step, const std::vector<std::string>& names,
                            const std::vector<const Tensor*>& outputs) {
    // The step alone on the reference's inputs. Values the reference lacks
    // (the layout pass's Transposes, intermediates of fused chains) are
    // what their own steps computed alone.
    std::vector<Tensor> own;
    std::vector<Tensor> held;  // permuted inputs
    std::vector<const Tensor*> inputs;
    std::vector<size_t> through;
    bool isolated = true;
    held.reserve(step.inputs.size());
    for (int id : step.inputs) {
      if (id < 0) {
        inputs.push_back(nullptr);
        continue;
      }
      const auto info = compiled.value_info(id);
      if (info.constant != nullptr) {
        inputs.push_back(info.constant);
        continue;
      }
      auto it = reference_values.find(info.name);
      if (it == reference_values.end()) {
        auto alone = isolated_values.find(id);
        if (alone == isolated_values.end()) {
          isolated = false;
          break;
        }
        inputs.push_back(&alone->second.tensor);
        through.push_back(alone->second.step);
        continue;
      }
      const Tensor& ref = it->second;
      if (ref.dtype() != info.dtype) {
        isolated = false;
        break;
      }
      auto known = nhwc_of.find(info.name);
      const bool nhwc = known != nhwc_of.end() ? known->second : is_nhwc_of(info.shape, ref.shape());
      if (nhwc && ref.shape().size() == 4 && dtype_bits(ref.dtype()) % 8 == 0) {
        held.push_back(to_nhwc(ref));
        inputs.push_back(&held.back());
      } else if (ref.shape() == info.shape) {
        inputs.push_back(&ref);
      } else {
        isolated = false;
        break;
      }
    }
    if (isolated) {
      try {
        own = compiled.run_step_alone(s, inputs);
      } catch (const Error&) {
        isolated = false;
      }
    }
    if (isolated) {
      for (size_t i = 0; i < step.outputs.size() && i < own.size(); ++i) {
        const int id = step.outputs[i];
        if (id >= 0 && own[i].defined() && !reference_values.count(compiled.value_info(id).name)) {
          isolated_values[id] = Alone{own[i].clone(), s};
        }
      }
    }
    size_t out_index = 0;
    for (size_t i = 0; i < names.size(); ++i) {
      ++report.step_outputs;
      while (out_index < step.outputs.size() && step.outputs[out_index] < 0) ++out_index;
      const Tensor* own_out = isolated && out_index < own.size() ? &own[out_index] : nullptr;
      ++out_index;
      StepComparison c;
      if (!reference_values.count(names[i]) || !outputs[i]->defined()) {
        ++report.unmatched;
        continue;
      }
      if (!compare(names[i], *outputs[i], c.inherited)) {
        ++report.shape_mismatch;
        continue;
      }
      nhwc_of[names[i]] = c.inherited.nhwc;
      c.isolated = own_out != nullptr && own_out->defined() && compare(names[i], *own_out, c.own);
      c.through = through;
      for (ValueComparison* v : {&c.inherited, &c.own}) {
        v->step = s;
        v->kernel = step.kernel();
        v->node = step.name;
        v->value = names[i];
      }
      report.values.push_back(std::move(c));
    }
  });
  compiled.run(feeds);
  return report;
}

namespace {

std::string counts(const ValueComparison& c) {
  char line[256];
  if (is_code(c.dtype)) {
    std::snprintf(line, sizeof(line), "%lld differ, %lld by more than 1 code (max %g)",
                  static_cast<long long>(c.differing), static_cast<long long>(c.beyond_one_step), c.max_diff);
  } else {
    std::snprintf(line, sizeof(line), "%lld differ, max |diff| %.3g (%.3g of max |ref|)",
                  static_cast<long long>(c.differing), c.max_diff,
                  c.max_reference > 0 ? c.max_diff / c.max_reference : 0.0);
  }
  return line;
}

// A step's own output departs: 8-bit codes that differ at all (one-code
// differences are what compounds), float beyond the tolerance.
bool own_differs(const StepComparison& c) {
  if (!c.isolated) return false;
  return is_code(c.own.dtype) ? c.own.differing > 0 : c.own.beyond_one_step > 0;
}

}  // namespace

std::string describe_comparison(const ValueComparisonReport& report, size_t max_lines, bool all) {
  std::ostringstream os;
  size_t departing = 0, own = 0, isolated = 0;
  for (const auto& c : report.values) {
    departing += c.inherited.departs() ? 1 : 0;
    own += own_differs(c) ? 1 : 0;
    isolated += c.isolated ? 1 : 0;
  }
  os << "compared " << report.values.size() << " of " << report.step_outputs
     << " compiled step outputs with the reference executor (" << report.unmatched << " without a reference value, "
     << report.shape_mismatch << " of another shape)\n"
     << "  in the compiled run: " << departing
     << " depart (8-bit: an element more than 1 code away; float: |diff| above the tolerance)\n"
     << "  run alone on the reference's inputs (" << isolated << " steps could): " << own
     << " differ (8-bit: any code; float: above the tolerance)\n";
  size_t shown = 0;
  for (const auto& c : report.values) {
    if (!all && !own_differs(c)) continue;
    if (shown++ == max_lines) {
      os << "  ...\n";
      break;
    }
    const ValueComparison& v = c.inherited;
    os << "  #" << v.step << " " << v.kernel << "  node \"" << v.node << "\" -> \"" << v.value << "\" "
       << dtype_name(v.dtype) << shape_to_string(v.shape) << (v.nhwc ? " (NHWC)" : "") << " of " << v.numel
       << ": alone " << (c.isolated ? counts(c.own) : std::string("n/a"));
    if (c.isolated && !c.through.empty()) {
      os << " (reading what step";
      for (size_t k = 0; k < c.through.size(); ++k) os << (k ? ", #" : " #") << c.through[k];
      os << " computed alone)";
    }
    os << "; in the run " << counts(v) << "\n";
  }
  return os.str();
}

}  // namespace kvant
