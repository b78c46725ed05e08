#include "quant/qdq.h"

#include <algorithm>
#include <cmath>

#include "kvant/status.h"
#include "quant/mse_clip.h"

namespace kvant {

namespace {

// outer x channels x inner view of a tensor around `axis`.
struct AxisView {
  int64_t outer = 1, channels = 1, inner = 1;
};

AxisView view_around(const Shape& shape, int axis) {
  AxisView v;
  if (axis < 0) {
    for (int64_t d : shape) v.inner *= d;
    return v;
  }
  for (int i = 0; i < axis; ++i) v.outer *= shape[static_cast<size_t>(i)];
  v.channels = shape[static_cast<size_t>(axis)];
  for (size_t i = static_cast<size_t>(axis) + 1; i < shape.size(); ++i) v.inner *= shape[i];
  return v;
}

void check_axis(const Tensor& t, int axis) {
  if (axis >= t.rank()) {
    throw Error(ErrorCode::kInvalidArgument,
                "quantization axis " + std::to_string(axis) + " is out of range for " + t.describe());
  }
}

// Index of the scale that element (o, c, i) uses.
int64_t scale_index(const QuantParams& p, const AxisView& v, int64_t o, int64_t c, int64_t i) {
  if (p.axis < 0) return 0;
  if (p.block_size <= 0) return c;
  const int64_t blocks = (v.channels + p.block_size - 1) / p.block_size;
  return (o * blocks + c / p.block_size) * v.inner + i;
}

void store(Tensor& out, int64_t index, int32_t q) {
  switch (out.dtype()) {
    case DType::kInt8: out.data<int8_t>()[index] = static_cast<int8_t>(q); break;
    case DType::kUInt8: out.data<uint8_t>()[index] = static_cast<uint8_t>(q); break;
    case DType::kInt16: out.data<int16_t>()[index] = static_cast<int16_t>(q); break;
    case DType::kUInt16: out.data<uint16_t>()[index] = static_cast<uint16_t>(q); break;
    case DType::kInt32: out.data<int32_t>()[index] = q; break;
    case DType::kInt4:
    case DType::kUInt4: {
      auto* bytes = static_cast<uint8_t*>(out.raw());
      const auto nibble = static_cast<uint8_t>(q & 0x0F);
      uint8_t& b = bytes[index / 2];
      b = index % 2 == 0 ? static_cast<uint8_t>((b & 0xF0) | nibble) : static_cast<uint8_t>((b & 0x0F) | (nibble << 4));
      break;
    }
    default: throw Error(ErrorCode::kUnsupported, std::string("cannot store quantized ") + dtype_name(out.dtype()));
  }
}

Tensor params_scale_tensor(const QuantParams& p, const Shape& weight_shape) {
  if (p.axis < 0) return Tensor::scalar<float>(p.scale.at(0));
  if (p.block_size <= 0) return Tensor::from_vector(p.scale, {static_cast<int64_t>(p.scale.size())});
  Shape s = weight_shape;
  auto& d = s[static_cast<size_t>(p.axis)];
  d = (d + p.block_size - 1) / p.block_size;
  return Tensor::from_vector(p.scale, s);
}

Tensor params_zero_point_tensor(const QuantParams& p, const Shape& scale_shape) {
  Tensor zp(p.storage, scale_shape);
  for (int64_t i = 0; i < zp.numel(); ++i) store(zp, i, p.zero_point.at(static_cast<size_t>(i)));
  return zp;
}

// Scale and zero point initializers "<base>/scale", "<base>/zero_point",
// shared when they already exist (tensors of one parameter group pass the
// group's base). A zero point that is all zeros in a signed type is left out
// (DequantizeLinear's default is 0 of the data's type): it only costs bytes,
// unless `explicit_zero_point`.
void add_params(Graph& graph, const std::string& base, const QuantParams& p, const Shape& shape, Node& node,
                bool explicit_zero_point = false) {
  const std::string scale_name = base + "/scale", zp_name = base + "/zero_point";
  if (!graph.initializers.count(scale_name)) graph.initializers[scale_name] = params_scale_tensor(p, shape);
  node.inputs.push_back(scale_name);
  const bool signed_storage = p.storage == DType::kInt8 || p.storage == DType::kInt4 || p.storage == DType::kInt16;
  const bool all_zero = std::all_of(p.zero_point.begin(), p.zero_point.end(), [](int32_t z) { return z == 0; });
  if (explicit_zero_point || !(signed_storage && all_zero && node.op_type == "DequantizeLinear")) {
    if (!graph.initializers.count(zp_name)) {
      graph.initializers[zp_name] = params_zero_point_tensor(p, graph.initializers.at(scale_name).shape());
    }
    node.inputs.push_back(zp_name);
  }
  if (p.axis >= 0) set_attr(node, "axis", p.axis);
  if (p.block_size > 0) set_attr(node, "block_size", p.block_size);
}

}  // namespace

Tensor quantize_tensor(const Tensor& weights, const QuantParams& p) {
  check_axis(weights, p.axis);
  const AxisView v = view_around(weights.shape(), p.axis);
  const QuantRange range = quant_range(p.storage);
  Tensor out(p.storage, weights.shape());
  const std::vector<float> w = weights.to_float_vector();
  for (int64_t o = 0; o < v.outer; ++o) {
    for (int64_t c = 0; c < v.channels; ++c) {
      for (int64_t i = 0; i < v.inner; ++i) {
        const int64_t index = (o * v.channels + c) * v.inner + i;
        const auto s = static_cast<size_t>(scale_index(p, v, o, c, i));
        if (s >= p.scale.size() || s >= p.zero_point.size()) {
          throw Error(ErrorCode::kInvalidArgument, "quantization parameters are too short for " + weights.describe());
        }
        store(out, index, quantize_value(w[static_cast<size_t>(index)], p.scale[s], p.zero_point[s], range));
      }
    }
  }
  return out;
}

void check_finite_weight(const Tensor& weights, const std::string& name, bool allow_nonfinite) {
  if (allow_nonfinite || !is_float(weights.dtype())) return;
  for (int64_t i = 0; i < weights.numel(); ++i) {
    const double v = weights.get_as_double(i);
    if (std::isfinite(v)) continue;
    throw Error(ErrorCode::kInvalidArgument,
                "initializer \"" + name + "\" " + weights.describe() + ": element " + std::to_string(i) + " is " +
                    (std::isnan(v) ? "NaN" : "Inf") +
                    "; a quantized weight cannot hold it (the FP32 model computes NaN/Inf there). Fix the model, or "
                    "pass --allow-nonfinite to quantize it anyway (NaN becomes the zero point)");
  }
}

QuantParams weight_params(const Tensor& weights, int axis, DType storage, Symmetry symmetry, bool reduce_range) {
  check_axis(weights, axis);
  const AxisView v = view_around(weights.shape(), axis);
  const std::vector<float> w = weights.to_float_vector();
  QuantParams p;
  p.storage = storage;
  p.axis = axis;
  const int64_t channels = axis < 0 ? 1 : v.channels;
  std::vector<float> lo(static_cast<size_t>(channels), 0.0f), hi(static_cast<size_t>(channels), 0.0f);
  for (int64_t o = 0; o < v.outer; ++o) {
    for (int64_t c = 0; c < v.channels; ++c) {
      for (int64_t i = 0; i < v.inner; ++i) {
        const float x = w[static_cast<size_t>((o * v.channels + c) * v.inner + i)];
        if (!std::isfinite(x)) continue;  // only with --allow-nonfinite (check_finite_weight)
        const auto k = static_cast<size_t>(axis < 0 ? 0 : c);
        lo[k] = std::min(lo[k], x);
        hi[k] = std::max(hi[k], x);
      }
    }
  }
  if (storage == DType::kInt4 || storage == DType::kUInt4) {
    // 4-bit (static W4A8): each channel's range clipped to its least squared
    // error, as weight-only INT4 does per group (quant/mse_clip.h).
    std::vector<float> channel;
    for (size_t k = 0; k < lo.size(); ++k) {
      channel.clear();
      for (int64_t o = 0; o < v.outer; ++o) {
        for (int64_t c = 0; c < v.channels; ++c) {
          if (axis >= 0 && c != static_cast<int64_t>(k)) continue;
          const auto base = static_cast<size_t>((o * v.channels + c) * v.inner);
          channel.insert(channel.end(), w.begin() + static_cast<std::ptrdiff_t>(base),
                         w.begin() + static_cast<std::ptrdiff_t>(base + static_cast<size_t>(v.inner)));
        }
      }
      mse_clip_range(channel.data(), static_cast<int64_t>(channel.size()), 1, storage, symmetry, &lo[k], &hi[k]);
    }
  }
  p.scale.resize(lo.size());
  p.zero_point.resize(lo.size());
  for (size_t k = 0; k < lo.size(); ++k)
    choose_qparams(lo[k], hi[k], storage, symmetry, reduce_range, &p.scale[k], &p.zero_point[k]);
  return p;
}

QuantParams blocked_weight_params(const Tensor& weights, int axis, int block_size, DType storage, Symmetry symmetry,
                                  bool mse_clip) {
  check_axis(weights, axis);
  if (axis < 0 || block_size < 2)
    throw Error(ErrorCode::kInvalidArgument, "blocked quantization needs an axis and a block size >= 2");
  const AxisView v = view_around(weights.shape(), axis);
  const int64_t blocks = (v.channels + block_size - 1) / block_size;
  const std::vector<float> w = weights.to_float_vector();
  QuantParams p;
  p.storage = storage;
  p.axis = axis;
  p.block_size = block_size;
  const auto n = static_cast<size_t>(v.outer * blocks * v.inner);
  std::vector<float> lo(n, 0.0f), hi(n, 0.0f);
  for (int64_t o = 0; o < v.outer; ++o) {
    for (int64_t c = 0; c < v.channels; ++c) {
      for (int64_t i = 0; i < v.inner; ++i) {
        const float x = w[static_cast<size_t>((o * v.channels + c) * v.inner + i)];
        if (!std::isfinite(x)) continue;  // only with --allow-nonfinite (check_finite_weight)
        const auto k = static_cast<size_t>(scale_index(p, v, o, c, i));
        lo[k] = std::min(lo[k], x);
        hi[k] = std::max(hi[k], x);
      }
    }
  }
  if (mse_clip) {
    std::vector<float> group;
    for (int64_t o = 0; o < v.outer; ++o) {
      for (int64_t b = 0; b < blocks; ++b) {
        for (int64_t i = 0; i < v.inner; ++i) {
          group.clear();
          for (int64_t c = b * block_size; c < std::min<int64_t>(v.channels, (b + 1) * block_size); ++c)
            group.push_back(w[static_cast<size_t>((o * v.channels + c) * v.inner + i)]);
          const auto k = static_cast<size_t>(scale_index(p, v, o, b * block_size, i));
          mse_clip_range(group.data(), static_cast<int64_t>(group.size()), 1, storage, symmetry, &lo[k], &hi[k]);
        }
      }
    }
  }
  p.scale.resize(n);
  p.zero_point.resize(n);
  for (size_t k = 0; k < n; ++k) choose_qparams(lo[k], hi[k], storage, symmetry, false, &p.scale[k], &p.zero_point[k]);
  return p;
}

std::vector<std::string> minimum_scale_warnings(const Graph& graph) {
  std::vector<std::string> out;
  for (const Node& n : graph.nodes) {
    const bool qdq = n.op_type == "QuantizeLinear" || n.op_type == "DequantizeLinear";
    const size_t at = qdq ? 1 : n.op_type == "MatMulNBits" ? 2 : 0;
    if (at == 0 || n.inputs.size() <= at) continue;
    // An activation's Q and DQ share one scale: report it once, at the Q.
    if (n.op_type == "DequantizeLinear" && !graph.initializers.count(n.inputs[0])) continue;
    auto s = graph.initializers.find(n.inputs[at]);
    if (s == graph.initializers.end() || s->second.dtype() != DType::kFloat32) continue;
    int64_t raised = 0;
    for (int64_t i = 0; i < s->second.numel(); ++i) raised += s->second.data<float>()[i] == kMinScale;
    if (raised == 0) continue;
    // The tensor the user knows: what Q reads, what a weight's DQ produces.
    std::string read = n.inputs[0];
    if (read.ends_with("/float")) read.resize(read.size() - 6);
    const std::string tensor = n.op_type == "QuantizeLinear" ? read
                               : n.op_type == "MatMulNBits"  ? n.name
                                                             : n.outputs[0];
    out.push_back("tensor \"" + tensor + "\": " + std::to_string(raised) + " of " + std::to_string(s->second.numel()) +
                  " scale(s) raised to the minimum 1.18e-38 (the smallest normal float): its values are too small "
                  "for float32 quantization and become 0 or the smallest step");
  }
  return out;
}

std::string insert_activation_qdq(Graph& graph, const std::string& tensor, const QuantParams& params,
                                  const std::string& params_base) {
  const bool is_input = graph.find_input(tensor) != nullptr;
  const std::string q_name = tensor + "/q";
  for (const Node& n : graph.nodes) {
    if (n.op_type == "QuantizeLinear" && !n.outputs.empty() && n.outputs[0] == q_name) {
      return is_input ? tensor + "/dq" : tensor;
    }
  }
  size_t insert_at = 0;
  std::string source = tensor;
  std::string result = tensor;
  if (is_input) {
    result = tensor + "/dq";
    for (Node& n : graph.nodes) {
      for (auto& in : n.inputs) {
        if (in == tensor) in = result;
      }
    }
  } else {
    bool found = false;
    for (size_t i = 0; i < graph.nodes.size() && !found; ++i) {
      for (auto& out : graph.nodes[i].outputs) {
        if (out == tensor) {
          out = tensor + "/float";
          insert_at = i + 1;
          found = true;
          break;
        }
      }
    }
    if (!found) throw Error(ErrorCode::kInvalidArgument, "cannot quantize \"" + tensor + "\": no node produces it");
    source = tensor + "/float";
    auto vi = graph.value_info.find(tensor);
    if (vi != graph.value_info.end()) graph.value_info[source] = {source, vi->second.type};
  }
  Node q = make_node(tensor + "/QuantizeLinear", "QuantizeLinear", {source}, {q_name});
  add_params(graph, params_base.empty() ? tensor : params_base, params, {}, q);
  Node dq = make_node(tensor + "/DequantizeLinear", "DequantizeLinear", {q_name, q.inputs[1], q.inputs[2]}, {result});
  dq.attributes = q.attributes;
  const auto pos = graph.nodes.begin() + static_cast<std::ptrdiff_t>(insert_at);
  graph.nodes.insert(graph.nodes.insert(pos, std::move(q)) + 1, std::move(dq));
  return result;
}

void insert_weight_dq(Graph& graph, const std::string& name, const QuantParams& params, bool explicit_zero_point) {
  auto it = graph.initializers.find(name);
  if (it == graph.initializers.end())
    throw Error(ErrorCode::kInvalidArgument, "weight \"" + name + "\" is not an initializer");
  const Tensor weights = it->second;
  graph.initializers.erase(it);
  graph.initializers[name + "/q"] = quantize_tensor(weights, params);
  Node dq = make_node(name + "/DequantizeLinear", "DequantizeLinear", {name + "/q"}, {name});
  add_params(graph, name, params, weights.shape(), dq, explicit_zero_point);
  graph.nodes.insert(graph.nodes.begin(), std::move(dq));
}

bool insert_bias_dq(Graph& graph, const std::string& name, float input_scale, const std::vector<float>& weight_scale) {
  auto it = graph.initializers.find(name);
  if (it == graph.initializers.end())
    throw Error(ErrorCode::kInvalidArgument, "bias \"" + name + "\" is not an initializer");
  const Tensor bias = it->second;
  if (bias.rank() != 1 || (weight_scale.size() != 1 && static_cast<int64_t>(weight_scale.size()) != bias.numel())) {
    throw Error(ErrorCode::kInvalidArgument, "bias \"" + name + "\" " + bias.describe() + " does not match " +
                                                 std::to_string(weight_scale.size()) + " weight scales");
  }
  std::vector<float> scale;
  for (float ws : weight_scale) {
    const float s = input_scale * ws;
    if (!(s >= kMinScale)) return false;
    scale.push_back(s);
  }
  const std::vector<float> b = bias.to_float_vector();
  Tensor q(DType::kInt32, bias.shape());
  for (int64_t c = 0; c < bias.numel(); ++c) {
    const double v = std::nearbyint(static_cast<double>(b[static_cast<size_t>(c)]) /
                                    scale[scale.size() == 1 ? 0 : static_cast<size_t>(c)]);
    q.data<int32_t>()[c] = std::isnan(v) ? 0 : static_cast<int32_t>(std::clamp(v, -2147483648.0, 2147483647.0));
  }
  graph.initializers.erase(it);
  graph.initializers[name + "/q"] = q;
  const bool per_axis = scale.size() > 1;
  graph.initializers[name + "/scale"] =
      per_axis ? Tensor::from_vector(scale, {bias.numel()}) : Tensor::scalar<float>(scale[0]);
  Node dq = make_node(name + "/DequantizeLinear", "DequantizeLinear", {name + "/q", name + "/scale"}, {name});
  if (per_axis) set_attr(dq, "axis", 0);
  graph.nodes.insert(graph.nodes.begin(), std::move(dq));
  return true;
}

}  // namespace kvant
