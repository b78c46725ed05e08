// Upgrading a model from ai.onnx opset 7..12 to opset 13 (docs/opsets.md).
//
// Each rewrite keeps what the node computes under the old opset's rules:
//   Softmax/LogSoftmax/Hardmax  before 13: X is viewed as 2-D
//       [d0*..*d(axis-1), d(axis)*..*d(r-1)] and normalized per row. Where
//       axis is the last dim (or every dim after it is a known 1) this is
//       the opset-13 op along `axis`; otherwise
//       Flatten(axis) -> op(axis = 1) -> Reshape(to Shape(X)).
//   Upsample(X, scales) (opset 9: input; 7-8: attribute)
//       -> Resize(X, "", scales, mode, asymmetric, nearest_mode floor).
//   Resize (10): Resize(X, scales) -> Resize(X, "", scales), asymmetric,
//       nearest_mode floor (what Resize-10 computes). Resize (11-12) with
//       coordinate_transformation_mode tf_half_pixel_for_nn (removed in 13):
//       half_pixel with the nearest rounding shifted by half a step.
//   Attributes that became inputs: Slice starts/ends/axes (10), TopK k (10),
//       Clip min/max (11), Pad pads/value (11), Dropout ratio (12),
//       Split split, Squeeze/Unsqueeze axes, ReduceSum axes (13).
//   Dropout (< 10): its mask output was X's type, now bool: a read mask
//       gets a Cast back to X's type.
//   BatchNormalization: `spatial` removed (9); spatial = 0 (per-element
//       statistics) becomes (X - mean) / sqrt(var + eps) * scale + B;
//       training outputs (mean, var, saved_mean, saved_var) nobody reads are
//       dropped (inference computes none of them).
//   Scatter (deprecated in 11) -> ScatterElements (same meaning).
//   Experimental ops removed in 10: ImageScaler -> Mul + Add,
//       Affine -> Mul + Add, Scale -> Mul, ScaledTanh -> Mul, Tanh, Mul,
//       ParametricSoftplus -> Mul, Softplus, Mul, DynamicSlice -> Slice.
// Every other change between 7 and 13 adds types, optional inputs or
// attributes whose defaults keep the old meaning. Scan-8 (batch axis) and
// the remaining experimental ops make the upgrade fail with their name.
#include <map>
#include <memory>
#include <set>
#include <unordered_set>

#include "kvant/status.h"
#include "passes/pass.h"

namespace kvant {

namespace {

class Upgrader {
 public:
  Upgrader(Model& model, int64_t from) : model_(model), from_(from) { collect_names(model.graph, used_); }

  void run() { upgrade_graph(model_.graph); }

 private:
  Model& model_;
  int64_t from_;
  std::unordered_set<std::string> used_;

  std::string fresh(const std::string& base) {
    std::string name = base;
    for (int k = 1; used_.count(name); ++k) name = base + "_" + std::to_string(k);
    used_.insert(name);
    return name;
  }

  // Adds `t` as an initializer of `g` under a fresh name derived from `base`.
  std::string constant(Graph& g, const std::string& base, Tensor t) {
    const std::string name = fresh(base);
    g.initializers[name] = std::move(t);
    return name;
  }

  std::string ints_input(Graph& g, const Node& n, const std::string& what, const std::vector<int64_t>& v) {
    return constant(g, n.name + "/" + what, Tensor::from_vector(v, {static_cast<int64_t>(v.size())}));
  }

  static const TypeInfo* type_of(const Graph& g, const std::string& name) {
    if (auto it = g.value_info.find(name); it != g.value_info.end()) return &it->second.type;
    if (const ValueInfo* in = g.find_input(name)) return &in->type;
    for (const auto& o : g.outputs) {
      if (o.name == name) return &o.type;
    }
    return nullptr;
  }

  static DType dtype_of(const Graph& g, const std::string& name) {
    if (auto it = g.initializers.find(name); it != g.initializers.end()) return it->second.dtype();
    const TypeInfo* t = type_of(g, name);
    return t && t->dtype != DType::kUndefined ? t->dtype : DType::kFloat32;
  }

