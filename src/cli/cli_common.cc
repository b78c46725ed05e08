#include "cli/cli_common.h"

#include <cstdio>
#include <iostream>

#include "runtime/thread_pool.h"

namespace kvant::cli {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

}  // namespace

ShapeOverrides parse_shape_args(const std::vector<std::string>& args) {
  ShapeOverrides out;
  for (const std::string& arg : args) {
    const size_t eq = arg.rfind('=');
    if (eq == std::string::npos || eq == 0) {
      fail("--shape \"" + arg + "\": expected NAME=DIMS, e.g. input=1x3x224x224");
    }
    const std::string name = arg.substr(0, eq);
    const std::string dims = arg.substr(eq + 1);
    std::vector<int64_t> shape;
    size_t pos = 0;
    while (pos <= dims.size()) {
      size_t end = dims.find_first_of("x,", pos);
      if (end == std::string::npos) end = dims.size();
      const std::string part = dims.substr(pos, end - pos);
      if (part.empty() || part.size() > 12 || part.find_first_not_of("0123456789") != std::string::npos) {
        fail("--shape \"" + arg + "\": \"" + part + "\" is not a dimension (dims are non-negative integers, " +
             "separated by 'x', e.g. 1x3x224x224)");
      }
      shape.push_back(std::stoll(part));
      pos = end + 1;
    }
    if (!out.emplace(name, shape).second) fail("--shape is given twice for input \"" + name + "\"");
  }
  return out;
}

void apply_shape_overrides(Graph& graph, const ShapeOverrides& overrides) {
  for (const auto& [name, shape] : overrides) {
    ValueInfo* input = nullptr;
    for (auto& in : graph.inputs) {
      if (in.name == name) input = &in;
    }
    if (input == nullptr) {
      fail("--shape: the model has no input named \"" + name + "\" (inputs: " + input_names(graph) + ")");
    }
    TypeInfo& type = input->type;
    if (type.has_shape) {
      if (type.dims.size() != shape.size()) {
        fail("--shape: input \"" + name + "\" is " + type.to_string() + ", of rank " +
             std::to_string(type.dims.size()) + ", but " + std::to_string(shape.size()) + " dims were given");
      }
      for (size_t i = 0; i < shape.size(); ++i) {
        if (type.dims[i].known() && type.dims[i].value != shape[i]) {
          fail("--shape: input \"" + name + "\" is " + type.to_string() + ": dimension " + std::to_string(i) +
               " is fixed at " + std::to_string(type.dims[i].value) + ", not " + std::to_string(shape[i]));
        }
      }
    }
    type.has_shape = true;
    type.dims.resize(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) type.dims[i].value = shape[i];
  }
}

OnnxModel load_api_model(const std::string& path, const ModelLoadOptions& options) {
  auto model = OnnxModel::load(path, options);
  if (!model.ok()) {
    std::string message = model.status().message();
    for (size_t pos; (pos = message.find("input_shapes ")) != std::string::npos;) message.replace(pos, 12, "--shape");
    throw Error(model.status().code(), message);
  }
  for (const std::string& warning : model->warnings()) std::cerr << "kvant: warning: " << warning << "\n";
  return std::move(model).value();
}

void throw_if_error(const Status& status) {
  if (!status.ok()) throw Error(status.code(), status.message());
}

Model load_model(const std::string& path, const LoadOptions& options) {
  auto model = load_onnx(path, options);
  if (!model.ok()) {
    // The loader names LoadOptions::input_shapes; on the command line it is --shape.
    std::string message = model.status().message();
    for (size_t pos; (pos = message.find("input_shapes ")) != std::string::npos;) message.replace(pos, 12, "--shape");
    throw Error(model.status().code(), message);
  }
  for (const std::string& warning : model->warnings) std::cerr << "kvant: warning: " << warning << "\n";
  return std::move(model).value();
}

ModelRunner::ModelRunner(const Model& model, const std::string& path, bool reference, int threads)
    : path_(path), threads_(threads) {
  try {
    if (reference) {
      model_ = model;
      reference_ = std::make_unique<ReferenceExecutor>(model_);
    } else {
      compiled_ = std::make_unique<CompiledModel>(model, default_compile_options(threads));
    }
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::kInvalidArgument, path + ": out of memory while compiling the model");
  }
}

std::map<std::string, Tensor> ModelRunner::run(const std::map<std::string, Tensor>& feeds) {
  return reference_ ? reference_->run(feeds) : compiled_->run(feeds);
}

std::string ModelRunner::describe() const {
  if (reference_) return "reference (plain kernels, 1 thread)";
  std::string s = "compiled (ISA ";
  s += isa_name(default_compile_options().isa);
  s += ", " + std::to_string(threads_) + (threads_ == 1 ? " thread)" : " threads)");
  return s;
}

ModelRunnerPtr make_runner(const Model& model, const std::string& path, bool reference, int threads) {
  return std::make_unique<ModelRunner>(model, path, reference, threads);
}

int64_t parse_bytes(const std::string& text, const std::string& option) {
  size_t used = 0;
  double value = -1;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  double scale = 0;
  if (unit.empty()) scale = 1;
  if (unit == "K" || unit == "k") scale = 1024.0;
  if (unit == "M" || unit == "m") scale = 1024.0 * 1024;
  if (unit == "G" || unit == "g") scale = 1024.0 * 1024 * 1024;
  if (unit == "T" || unit == "t") scale = 1024.0 * 1024 * 1024 * 1024;
  const double bytes = value * scale;
  if (used == 0 || scale == 0 || !(bytes >= 1) || bytes > 9.0e18) {
    fail(option + " \"" + text + "\": expected a size such as 2G, 512M or 1000000 (bytes)");
  }
  return static_cast<int64_t>(bytes);
}

void check_threads(int threads) {
  if (threads < 1 || threads > max_pool_threads()) {
    fail("--threads " + std::to_string(threads) + ": must be between 1 and " + std::to_string(max_pool_threads()) +
         " (4 x the hardware threads, at most 256)");
  }
}

std::string format_count(int64_t value) {
  char buf[64];
  const double v = static_cast<double>(value);
  if (value >= 1000000000) {
    std::snprintf(buf, sizeof(buf), "%.2f G", v / 1e9);
  } else if (value >= 1000000) {
    std::snprintf(buf, sizeof(buf), "%.2f M", v / 1e6);
  } else if (value >= 1000) {
    std::snprintf(buf, sizeof(buf), "%.2f K", v / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%lld", static_cast<long long>(value));
  }
  return buf;
}

std::string format_bytes(int64_t bytes) {
  char buf[64];
  const double v = static_cast<double>(bytes);
  if (bytes >= 1000000000) {
    std::snprintf(buf, sizeof(buf), "%.2f GB", v / 1e9);
  } else if (bytes >= 1000000) {
    std::snprintf(buf, sizeof(buf), "%.1f MB", v / 1e6);
  } else if (bytes >= 1000) {
    std::snprintf(buf, sizeof(buf), "%.1f KB", v / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%lld B", static_cast<long long>(bytes));
  }
  return buf;
}

std::string with_commas(int64_t value) {
  std::string digits = std::to_string(value < 0 ? -value : value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return value < 0 ? "-" + out : out;
}

std::string input_names(const Graph& graph) {
  std::string names;
  for (const auto& in : graph.inputs) names += (names.empty() ? "" : ", ") + in.name;
  return names.empty() ? "none" : names;
}

}  // namespace kvant::cli
