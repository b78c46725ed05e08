// kvant run: run a model on .npy inputs and write its outputs as .npy files.
//
// Every input is checked before anything runs: the name exists, the file is a
// valid .npy (io/npy.h), dtype and shape match the model's declaration
// (check_input_type; symbolic dims are bound from the given arrays and must
// agree across inputs), and float data holds no NaN or Inf (unless
// --allow-nonfinite). Outputs go to DIR/<name>.npy, the name sanitized to
// [A-Za-z0-9._-]; every file is written to a temporary file created
// exclusively beside it, and all are renamed only once all are written
// (io/output_file.h), so no half-written file is ever left. An existing
// regular file is only replaced with --force; a link, FIFO or device never.
//
// The model is loaded, compiled and run through the public API
// (include/kvant/kvant.h: OnnxModel, Session); what is the command's own
// here is files, messages and hints.

#include <CLI/CLI.hpp>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <memory>
#include <set>

#include "api/api_internal.h"
#include "cli/cli_common.h"
#include "io/npy.h"
#include "io/output_file.h"
#include "kvant/kvant.h"
#include "runtime/compare_values.h"

namespace kvant::cli {

namespace {

namespace fs = std::filesystem;

struct RunOptions {
  std::string model;
  std::vector<std::string> inputs;
  std::string output_dir;
  bool reference = false;
  bool compare_reference = false;
  bool compare_all = false;
  bool allow_nonfinite = false;
  bool force = false;
};

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

std::string index_text(const Shape& shape, int64_t flat) {
  std::vector<int64_t> index(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    index[i] = shape[i] ? flat % shape[i] : 0;
    flat = shape[i] ? flat / shape[i] : 0;
  }
  return shape_to_string(index);
}

// Throws naming the input and the first NaN/Inf element.
void check_finite(const std::string& name, const std::string& file, const Tensor& t) {
  if (!is_float(t.dtype())) return;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = t.get_as_double(i);
    if (!std::isfinite(v)) {
      fail("input \"" + name + "\" (" + file + "): element " + std::to_string(i) + " at index " +
           index_text(t.shape(), i) + " is " + (std::isnan(v) ? "NaN" : "Inf") +
           "; pass --allow-nonfinite to run it anyway");
    }
  }
}

struct InputSpec {
  std::string name;
  std::string file;
};

const TensorInfo* find_input(const std::vector<TensorInfo>& inputs, const std::string& name) {
  for (const TensorInfo& in : inputs) {
    if (in.name == name) return &in;
  }
  return nullptr;
}

std::string input_names(const std::vector<TensorInfo>& inputs) {
  std::string names;
  for (const auto& in : inputs) names += (names.empty() ? "" : ", ") + in.name;
  return names.empty() ? "none" : names;
}

// "float32[N,3,224,224]", as TypeInfo::to_string writes a declared type.
std::string type_text(const TensorInfo& info) {
  std::string s = data_type_name(info.dtype);
  if (!info.has_shape) return s + "[?]";
  s += '[';
  for (size_t i = 0; i < info.shape.size(); ++i) {
    if (i) s += ',';
    s += info.shape[i] >= 0 ? std::to_string(info.shape[i]) : info.dim_names[i].empty() ? "?" : info.dim_names[i];
  }
  return s + ']';
}

// "NAME=FILE", or "FILE" for a single-input model.
std::vector<InputSpec> resolve_input_specs(const std::vector<std::string>& args,
                                           const std::vector<TensorInfo>& inputs) {
  std::vector<InputSpec> specs;
  std::set<std::string> seen;
  for (const std::string& arg : args) {
    InputSpec spec;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos && eq > 0 && find_input(inputs, arg.substr(0, eq)) != nullptr) {
      spec = {arg.substr(0, eq), arg.substr(eq + 1)};
    } else if (eq != std::string::npos && eq > 0 && !fs::exists(arg)) {
      const std::string name = arg.substr(0, eq);
      fail("--input " + arg + ": the model has no input named \"" + name + "\" (inputs: " + input_names(inputs) + ")");
    } else {
      if (inputs.size() != 1) {
        fail("--input " + arg + " has no input name, but the model has " + std::to_string(inputs.size()) + " inputs (" +
             input_names(inputs) + "): use --input NAME=FILE.npy");
      }
      spec = {inputs[0].name, arg};
    }
    if (spec.file.empty()) fail("--input " + arg + ": no file given after '='");
    if (!seen.insert(spec.name).second) fail("input \"" + spec.name + "\" is given twice");
    specs.push_back(spec);
  }
  for (const auto& in : inputs) {
    if (!seen.count(in.name)) {
      fail("input \"" + in.name + "\" (" + type_text(in) + ") was not given; add --input " + in.name + "=FILE.npy");
    }
  }
  return specs;
}