  // A scalar of X's floating type holding `v` (Clip bounds, Pad value).
  std::string scalar_like(Graph& g, const Node& n, const std::string& what, double v) {
    const DType dt = dtype_of(g, n.inputs[0]);
    Tensor t = dt == DType::kFloat64 ? Tensor::scalar<double>(v) : Tensor::scalar<float>(static_cast<float>(v));
    if (dt != DType::kFloat64 && dt != DType::kFloat32) {
      throw Error(ErrorCode::kUnsupported, n.describe() + ": cannot carry attribute '" + what + "' of a " +
                                               dtype_name(dt) + " input from opset " + std::to_string(from_) +
                                               " to 13");
    }
    return constant(g, n.name + "/" + what, std::move(t));
  }

  // Moves int-list attribute `key` to input `index` (filling skipped optional
  // inputs with ""), if present.
  void attr_to_input(Graph& g, Node& n, const std::string& key, size_t index) {
    if (!n.has_attr(key)) return;
    const std::string name = ints_input(g, n, key, n.attr_ints(key));
    n.attributes.erase(key);
    if (n.inputs.size() <= index) n.inputs.resize(index + 1);
    n.inputs[index] = name;
  }

  [[noreturn]] void cannot(const Node& n, const std::string& why) const {
    throw Error(ErrorCode::kUnsupported,
                n.describe() + ": cannot carry this operator from opset " + std::to_string(from_) + " to 13: " + why);
  }

