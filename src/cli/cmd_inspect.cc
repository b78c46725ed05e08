// kvant inspect: what a model is, what it takes and what it costs.
//
// Prints the file, producer, IR version and opsets; inputs and outputs with
// their types (symbolic dims by name); the operator histogram; parameters
// (elements of floating-point initializers) per dtype with bytes; and MACs per
// compute layer (runtime/model_stats.h for the counting rules). Shapes come
// from ONNX shape inference at load time; --shape fixes symbolic input dims so
// that every layer's MACs can be known.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>

#include "cli/cli_common.h"
#include "cli/json.h"
#include "runtime/executor.h"
#include "runtime/model_stats.h"

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
  std::vector<std::string> batch_dims;       // symbolic leading dims set to `batch`
  std::map<std::string, TypeInfo> declared;  // inputs' declared types, before that
};

// Inputs whose only unknown dim is the leading (batch) one get `batch` there,
// as model summaries usually count per sample; --shape wins. Returns the
// names of the dims so fixed, for the note printed under MACs.
std::vector<std::string> default_batch_dims(InspectOptions& opt, ShapeOverrides& overrides) {
  LoadOptions bare;
  bare.infer_shapes = false;
  const Model model = load_model(opt.model, bare);
  std::vector<std::string> fixed;
  for (const auto& in : model.graph.inputs) {
    if (model.graph.initializers.count(in.name) || overrides.count(in.name)) continue;
    if (!in.type.has_shape || in.type.dims.empty() || in.type.dims[0].known()) continue;
    std::vector<int64_t> dims{opt.batch};
    for (size_t i = 1; i < in.type.dims.size(); ++i) {
      if (!in.type.dims[i].known()) {
        dims.clear();
        break;
      }
      dims.push_back(in.type.dims[i].value);
    }
    if (dims.empty()) continue;
    overrides[in.name] = dims;
    opt.declared[in.name] = in.type;
    std::string dim_name = in.type.dims[0].param.empty() ? "?" : in.type.dims[0].param;
    if (std::find(fixed.begin(), fixed.end(), dim_name) == fixed.end()) fixed.push_back(dim_name);
  }
  return fixed;
}

// The compiled plan for the declared (or --shape) input shapes.
void print_plan(const InspectOptions& opt, const Model& model, std::ostream& out) {
  std::map<std::string, Shape> shapes;
  for (const auto& in : model.graph.inputs) {
    if (model.graph.initializers.count(in.name)) continue;
    Shape shape;
    const bool batch_defaulted = opt.declared.count(in.name) > 0;
    for (const Dim& d : in.type.dims) {
      if (!d.known() && batch_defaulted && shape.empty()) {
        shape.push_back(opt.batch);
        continue;
      }
      if (!d.known()) {
        throw Error(ErrorCode::kInvalidArgument, "--plan needs every input dim: give --shape " + in.name +
                                                     "=... (it is " + in.type.to_string() + ")");
      }
      shape.push_back(d.value);
    }
    shapes[in.name] = shape;
  }
  check_threads(opt.threads);
  CompiledModel compiled(model, default_compile_options(opt.threads));
  compiled.prepare(shapes);
  out << "compiled plan\n" << compiled.describe_plan();
}

constexpr size_t kTopLayers = 10;

void count_ops(const Graph& graph, std::map<std::string, int64_t>& histogram, int64_t& nodes) {
  for (const Node& node : graph.nodes) {
    histogram[node.domain.empty() ? node.op_type : node.domain + ":" + node.op_type] += 1;
    nodes += 1;
    for (const auto& [key, attr] : node.attributes) {
      if (attr.g) count_ops(*attr.g, histogram, nodes);
      for (const auto& g : attr.graphs) count_ops(*g, histogram, nodes);
    }
  }
}