// Output file names: the value name with every character outside
// [A-Za-z0-9._-] replaced by '_', never hidden or empty, made unique.
std::vector<fs::path> output_paths(const std::vector<TensorInfo>& outputs, const fs::path& dir) {
  std::vector<fs::path> paths;
  std::set<std::string> used;
  for (const auto& out : outputs) {
    std::string base;
    for (char c : out.name) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                      c == '-' || c == '.';
      base += ok ? c : '_';
    }
    if (base.empty() || base[0] == '.') base = "output_" + base;
    if (base.size() > 200) base.resize(200);
    std::string name = base;
    for (int k = 1; !used.insert(name).second; ++k) name = base + "_" + std::to_string(k);
    paths.push_back(dir / (name + ".npy"));
  }
  return paths;
}

// NumPy has no bfloat16 or 4-bit types: such outputs are widened.
Tensor npy_compatible(const Tensor& t, const std::string& name) {
  if (npy_descr(t.dtype()) != nullptr) return t;
  const DType to = t.dtype() == DType::kBFloat16 ? DType::kFloat32
                   : t.dtype() == DType::kUInt4  ? DType::kUInt8
                                                 : DType::kInt8;
  if (!(t.dtype() == DType::kBFloat16 || t.dtype() == DType::kInt4 || t.dtype() == DType::kUInt4)) {
    fail("output \"" + name + "\" is " + t.describe() + ", which cannot be saved as .npy");
  }
  std::cerr << "kvant: note: output \"" << name << "\" is " << dtype_name(t.dtype()) << ", saved as " << dtype_name(to)
            << "\n";
  Tensor w(to, t.shape());
  for (int64_t i = 0; i < t.numel(); ++i) {
    if (to == DType::kFloat32) w.data<float>()[i] = static_cast<float>(t.get_as_double(i));
    if (to == DType::kUInt8) w.data<uint8_t>()[i] = static_cast<uint8_t>(t.get_as_int64(i));
    if (to == DType::kInt8) w.data<int8_t>()[i] = static_cast<int8_t>(t.get_as_int64(i));
  }
  return w;
}

[[noreturn]] void fail(const Status& status) { throw Error(status.code(), status.message()); }