  void upgrade_graph(Graph& g);
  // Rewrites node `n` of `g` in place; nodes to put before / after it go to
  // `before` / `after`.
  void upgrade_node(Graph& g, Node& n, std::vector<Node>& before, std::vector<Node>& after,
                    const std::unordered_map<std::string, int>& reads);
  void softmax(Graph& g, Node& n, std::vector<Node>& before, std::vector<Node>& after);
  void batchnorm(Graph& g, Node& n, std::vector<Node>& before, const std::unordered_map<std::string, int>& reads);
  void experimental(Graph& g, Node& n, std::vector<Node>& before);
};

void Upgrader::upgrade_graph(Graph& g) {
  const std::unordered_map<std::string, int> reads = count_reads(g);
  std::vector<Node> out;
  out.reserve(g.nodes.size());
  for (Node& node : g.nodes) {
    // A copied Model shares its subgraphs with the original: upgrade copies.
    for (auto& [key, attr] : node.attributes) {
      if (attr.g) attr.g = std::make_shared<Graph>(*attr.g);
      for (auto& sub : attr.graphs) {
        if (sub) sub = std::make_shared<Graph>(*sub);
      }
    }
    for (Graph* sub : subgraphs_of(node)) upgrade_graph(*sub);
    std::vector<Node> before, after;
    if (node.domain.empty()) upgrade_node(g, node, before, after, reads);
    for (Node& b : before) out.push_back(std::move(b));
    out.push_back(std::move(node));
    for (Node& a : after) out.push_back(std::move(a));
  }
  g.nodes = std::move(out);
}

void Upgrader::upgrade_node(Graph& g, Node& n, std::vector<Node>& before, std::vector<Node>& after,
                            const std::unordered_map<std::string, int>& reads) {
  const std::string& op = n.op_type;
  if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") {
    softmax(g, n, before, after);
  } else if (op == "Upsample") {
    const std::string mode = n.attr_string("mode", "nearest");
    if (mode != "nearest" && mode != "linear" && mode != "bilinear") cannot(n, "unknown mode '" + mode + "'");
    std::string scales;
    if (n.has_attr("scales")) {
      scales = constant(
          g, n.name + "/scales",
          Tensor::from_vector(n.attr_floats("scales"), {static_cast<int64_t>(n.attr_floats("scales").size())}));
    } else if (n.inputs.size() >= 2 && !n.inputs[1].empty()) {
      scales = n.inputs[1];
    } else {
      cannot(n, "Upsample without scales");
    }
    n.op_type = "Resize";
    n.attributes.clear();
    n.attributes["mode"] = string_attr(mode == "bilinear" ? "linear" : mode);
    n.attributes["coordinate_transformation_mode"] = string_attr("asymmetric");
    n.attributes["nearest_mode"] = string_attr("floor");
    n.inputs = {n.inputs[0], "", scales};
  } else if (op == "Resize" && from_ < 11) {
    if (n.inputs.size() < 2) cannot(n, "Resize-10 needs scales");
    n.inputs = {n.inputs[0], "", n.inputs[1]};
    n.attributes["coordinate_transformation_mode"] = string_attr("asymmetric");
    n.attributes["nearest_mode"] = string_attr("floor");
  } else if (op == "Resize" && n.attr_string("coordinate_transformation_mode", "") == "tf_half_pixel_for_nn") {
    // Removed in 13. Nearest on x' = (x + 0.5) / s is nearest on the
    // half_pixel x' - 0.5 with the rounding shifted by half a step:
    // floor(v) = round_prefer_ceil(v - 0.5), round_prefer_floor(v) = ceil(v - 0.5).
    const std::string nearest = n.attr_string("nearest_mode", "round_prefer_floor");
    const std::string shifted = nearest == "floor"                ? "round_prefer_ceil"
                                : nearest == "round_prefer_floor" ? "ceil"
                                                                  : "";
    if (n.attr_string("mode", "nearest") != "nearest" || shifted.empty()) {
      cannot(n, "coordinate_transformation_mode tf_half_pixel_for_nn with mode '" + n.attr_string("mode", "nearest") +
                    "' and nearest_mode '" + nearest + "' has no opset-13 equivalent");
    }
    n.attributes["coordinate_transformation_mode"] = string_attr("half_pixel");
    n.attributes["nearest_mode"] = string_attr(shifted);
  } else if (op == "Slice" && from_ < 10) {
    if (!n.has_attr("starts") || !n.has_attr("ends")) cannot(n, "Slice needs 'starts' and 'ends'");
    attr_to_input(g, n, "starts", 1);
    attr_to_input(g, n, "ends", 2);
    attr_to_input(g, n, "axes", 3);
  } else if (op == "TopK" && from_ < 10) {
    if (!n.has_attr("k")) cannot(n, "TopK needs 'k'");
    n.inputs.resize(1);
    n.inputs.push_back(ints_input(g, n, "k", {n.attr_int("k", 0)}));
    n.attributes.erase("k");
  } else if (op == "Clip" && from_ < 11) {
    n.inputs.resize(1);
    if (n.has_attr("min")) n.inputs.push_back(scalar_like(g, n, "min", n.attr_float("min", 0)));
    if (n.has_attr("max")) {
      if (n.inputs.size() == 1) n.inputs.push_back("");
      n.inputs.push_back(scalar_like(g, n, "max", n.attr_float("max", 0)));
    }
    n.attributes.erase("min");
    n.attributes.erase("max");
  } else if (op == "Pad" && from_ < 11) {
    if (!n.has_attr("pads")) cannot(n, "Pad needs 'pads'");
    n.inputs.resize(1);
    n.inputs.push_back(ints_input(g, n, "pads", n.attr_ints("pads")));
    if (n.attr_string("mode", "constant") == "constant" && n.attr_float("value", 0.0f) != 0.0f) {
      n.inputs.push_back(scalar_like(g, n, "value", n.attr_float("value", 0.0f)));
    }
    n.attributes.erase("pads");
    n.attributes.erase("value");
  } else if (op == "Dropout") {
    if (from_ < 12 && n.has_attr("ratio")) {
      const float ratio = n.attr_float("ratio", 0.5f);
      n.inputs.resize(1);
      n.inputs.push_back(constant(g, n.name + "/ratio", Tensor::scalar<float>(ratio)));
      n.attributes.erase("ratio");
    }
    n.attributes.erase("is_test");
    if (from_ < 10 && n.outputs.size() > 1 && !n.outputs[1].empty()) {
      auto it = reads.find(n.outputs[1]);
      if (it != reads.end() && it->second > 0) {
        const std::string mask = n.outputs[1];
        n.outputs[1] = fresh(mask + "/bool");
        Node cast = make_node(fresh(n.name + "/mask_cast"), "Cast", {n.outputs[1]}, {mask});
        set_attr(cast, "to", static_cast<int64_t>(dtype_of(g, n.inputs[0])));
        after.push_back(std::move(cast));
      } else {
        n.outputs.resize(1);
      }
    }
  } else if (op == "Split" && from_ < 13) {
    attr_to_input(g, n, "split", 1);
  } else if ((op == "Squeeze" || op == "Unsqueeze" || op == "ReduceSum") && from_ < 13) {
    attr_to_input(g, n, "axes", 1);
  } else if (op == "BatchNormalization") {
    batchnorm(g, n, before, reads);
  } else if (op == "Scatter") {
    n.op_type = "ScatterElements";
  } else if (op == "Scan" && from_ < 9) {
    cannot(n, "Scan-8 has a batch axis that Scan-9 dropped; re-export the model at opset 9 or later");
  } else {
    experimental(g, n, before);
  }
}

void Upgrader::softmax(Graph& g, Node& n, std::vector<Node>& before, std::vector<Node>& after) {
  if (from_ >= 13) return;
  int64_t axis = n.attr_int("axis", 1);
  const TypeInfo* t = type_of(g, n.inputs[0]);
  if (t && t->has_shape) {
    const int64_t rank = static_cast<int64_t>(t->dims.size());
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= std::max<int64_t>(rank, 1)) cannot(n, "axis out of range");
    bool trailing_ones = true;  // every dim after `axis` is 1: one row per axis slice either way
    for (int64_t d = axis + 1; d < rank; ++d)
      trailing_ones = trailing_ones && t->dims[d].known() && t->dims[d].value == 1;
    if (trailing_ones) {
      set_attr(n, "axis", axis);
      return;
    }
  } else if (axis == -1) {
    return;  // the last axis either way
  }
  // Flatten(X, axis) -> op(axis = 1) -> Reshape(to Shape(X)).
  const std::string x = n.inputs[0], y = n.outputs[0];
  const std::string flat = fresh(n.name + "/flat"), shape = fresh(n.name + "/shape"), y2d = fresh(n.name + "/2d");
  Node flatten = make_node(fresh(n.name + "/Flatten"), "Flatten", {x}, {flat});
  set_attr(flatten, "axis", axis);
  before.push_back(std::move(flatten));
  before.push_back(make_node(fresh(n.name + "/Shape"), "Shape", {x}, {shape}));
  n.inputs[0] = flat;
  n.outputs[0] = y2d;
  set_attr(n, "axis", int64_t{1});
  after.push_back(make_node(fresh(n.name + "/Reshape"), "Reshape", {y2d, shape}, {y}));
}

