// kvant inspect: what a model is, what it takes and what it costs.
//
// Prints the file, producer, IR version and opsets; inputs and outputs with
// their types (symbolic dims by name); the operator histogram; parameters
// (elements of floating-point initializers) per dtype with bytes; and MACs per
// compute layer (runtime/model_stats.h for the counting rules). Shapes come
// from ONNX shape inference at load time; --shape fixes symbolic input dims so
// that every layer's MACs can be known.
//
// The model is loaded, measured (model_stats) and compiled (--plan) through
// the public API (include/kvant/kvant.h); the printing is the command's own.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include "cli/cli_common.h"
#include "cli/json.h"
#include "kvant/kvant.h"

namespace kvant::cli {

namespace {

struct InspectOptions {
  std::string model;
  std::vector<std::string> shapes;
  bool json = false;
  bool layers = false;
  bool plan = false;
  int threads = 1;
  int64_t batch = 1;
  std::vector<std::string> batch_dims;         // symbolic leading dims set to `batch`
  std::map<std::string, TensorInfo> declared;  // inputs' declared types, before that
};

using ShapeMap = std::map<std::string, std::vector<int64_t>>;

// The library's name of a dtype ("float32"; "string" too, which the API's
// DataType has no name for).
const char* type_name(DataType dtype) { return dtype_name(static_cast<DType>(static_cast<int32_t>(dtype))); }

// Inputs whose only unknown dim is the leading (batch) one get `batch` there,
// as model summaries usually count per sample; --shape wins. Returns the
// names of the dims so fixed, for the note printed under MACs.
std::vector<std::string> default_batch_dims(InspectOptions& opt, ShapeMap& overrides) {
  ModelLoadOptions bare;
  bare.infer_shapes = false;
  const OnnxModel model = load_api_model(opt.model, bare);
  std::vector<std::string> fixed;
  for (const TensorInfo& in : model.inputs()) {  // initializer-backed inputs are not listed
    if (overrides.count(in.name)) continue;
    if (!in.has_shape || in.shape.empty() || in.shape[0] >= 0) continue;
    std::vector<int64_t> dims{opt.batch};
    for (size_t i = 1; i < in.shape.size(); ++i) {
      if (in.shape[i] < 0) {
        dims.clear();
        break;
      }
      dims.push_back(in.shape[i]);
    }
    if (dims.empty()) continue;
    overrides[in.name] = dims;
    opt.declared[in.name] = in;
    std::string dim_name = in.dim_names[0].empty() ? "?" : in.dim_names[0];
    if (std::find(fixed.begin(), fixed.end(), dim_name) == fixed.end()) fixed.push_back(dim_name);
  }
  return fixed;
}

// The compiled plan for the declared (or --shape, or --batch) input shapes.
void print_plan(const InspectOptions& opt, const OnnxModel& model, std::ostream& out) {
  ShapeMap shapes;
  for (const TensorInfo& in : model.inputs()) {
    for (int64_t d : in.shape) {
      if (d < 0) {
        throw Error(ErrorCode::kInvalidArgument, "--plan needs every input dim: give --shape " + in.name +
                                                     "=... (it is " + type_to_string(in) + ")");
      }
    }
    shapes[in.name] = in.shape;
  }
  check_threads(opt.threads);
  SessionOptions options;
  options.threads = opt.threads;
  auto session = Session::create(model, options);
  throw_if_error(session.status());
  throw_if_error(session->prepare(shapes));
  out << "compiled plan\n" << session->describe();
}

constexpr size_t kTopLayers = 10;

std::string output_shape_text(const LayerCost& layer) {
  if (layer.has_output_type) return type_to_string(layer.output);
  return layer.output.name.empty() ? "" : "?";
}

std::string opset_text(const ModelStats& stats) {
  std::string s;
  for (const auto& [domain, version] : stats.opsets) {
    s += (s.empty() ? "" : ", ") + (domain.empty() ? std::string("ai.onnx") : domain) + " " + std::to_string(version);
  }
  return s;
}

Json shape_json(const TensorInfo& info) {
  if (!info.has_shape) return Json();
  Json dims = Json::array();
  for (size_t i = 0; i < info.shape.size(); ++i) {
    if (info.shape[i] >= 0) {
      dims.push(info.shape[i]);
    } else if (!info.dim_names[i].empty()) {
      dims.push(info.dim_names[i]);
    } else {
      dims.push(Json());
    }
  }
  return dims;
}

Json values_json(const std::vector<TensorInfo>& values) {
  Json arr = Json::array();
  for (const auto& v : values) {
    arr.push(Json::object().set("name", v.name).set("dtype", type_name(v.dtype)).set("shape", shape_json(v)));
  }
  return arr;
}

// Layers sorted by MACs, largest first; unknown ones last, in graph order.
std::vector<const LayerCost*> by_macs(const ModelStats& stats) {
  std::vector<const LayerCost*> layers;
  for (const auto& l : stats.layers) layers.push_back(&l);
  std::stable_sort(layers.begin(), layers.end(),
                   [](const LayerCost* a, const LayerCost* b) { return a->macs.value_or(-1) > b->macs.value_or(-1); });
  return layers;
}

bool has_symbolic_input(const ModelStats& stats) {
  for (const auto& in : stats.inputs) {
    if (!in.has_shape) return true;
    for (int64_t d : in.shape) {
      if (d < 0) return true;
    }
  }
  return false;
}

void print_json(const InspectOptions& opt, const ModelStats& stats, int64_t file_bytes) {
  Json ops = Json::object();
  for (const auto& op : stats.operators) ops.set(op.op, op.nodes);
  Json opsets = Json::object();
  for (const auto& [domain, version] : stats.opsets) opsets.set(domain.empty() ? "ai.onnx" : domain, version);
  Json unsupported = Json::array();
  for (const auto& line : stats.unsupported) unsupported.push(line);
  Json quantization = Json::array();
  for (const auto& format : stats.quantization) quantization.push(format);

  Json groups = Json::array();
  for (const auto& g : stats.initializers) {
    groups.push(Json::object()
                    .set("dtype", type_name(g.dtype))
                    .set("tensors", g.tensors)
                    .set("elements", g.elements)
                    .set("bytes", g.bytes));
  }
  Json layers = Json::array();
  for (const auto& l : stats.layers) {
    Json layer = Json::object().set("name", l.node).set("op", l.op_type);
    layer.set("macs", l.macs ? Json(*l.macs) : Json());
    if (!l.macs) layer.set("reason", l.reason);
    layers.push(std::move(layer));
  }
  Json assumed = Json::array();
  for (const auto& n : opt.batch_dims) assumed.push(n);
  Json root = Json::object();
  root.set("file", opt.model)
      .set("file_bytes", file_bytes)
      .set("producer_name", stats.producer_name)
      .set("producer_version", stats.producer_version)
      .set("ir_version", stats.ir_version)
      .set("opsets", std::move(opsets))
      .set("inputs", values_json(stats.inputs))
      .set("outputs", values_json(stats.outputs))
      .set("nodes", stats.nodes)
      .set("operators", std::move(ops))
      .set("unsupported_operators", std::move(unsupported))
      .set("quantization", std::move(quantization))
      .set("parameters", Json::object()
                             .set("total", stats.parameters)
                             .set("bytes", stats.parameter_bytes)
                             .set("initializer_bytes", stats.initializer_bytes)
                             .set("by_dtype", std::move(groups)))
      .set("macs", Json::object()
                       .set("total", stats.macs)
                       .set("layers_counted", static_cast<int64_t>(stats.layers.size()))
                       .set("layers_unknown", stats.macs_unknown)
                       .set("batch", opt.batch)
                       .set("batch_dims_assumed", std::move(assumed))
                       .set("layers", std::move(layers)));
  std::cout << root.dump() << "\n";
}

void print_text(const InspectOptions& opt, const ModelStats& stats, int64_t file_bytes) {
  auto& out = std::cout;
  out << "model       " << opt.model << " (" << format_bytes(file_bytes) << ")\n";
  out << "producer    "
      << (stats.producer_name.empty()
              ? "(not recorded)"
              : stats.producer_name + (stats.producer_version.empty() ? "" : " " + stats.producer_version))
      << "\n";
  out << "format      IR version " << stats.ir_version << ", opsets: " << opset_text(stats) << "\n";
  if (!stats.quantization.empty()) {
    std::string formats;
    for (const auto& f : stats.quantization) formats += (formats.empty() ? "" : ", ") + f;
    out << "quantized   " << formats << "\n";
  }

  auto print_values = [&](const char* title, const std::vector<TensorInfo>& values) {
    size_t width = 4;
    for (const auto& v : values) width = std::max(width, v.name.size());
    out << title << "\n";
    for (const auto& v : values) {
      out << "  " << v.name << std::string(width - v.name.size() + 2, ' ') << type_to_string(v) << "\n";
    }
  };
  print_values("inputs", stats.inputs);
  print_values("outputs", stats.outputs);

  out << "operators   " << stats.nodes << (stats.nodes == 1 ? " node, " : " nodes, ") << stats.operators.size()
      << (stats.operators.size() == 1 ? " operator type\n" : " operator types\n");
  for (const auto& op : stats.operators) {
    out << "  " << op.op << std::string(op.op.size() < 28 ? 28 - op.op.size() : 1, ' ') << op.nodes << "\n";
  }
  if (!stats.unsupported.empty()) {
    out << "not yet supported by kvant\n";
    for (const auto& line : stats.unsupported) out << "  " << line << "\n";
  }

  out << "parameters  " << format_count(stats.parameters) << " (" << with_commas(stats.parameters) << ", "
      << format_bytes(stats.parameter_bytes) << ")\n";
  for (const auto& g : stats.initializers) {
    const std::string name = type_name(g.dtype);
    out << "  " << name << std::string(10 - std::min<size_t>(name.size(), 9), ' ') << with_commas(g.elements)
        << " elements in " << g.tensors << (g.tensors == 1 ? " tensor, " : " tensors, ") << format_bytes(g.bytes)
        << (g.parameters ? "" : " (not counted as parameters)") << "\n";
  }

  out << "MACs        ";
  if (stats.macs_unknown && stats.macs == 0) {
    out << "unknown";
  } else {
    out << (stats.macs_unknown ? "at least " : "") << format_count(stats.macs) << " (" << with_commas(stats.macs)
        << ")";
  }
  out << " in " << stats.layers.size() << (stats.layers.size() == 1 ? " compute layer" : " compute layers");
  if (stats.macs_unknown) out << ", " << stats.macs_unknown << " unknown";
  out << "\n";
  if (!opt.batch_dims.empty()) {
    std::string names;
    for (const auto& n : opt.batch_dims) names += (names.empty() ? "'" : ", '") + n + "'";
    out << "  (symbolic leading dim " << names << " taken as " << opt.batch << "; --batch N or --shape to change)\n";
  }
  if (stats.macs_unknown && has_symbolic_input(stats)) {
    out << "  (inputs have symbolic dims: give --shape NAME=1x3x224x224 to count every layer)\n";
  }
  if (stats.layers.empty()) return;

  std::vector<const LayerCost*> shown;
  if (opt.layers) {
    for (const auto& l : stats.layers) shown.push_back(&l);
    out << "layers (graph order)\n";
  } else {
    shown = by_macs(stats);
    if (shown.size() > kTopLayers) shown.resize(kTopLayers);
    out << "top " << shown.size() << " layers by MACs (--layers lists all)\n";
  }
  size_t name_width = 4, op_width = 2;
  for (const LayerCost* l : shown) {
    name_width = std::max(name_width, std::min<size_t>(l->node.size(), 48));
    op_width = std::max(op_width, l->op_type.size());
  }
  auto pad = [](const std::string& s, size_t width) {
    return s.size() >= width ? s + " " : s + std::string(width - s.size() + 1, ' ');
  };
  out << "  " << pad("node", name_width) << pad("op", op_width) << pad("MACs", 10) << pad("share", 7) << "output\n";
  for (const LayerCost* l : shown) {
    out << "  " << pad(l->node, name_width) << pad(l->op_type, op_width);
    if (l->macs) {
      char share[32];
      std::snprintf(share, sizeof(share), "%.1f%%",
                    stats.macs > 0 ? 100.0 * static_cast<double>(*l->macs) / static_cast<double>(stats.macs) : 0.0);
      out << pad(format_count(*l->macs), 10) << pad(share, 7) << output_shape_text(*l) << "\n";
    } else {
      out << "unknown (" << l->reason << ")\n";
    }
  }
}

}  // namespace

CommandFn add_inspect_command(CLI::App& app) {
  auto opt = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show a model's inputs, outputs, operators, parameters and MACs");
  cmd->footer(
      "Parameters are the elements of floating-point initializers. MACs (multiply-accumulates) are counted for\n"
      "Conv, ConvTranspose, Gemm, MatMul, Einsum, LSTM/GRU/RNN and their quantized forms:\n"
      "Conv = N*OutC*OutH*OutW*(InC/group)*kH*kW, Gemm/MatMul = M*N*K (times batch).\n"
      "A layer whose shapes depend on a symbolic dim is 'unknown' until --shape fixes that dim.\n\n"
      "example: kvant inspect resnet50.onnx --shape input=1x3x224x224 --layers");
  cmd->add_option("model", opt->model, "The ONNX model file")->required();
  cmd->add_option("--shape", opt->shapes,
                  "Fix an input's shape, NAME=DIMS (e.g. input=1x3x224x224); repeat for several inputs")
      ->allow_extra_args(false);
  cmd->add_flag("--json", opt->json, "Print the report as JSON (every layer included)");
  cmd->add_flag("--layers", opt->layers, "List every compute layer's MACs, in graph order (default: the top 10)");
  cmd->add_flag("--plan", opt->plan,
                "Also compile the model and print the plan: kernel per step, arena offsets, arena size vs the sum "
                "of all tensors");
  cmd->add_option("--threads", opt->threads, "Threads for --plan")->capture_default_str();
  cmd->add_option("--batch", opt->batch,
                  "Size given to an input's symbolic leading (batch) dim when --shape does not fix that input")
      ->capture_default_str();
  return [opt]() {
    if (opt->batch < 1)
      throw Error(ErrorCode::kInvalidArgument, "--batch must be at least 1, got " + std::to_string(opt->batch));
    ModelLoadOptions load;  // with shape inference: every layer's shapes, for its MACs
    load.input_shapes = parse_shape_args(opt->shapes);
    opt->batch_dims = default_batch_dims(*opt, load.input_shapes);
    const OnnxModel model = load_api_model(opt->model, load);
    auto measured = model_stats(model);
    throw_if_error(measured.status());
    ModelStats& stats = *measured;
    for (auto& in : stats.inputs) {  // show what the file declares
      if (auto it = opt->declared.find(in.name); it != opt->declared.end()) in = it->second;
    }
    std::error_code ec;
    const auto size = std::filesystem::file_size(opt->model, ec);
    const int64_t file_bytes = ec ? 0 : static_cast<int64_t>(size);
    if (opt->json) {
      print_json(*opt, stats, file_bytes);
    } else {
      print_text(*opt, stats, file_bytes);
      if (opt->plan) print_plan(*opt, model, std::cout);
    }
    return 0;
  };
}

}  // namespace kvant::cli