int run_command(const RunOptions& opt) {
  // Shape inference on (the default): the arrays fix every dim; inferred
  // dtypes let compile fuse float ops.
  auto model = OnnxModel::load(opt.model);
  if (!model.ok()) fail(model.status());
  for (const std::string& warning : model->warnings()) std::cerr << "kvant: warning: " << warning << "\n";
  const std::vector<TensorInfo> inputs = model->inputs(), outputs = model->outputs();

  // 1. Inputs: names, files, types, values.
  std::map<std::string, OwnedTensor> arrays;
  Feeds feeds;
  std::map<std::string, int64_t> bindings;
  for (const InputSpec& spec : resolve_input_specs(opt.inputs, inputs)) {
    auto array = load_npy(spec.file);
    if (!array.ok()) fail("input \"" + spec.name + "\": " + array.status().message());
    const TensorInfo& declared = *find_input(inputs, spec.name);
    if (Status s = check_input(declared, array->view(), &bindings); !s.ok()) {
      std::string hint;
      const DataType want = declared.dtype;
      auto float_type = [](DataType t) { return is_float(static_cast<DType>(static_cast<int32_t>(t))); };
      const bool floats = float_type(array->dtype()) && float_type(want);
      if (floats && array->dtype() != want) {
        // NumPy's default is float64; calibration converts it, run does not
        // (it runs exactly what it is given).
        hint = "; save the array as " + std::string(data_type_name(want)) + ", e.g. numpy.save(\"" + spec.file +
               "\", arr.astype(numpy." + data_type_name(want) + "))";
      }
      fail(s.message() + " in " + spec.file + hint);
    }
    if (!opt.allow_nonfinite) check_finite(spec.name, spec.file, ApiAccess::share(*array));
    arrays[spec.name] = *array;
    feeds[spec.name] = arrays[spec.name].view();
  }

  if (opt.compare_reference || opt.compare_all) {
    // Debugging the compiled plan against the QDQ simulation
    // (runtime/compare_values.h): every intermediate both executors keep.
    std::map<std::string, Tensor> tensors;
    for (const auto& [name, array] : arrays) tensors[name] = ApiAccess::share(array);
    const auto report =
        compare_compiled_to_reference(ApiAccess::impl(*model, "run").runnable(), tensors, default_compile_options());
    std::cout << describe_comparison(report, 20, opt.compare_all);
  }

  SessionOptions session_options;
  session_options.reference = opt.reference;
  auto session = Session::create(*model, session_options);
  if (!session.ok()) fail(session.status());
  *model = OnnxModel();  // the session holds what it needs: the weights are freed with it

  // 2. Outputs: the folder and file names, checked before running.
  const fs::path dir(opt.output_dir);
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    fail("--output-dir " + opt.output_dir + " is a file, not a folder");
  const bool create_dir = !fs::exists(dir, ec);
  const std::vector<fs::path> paths = output_paths(outputs, dir);
  if (!create_dir) {
    for (const auto& p : paths) check_output_target(p, opt.force, "--output-dir");
  }

  // 3. Run, write every output to its temporary file, then rename them all:
  // a failure on the way leaves no output file behind (io/output_file.h).
  auto results = session->run(feeds);
  if (!results.ok()) fail(results.status());
  // The folder is made only now, so a failed run leaves nothing behind.
  if (create_dir && (!fs::create_directories(dir, ec) || ec)) {
    fail("--output-dir " + opt.output_dir + ": cannot create the folder (" + ec.message() + ")");
  }
  std::vector<std::unique_ptr<OutputFile>> files;
  std::map<std::string, Tensor> tensors;
  for (const auto& [name, result] : *results) tensors[name] = ApiAccess::share(result);
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& name = outputs[i].name;
    auto it = tensors.find(name);
    if (it == tensors.end()) fail("output \"" + name + "\" was not produced");
    auto bytes = encode_npy(npy_compatible(it->second, name));
    if (!bytes.ok()) throw Error(bytes.status().code(), paths[i].string() + ": " + bytes.status().message());
    files.push_back(std::make_unique<OutputFile>(paths[i]));
    files.back()->write(*bytes);
  }
  for (auto& file : files) file->commit();
  for (size_t i = 0; i < outputs.size(); ++i) {
    const std::string& name = outputs[i].name;
    auto it = tensors.find(name);
    std::cout << name << "  " << it->second.describe() << "  -> " << paths[i].string();
    // A single row of scores (a classifier's logits): say which is largest.
    const Tensor& out = it->second;
    if (is_float(out.dtype()) && out.numel() > 1 && out.numel() <= 100000 && out.numel() == out.shape().back()) {
      int64_t best = 0;
      for (int64_t k = 1; k < out.numel(); ++k) {
        if (out.get_as_double(k) > out.get_as_double(best)) best = k;
      }
      std::cout << "  argmax " << best;
    }
    std::cout << "\n";
  }
  return 0;
}

}  // namespace

CommandFn add_run_command(CLI::App& app) {
  auto opt = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Run a model on .npy inputs and save its outputs as .npy files");
  cmd->footer(
      "Inputs are NumPy .npy files (C order, little-endian; float16/32/64, (u)int8/16/32/64, bool). Dynamic dims\n"
      "are taken from the given arrays. Inputs with NaN or Inf are refused unless --allow-nonfinite. Each output\n"
      "is saved as DIR/<output name>.npy (characters other than letters, digits, '.', '_', '-' become '_').\n\n"
      "example: kvant run model.onnx --input images=batch.npy --output-dir out/");
  cmd->add_option("model", opt->model, "The ONNX model file")->required();
  cmd->add_option("-i,--input", opt->inputs,
                  "An input as NAME=FILE.npy; repeat for each model input. A single-input model also takes FILE.npy")
      ->allow_extra_args(false);
  cmd->add_option("-o,--output-dir", opt->output_dir, "Folder for the outputs (created if missing)")->required();
  cmd->add_flag("--reference", opt->reference,
                "Run on the reference executor (plain, obviously correct kernels and Q/DQ simulation) instead of "
                "the compiled one, for debugging");
  cmd->add_flag("--compare-reference", opt->compare_reference,
                "Also run the reference executor and print the intermediate values where the compiled plan departs "
                "from it (8-bit codes more than 1 step apart), in plan order: the first is where to look");
  cmd->add_flag("--compare-all", opt->compare_all, "As --compare-reference, listing every value compared");
  cmd->add_flag("--allow-nonfinite", opt->allow_nonfinite, "Accept NaN and Inf in float inputs");
  cmd->add_flag("-f,--force", opt->force, "Overwrite output files that already exist");
  return [opt]() { return run_command(*opt); };
}

}  // namespace kvant::cli