void Upgrader::batchnorm(Graph& g, Node& n, std::vector<Node>& before,
                         const std::unordered_map<std::string, int>& reads) {
  n.attributes.erase("is_test");
  n.attributes.erase("consumed_inputs");
  for (size_t i = 1; i < n.outputs.size(); ++i) {
    auto it = reads.find(n.outputs[i]);
    if (!n.outputs[i].empty() && it != reads.end() && it->second > 0) {
      cannot(n, "output " + std::to_string(i) + " (a training statistic) is read; inference computes none");
    }
  }
  n.outputs.resize(1);
  if (from_ >= 9) return;
  const bool spatial = n.attr_int("spatial", 1) != 0;
  n.attributes.erase("spatial");
  if (spatial) return;
  if (n.inputs.size() < 5) cannot(n, "BatchNormalization needs 5 inputs");
  // Per-element statistics: y = (x - mean) / sqrt(var + eps) * scale + B,
  // where scale, B, mean, var have shape [C, D1, ...] and broadcast from the right.
  const float eps = n.attr_float("epsilon", 1e-5f);
  const std::string base = n.name;
  const std::string centred = fresh(base + "/centred"), var_eps = fresh(base + "/var_eps");
  const std::string stddev = fresh(base + "/stddev"), normed = fresh(base + "/normed"),
                    scaled = fresh(base + "/scaled");
  const std::string eps_name = constant(g, base + "/epsilon", Tensor::scalar<float>(eps));
  before.push_back(make_node(fresh(base + "/Sub"), "Sub", {n.inputs[0], n.inputs[3]}, {centred}));
  before.push_back(make_node(fresh(base + "/AddEps"), "Add", {n.inputs[4], eps_name}, {var_eps}));
  before.push_back(make_node(fresh(base + "/Sqrt"), "Sqrt", {var_eps}, {stddev}));
  before.push_back(make_node(fresh(base + "/Div"), "Div", {centred, stddev}, {normed}));
  before.push_back(make_node(fresh(base + "/Mul"), "Mul", {normed, n.inputs[1]}, {scaled}));
  n = make_node(n.name, "Add", {scaled, n.inputs[2]}, {n.outputs[0]});
}