std::vector<std::pair<std::string, int64_t>> sorted_histogram(const std::map<std::string, int64_t>& histogram) {
  std::vector<std::pair<std::string, int64_t>> ops(histogram.begin(), histogram.end());
  std::stable_sort(ops.begin(), ops.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return ops;
}

std::string output_shape_text(const Graph& graph, const Node& node) {
  if (node.outputs.empty() || node.outputs[0].empty()) return "";
  if (auto it = graph.value_info.find(node.outputs[0]); it != graph.value_info.end()) {
    return it->second.type.to_string();
  }
  for (const auto& out : graph.outputs) {
    if (out.name == node.outputs[0]) return out.type.to_string();
  }
  return "?";
}

std::string opset_text(const Model& model) {
  std::string s;
  for (const auto& [domain, version] : model.opset_imports) {
    s += (s.empty() ? "" : ", ") + (domain.empty() ? std::string("ai.onnx") : domain) + " " + std::to_string(version);
  }
  return s;
}

Json shape_json(const TypeInfo& type) {
  if (!type.has_shape) return Json();
  Json dims = Json::array();
  for (const Dim& d : type.dims) {
    if (d.known()) {
      dims.push(d.value);
    } else if (!d.param.empty()) {
      dims.push(d.param);
    } else {
      dims.push(Json());
    }
  }
  return dims;
}

Json values_json(const std::vector<ValueInfo>& values) {
  Json arr = Json::array();
  for (const auto& v : values) {
    arr.push(
        Json::object().set("name", v.name).set("dtype", dtype_name(v.type.dtype)).set("shape", shape_json(v.type)));
  }
  return arr;
}

// Layers sorted by MACs, largest first; unknown ones last, in graph order.
std::vector<const LayerMacs*> by_macs(const MacStats& macs) {
  std::vector<const LayerMacs*> layers;
  for (const auto& l : macs.layers) layers.push_back(&l);
  std::stable_sort(layers.begin(), layers.end(),
                   [](const LayerMacs* a, const LayerMacs* b) { return a->macs.value_or(-1) > b->macs.value_or(-1); });
  return layers;
}

bool has_symbolic_input(const Graph& graph) {
  for (const auto& in : graph.inputs) {
    if (!in.type.has_shape) return true;
    for (const Dim& d : in.type.dims) {
      if (!d.known()) return true;
    }
  }
  return false;
}

void print_json(const InspectOptions& opt, const Model& model, int64_t file_bytes) {
  const Graph& graph = model.graph;
  std::map<std::string, int64_t> histogram;
  int64_t nodes = 0;
  count_ops(graph, histogram, nodes);
  Json ops = Json::object();
  for (const auto& [op, count] : sorted_histogram(histogram)) ops.set(op, count);
  Json opsets = Json::object();
  for (const auto& [domain, version] : model.opset_imports) opsets.set(domain.empty() ? "ai.onnx" : domain, version);
  Json unsupported = Json::array();
  for (const auto& line : unsupported_operators(model)) unsupported.push(line);

  const ParamStats params = count_parameters(graph);
  Json groups = Json::array();
  for (const auto& g : params.by_dtype) {
    groups.push(Json::object()
                    .set("dtype", dtype_name(g.dtype))
                    .set("tensors", g.tensors)
                    .set("elements", g.elements)
                    .set("bytes", g.bytes));
  }
  const MacStats macs = count_macs(graph);
  Json layers = Json::array();
  for (const auto& l : macs.layers) {
    Json layer = Json::object().set("name", l.node->name).set("op", l.node->op_type);
    layer.set("macs", l.macs ? Json(*l.macs) : Json());
    if (!l.macs) layer.set("reason", l.reason);
    layers.push(std::move(layer));
  }
  Json assumed = Json::array();
  for (const auto& n : opt.batch_dims) assumed.push(n);
  Json root = Json::object();
  root.set("file", opt.model)
      .set("file_bytes", file_bytes)
      .set("producer_name", model.producer_name)
      .set("producer_version", model.producer_version)
      .set("ir_version", model.ir_version)
      .set("opsets", std::move(opsets))
      .set("inputs", values_json(graph.inputs))
      .set("outputs", values_json(graph.outputs))
      .set("nodes", nodes)
      .set("operators", std::move(ops))
      .set("unsupported_operators", std::move(unsupported))
      .set("parameters", Json::object()
                             .set("total", params.parameters)
                             .set("bytes", params.parameter_bytes)
                             .set("initializer_bytes", params.total_bytes)
                             .set("by_dtype", std::move(groups)))
      .set("macs", Json::object()
                       .set("total", macs.total)
                       .set("layers_counted", static_cast<int64_t>(macs.layers.size()))
                       .set("layers_unknown", macs.unknown)
                       .set("batch", opt.batch)
                       .set("batch_dims_assumed", std::move(assumed))
                       .set("layers", std::move(layers)));
  std::cout << root.dump() << "\n";
}

void print_text(const InspectOptions& opt, const Model& model, int64_t file_bytes) {
  const Graph& graph = model.graph;
  auto& out = std::cout;
  out << "model       " << opt.model << " (" << format_bytes(file_bytes) << ")\n";
  out << "producer    "
      << (model.producer_name.empty()
              ? "(not recorded)"
              : model.producer_name + (model.producer_version.empty() ? "" : " " + model.producer_version))
      << "\n";
  out << "format      IR version " << model.ir_version << ", opsets: " << opset_text(model) << "\n";

  auto print_values = [&](const char* title, const std::vector<ValueInfo>& values) {
    size_t width = 4;
    for (const auto& v : values) width = std::max(width, v.name.size());
    out << title << "\n";
    for (const auto& v : values) {
      out << "  " << v.name << std::string(width - v.name.size() + 2, ' ') << v.type.to_string() << "\n";
    }
  };
  print_values("inputs", graph.inputs);
  print_values("outputs", graph.outputs);

  std::map<std::string, int64_t> histogram;
  int64_t nodes = 0;
  count_ops(graph, histogram, nodes);
  out << "operators   " << nodes << (nodes == 1 ? " node, " : " nodes, ") << histogram.size()
      << (histogram.size() == 1 ? " operator type\n" : " operator types\n");
  for (const auto& [op, count] : sorted_histogram(histogram)) {
    out << "  " << op << std::string(op.size() < 28 ? 28 - op.size() : 1, ' ') << count << "\n";
  }
  const auto unsupported = unsupported_operators(model);
  if (!unsupported.empty()) {
    out << "not yet supported by kvant\n";
    for (const auto& line : unsupported) out << "  " << line << "\n";
  }

  const ParamStats params = count_parameters(graph);
  out << "parameters  " << format_count(params.parameters) << " (" << with_commas(params.parameters) << ", "
      << format_bytes(params.parameter_bytes) << ")\n";
  for (const auto& g : params.by_dtype) {
    const std::string name = dtype_name(g.dtype);
    out << "  " << name << std::string(10 - std::min<size_t>(name.size(), 9), ' ') << with_commas(g.elements)
        << " elements in " << g.tensors << (g.tensors == 1 ? " tensor, " : " tensors, ") << format_bytes(g.bytes)
        << (is_float(g.dtype) ? "" : " (not counted as parameters)") << "\n";
  }

  const MacStats macs = count_macs(graph);
  out << "MACs        ";
  if (macs.unknown && macs.total == 0) {
    out << "unknown";
  } else {
    out << (macs.unknown ? "at least " : "") << format_count(macs.total) << " (" << with_commas(macs.total) << ")";
  }
  out << " in " << macs.layers.size() << (macs.layers.size() == 1 ? " compute layer" : " compute layers");
  if (macs.unknown) out << ", " << macs.unknown << " unknown";
  out << "\n";
  if (!opt.batch_dims.empty()) {
    std::string names;
    for (const auto& n : opt.batch_dims) names += (names.empty() ? "'" : ", '") + n + "'";
    out << "  (symbolic leading dim " << names << " taken as " << opt.batch << "; --batch N or --shape to change)\n";
  }
  if (macs.unknown && has_symbolic_input(graph)) {
    out << "  (inputs have symbolic dims: give --shape NAME=1x3x224x224 to count every layer)\n";
  }
  if (macs.layers.empty()) return;

  std::vector<const LayerMacs*> shown;
  if (opt.layers) {
    for (const auto& l : macs.layers) shown.push_back(&l);
    out << "layers (graph order)\n";
  } else {
    shown = by_macs(macs);
    if (shown.size() > kTopLayers) shown.resize(kTopLayers);
    out << "top " << shown.size() << " layers by MACs (--layers lists all)\n";
  }
  size_t name_width = 4, op_width = 2;
  for (const LayerMacs* l : shown) {
    name_width = std::max(name_width, std::min<size_t>(l->node->name.size(), 48));
    op_width = std::max(op_width, l->node->op_type.size());
  }
  auto pad = [](const std::string& s, size_t width) {
    return s.size() >= width ? s + " " : s + std::string(width - s.size() + 1, ' ');
  };
  out << "  " << pad("node", name_width) << pad("op", op_width) << pad("MACs", 10) << pad("share", 7) << "output\n";
  for (const LayerMacs* l : shown) {
    out << "  " << pad(l->node->name, name_width) << pad(l->node->op_type, op_width);
    if (l->macs) {
      char share[32];
      std::snprintf(share, sizeof(share), "%.1f%%",
                    macs.total > 0 ? 100.0 * static_cast<double>(*l->macs) / static_cast<double>(macs.total) : 0.0);
      out << pad(format_count(*l->macs), 10) << pad(share, 7) << output_shape_text(graph, *l->node) << "\n";
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
    LoadOptions load;
    load.infer_shapes = true;
    load.input_shapes = parse_shape_args(opt->shapes);
    opt->batch_dims = default_batch_dims(*opt, load.input_shapes);
    Model model = load_model(opt->model, load);
    apply_shape_overrides(model.graph, load.input_shapes);
    for (auto& in : model.graph.inputs) {  // show what the file declares
      if (auto it = opt->declared.find(in.name); it != opt->declared.end()) in.type = it->second;
    }
    std::error_code ec;
    const auto size = std::filesystem::file_size(opt->model, ec);
    const int64_t file_bytes = ec ? 0 : static_cast<int64_t>(size);
    if (opt->json) {
      print_json(*opt, model, file_bytes);
    } else {
      print_text(*opt, model, file_bytes);
      if (opt->plan) print_plan(*opt, model, std::cout);
    }
    return 0;
  };
}

}  // namespace kvant::cli