// The experimental ops of opsets 1..9 (removed in 10), as standard ones.
void Upgrader::experimental(Graph& g, Node& n, std::vector<Node>& before) {
  const std::string& op = n.op_type;
  const std::string base = n.name;
  auto mul_by = [&](const std::string& in, float v, const std::string& out) {
    return make_node(fresh(base + "/Mul"), "Mul", {in, constant(g, base + "/factor", Tensor::scalar<float>(v))}, {out});
  };
  if (op == "ImageScaler") {
    // y[n, c, ...] = scale * x[n, c, ...] + bias[c]
    const std::vector<float> bias = n.attr_floats("bias");
    const std::string scaled = fresh(base + "/scaled");
    before.push_back(mul_by(n.inputs[0], n.attr_float("scale", 1.0f), scaled));
    const std::string b =
        constant(g, base + "/bias", Tensor::from_vector(bias, {static_cast<int64_t>(bias.size()), 1, 1}));
    n = make_node(base, "Add", {scaled, b}, {n.outputs[0]});
  } else if (op == "Affine") {  // alpha * x + beta
    const std::string scaled = fresh(base + "/scaled");
    before.push_back(mul_by(n.inputs[0], n.attr_float("alpha", 1.0f), scaled));
    n = make_node(base, "Add", {scaled, constant(g, base + "/beta", Tensor::scalar<float>(n.attr_float("beta", 0)))},
                  {n.outputs[0]});
  } else if (op == "Scale") {  // x * scale
    n = mul_by(n.inputs[0], n.attr_float("scale", 1.0f), n.outputs[0]);
    n.name = base;
  } else if (op == "ScaledTanh" || op == "ParametricSoftplus") {  // alpha * f(beta * x)
    const std::string inner = fresh(base + "/inner"), act = fresh(base + "/act");
    before.push_back(mul_by(n.inputs[0], n.attr_float("beta", 1.0f), inner));
    before.push_back(make_node(fresh(base + "/" + op), op == "ScaledTanh" ? "Tanh" : "Softplus", {inner}, {act}));
    n = mul_by(act, n.attr_float("alpha", 1.0f), n.outputs[0]);
    n.name = base;
  } else if (op == "DynamicSlice") {  // same inputs as Slice-10 (data, starts, ends, axes)
    n.op_type = "Slice";
  } else if (op == "Crop" || op == "ConstantFill" || op == "GivenTensorFill" || op == "GRUUnit" || op == "ATen") {
    cannot(n, "an experimental operator removed in opset 10 that kvant does not rewrite");
  }
}

}  // namespace

void upgrade_to_opset13(Model& model) {
  const int64_t from = model.opset();
  if (from >= 13) return;
  if (from < 7) {
    throw Error(ErrorCode::kUnsupported, "the model uses opset " + std::to_string(from) +
                                             "; kvant upgrades models from opset 7 or later (re-export at opset >= 7)");
  }
  Upgrader(model, from).run();
  model.opset_imports[""] = 13;
  if (model.ir_version < 7) model.ir_version = 7;
}

}  // namespace kvant
