// Histograms for the report's range plots (range_histograms.h).
#include "quant/range_histograms.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "quant/quant_params.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

// Values of one activation kept for its histogram, over all samples: at most
// about kKeptValues, taken at a stride from each sample's tensor.
constexpr int64_t kKeptValues = 32768;

const Tensor* initializer(const Graph& g, const std::string& name) {
  auto it = g.initializers.find(name);
  return it == g.initializers.end() ? nullptr : &it->second;
}

bool is_quantized_storage(DType t) {
  return t == DType::kUInt8 || t == DType::kInt8 || t == DType::kUInt4 || t == DType::kInt4 || t == DType::kUInt16 ||
         t == DType::kInt16;
}

struct Collector {
  RangeHistogram h;
  double half_step = 0;  // a value within half a step of an end rounds to it: not clipped
  std::vector<float> kept;
  void add(const float* x, int64_t n, int64_t quota) {
    const int64_t stride = std::max<int64_t>(1, n / std::max<int64_t>(quota, 1));
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      if (!std::isfinite(v)) continue;
      if (h.values == 0) h.min = h.max = v;
      h.min = std::min<double>(h.min, v);
      h.max = std::max<double>(h.max, v);
      ++h.values;
      if (v < h.lo - half_step || v > h.hi + half_step) ++h.clipped;
      if (i % stride == 0) kept.push_back(v);
    }
  }
};

// Bins `values` over [min(lo, data min), max(hi, data max)].
void fill_bins(RangeHistogram& h, const float* values, size_t n, int bins) {
  h.plot_lo = std::min(h.lo, h.min);
  h.plot_hi = std::max(h.hi, h.max);
  if (!(h.plot_hi > h.plot_lo)) h.plot_hi = h.plot_lo + 1;
  h.counts.assign(static_cast<size_t>(bins), 0);
  const double width = (h.plot_hi - h.plot_lo) / bins;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) continue;
    const auto b = static_cast<int64_t>((values[i] - h.plot_lo) / width);
    ++h.counts[static_cast<size_t>(std::clamp<int64_t>(b, 0, bins - 1))];
    ++h.binned;
  }
}

// The weight DQ's scale index of element i (per tensor, per axis, blocked).
struct ScaleIndex {
  int64_t outer = 1, dim = 1, inner = 1, block = 0, scales = 1;
  int64_t operator()(int64_t i) const {
    if (scales == 1) return 0;
    const int64_t a = (i / inner) % dim;
    if (block <= 0) return a;
    const int64_t o = i / (inner * dim);
    const int64_t blocks = (dim + block - 1) / block;
    return (o * blocks + a / block) * inner + i % inner;
  }
};

// A weight's codes with their scale (per tensor, along `axis`, or in blocks
// of `block` along it) and zero point, next to the FP32 values in the codes'
// layout.
struct WeightCodes {
  const Tensor* codes = nullptr;
  const Tensor* scale = nullptr;
  const Tensor* zp = nullptr;
  int64_t axis = 1, block = 0;
  std::string name;
};

std::optional<RangeHistogram> weight_histogram(const WeightCodes& wc, const Tensor& w, int bins) {
  const Tensor* codes = wc.codes;
  const Tensor* scale = wc.scale;
  const Tensor* zp = wc.zp;
  if (!codes || !scale || !is_quantized_storage(codes->dtype()) || codes->numel() != w.numel() ||
      w.dtype() != DType::kFloat32 || scale->numel() < 1 || (zp && zp->numel() != scale->numel() && zp->numel() != 1))
    return std::nullopt;
  const int64_t n = w.numel();
  const Shape& shape = w.shape();
  const auto rank = static_cast<int64_t>(shape.size());
  ScaleIndex index;
  index.scales = scale->numel();
  if (index.scales > 1) {
    int64_t axis = wc.axis;
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) return std::nullopt;
    for (int64_t d = 0; d < axis; ++d) index.outer *= shape[static_cast<size_t>(d)];
    index.dim = shape[static_cast<size_t>(axis)];
    for (int64_t d = axis + 1; d < rank; ++d) index.inner *= shape[static_cast<size_t>(d)];
    index.block = wc.block;
    const int64_t expected =
        index.block > 0 ? index.outer * ((index.dim + index.block - 1) / index.block) * index.inner : index.dim;
    if (expected != index.scales) return std::nullopt;
  }
  QuantRange range = quant_range(codes->dtype());
  // 7-bit weights (--reduce-range) use half the grid: int8, or uint8 around
  // a zero point of 128 (dynamic convolutions).
  const bool offset_u8 = codes->dtype() == DType::kUInt8 && zp && zp->numel() == 1 && zp->get_as_int64(0) == 128;
  if (codes->dtype() == DType::kInt8 || offset_u8) {
    const int32_t off = offset_u8 ? 128 : 0;
    bool seven = true;
    for (int64_t i = 0; i < n && seven; ++i) {
      const int64_t c = codes->get_as_int64(i) - off;
      seven = c >= -64 && c <= 63;
    }
    if (seven) range = QuantRange{off - 64, off + 63};
  }
  RangeHistogram h;
  h.weight = true;
  h.tensor = wc.name;
  h.ranges = index.scales;
  std::vector<double> lo(static_cast<size_t>(index.scales)), hi(lo.size());
  for (int64_t s = 0; s < index.scales; ++s) {
    const double sc = scale->get_as_double(s);
    const double z = zp ? zp->get_as_double(zp->numel() == 1 ? 0 : s) : 0.0;
    lo[static_cast<size_t>(s)] = (range.qmin - z) * sc;
    hi[static_cast<size_t>(s)] = (range.qmax - z) * sc;
  }
  h.lo = *std::min_element(lo.begin(), lo.end());
  h.hi = *std::max_element(hi.begin(), hi.end());
  const float* x = w.data<float>();
  bool first = true;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) continue;
    if (first) h.min = h.max = x[i];
    first = false;
    h.min = std::min<double>(h.min, x[i]);
    h.max = std::max<double>(h.max, x[i]);
    const auto s = static_cast<size_t>(index(i));
    // Half a step of slack: a value rounds to the end code from there.
    const double half = 0.5 * scale->get_as_double(static_cast<int64_t>(s));
    if (x[i] < lo[s] - half || x[i] > hi[s] + half) ++h.clipped;
    ++h.values;
  }
  fill_bins(h, x, static_cast<size_t>(n), bins);
  return h;
}

// The node that reads a quantized activation: past its DequantizeLinear.
std::string layer_reading(const Graph& q, const std::string& codes,
                          const std::unordered_map<std::string, std::string>& first_reader) {
  for (const Node& n : q.nodes) {
    if (n.op_type != "DequantizeLinear" || n.inputs.empty() || n.inputs[0] != codes || n.outputs.empty()) continue;
    auto r = first_reader.find(n.outputs[0]);
    if (r != first_reader.end()) return r->second;
    for (const auto& o : q.outputs)
      if (o.name == n.outputs[0]) return "(model output)";
  }
  auto r = first_reader.find(codes);
  return r == first_reader.end() ? "" : r->second;
}

}  // namespace

std::vector<RangeHistogram> range_histograms(const Model& fp32, const Model& quantized, SampleSource* samples,
                                             int64_t max_samples, int bins) {
  const Graph& q = quantized.graph;
  std::unordered_set<std::string> fp32_values;
  for (const auto& in : fp32.graph.inputs) fp32_values.insert(in.name);
  for (const Node& n : fp32.graph.nodes) {
    for (const auto& o : n.outputs) fp32_values.insert(o);
  }
  std::unordered_map<std::string, std::string> first_reader;
  for (const Node& n : q.nodes) {
    for (const auto& in : n.inputs) first_reader.emplace(in, n.name.empty() ? n.op_type : n.name);
  }
  std::vector<RangeHistogram> out;
  std::vector<Collector> activations;
  std::unordered_map<std::string, size_t> activation_index;  // FP32 name -> activations[i]
  std::unordered_set<std::string> seen;
  std::vector<std::pair<bool, size_t>> order;  // (activation?, index) in graph order
  for (const Node& n : q.nodes) {
    if (!n.domain.empty() || n.inputs.empty() || n.outputs.empty()) continue;
    if (n.op_type == "QuantizeLinear" && n.inputs.size() >= 2) {
      std::string t = n.inputs[0];
      const std::string suffix = "/float";
      if (t.size() > suffix.size() && t.compare(t.size() - suffix.size(), suffix.size(), suffix) == 0 &&
          fp32_values.count(t.substr(0, t.size() - suffix.size())))
        t.resize(t.size() - suffix.size());
      const Tensor* scale = initializer(q, n.inputs[1]);
      const Tensor* zp = n.inputs.size() > 2 && !n.inputs[2].empty() ? initializer(q, n.inputs[2]) : nullptr;
      if (!samples || !fp32_values.count(t) || !scale || scale->numel() != 1 || (zp && zp->numel() != 1) ||
          !seen.insert(t).second)
        continue;
      const QuantRange range = quant_range(zp ? zp->dtype() : DType::kUInt8);
      const double s = scale->get_as_double(0), z = zp ? zp->get_as_double(0) : 0.0;
      Collector c;
      c.h.tensor = t;
      c.h.node = layer_reading(q, n.outputs[0], first_reader);
      c.h.lo = (range.qmin - z) * s;
      c.h.hi = (range.qmax - z) * s;
      c.half_step = 0.5 * s;
      activation_index[t] = activations.size();
      order.emplace_back(true, activations.size());
      activations.push_back(std::move(c));
    } else if ((n.op_type == "ConvInteger" || n.op_type == "MatMulInteger") && n.inputs.size() >= 2) {
      // Dynamic mode (quant/algorithms/dynamic.cc): node "B/ConvInteger" reads
      // "B/W_q", scaled by "B/W_scale"; B is the FP32 model's node.
      const std::string suffix = "/" + n.op_type;
      if (n.name.size() <= suffix.size() || n.name.compare(n.name.size() - suffix.size(), suffix.size(), suffix) != 0)
        continue;
      const std::string base = n.name.substr(0, n.name.size() - suffix.size());
      const Node* layer = nullptr;
      for (const Node& f : fp32.graph.nodes)
        if (f.name == base) layer = &f;
      if (!layer || layer->inputs.size() < 2 || !seen.insert(layer->inputs[1]).second) continue;
      const Tensor* w = initializer(fp32.graph, layer->inputs[1]);
      if (!w || w->dtype() != DType::kFloat32) continue;
      Tensor values = *w;
      if (layer->op_type == "Gemm" && layer->attr_int("transB", 0) && w->rank() == 2) {  // codes are [K, N]
        values = Tensor(DType::kFloat32, {w->dim(1), w->dim(0)});
        for (int64_t r = 0; r < w->dim(0); ++r)
          for (int64_t c = 0; c < w->dim(1); ++c)
            values.data<float>()[c * w->dim(0) + r] = w->data<float>()[r * w->dim(1) + c];
      }
      WeightCodes wc;
      wc.codes = initializer(q, n.inputs[1]);
      wc.scale = initializer(q, base + "/W_scale");
      wc.zp = n.inputs.size() > 3 && !n.inputs[3].empty() ? initializer(q, n.inputs[3]) : nullptr;
      wc.axis = n.op_type == "ConvInteger" ? 0 : 1;
      wc.name = layer->inputs[1];
      if (!wc.codes || !wc.scale) continue;
      auto h = weight_histogram(wc, values, bins);
      if (!h) continue;
      h->node = base;
      order.emplace_back(false, out.size());
      out.push_back(std::move(*h));
    } else if (n.op_type == "DequantizeLinear") {
      const Tensor* w = initializer(fp32.graph, n.outputs[0]);
      if (!w || !initializer(q, n.inputs[0]) || !seen.insert(n.outputs[0]).second) continue;
      WeightCodes wc;
      wc.codes = initializer(q, n.inputs[0]);
      wc.scale = n.inputs.size() > 1 ? initializer(q, n.inputs[1]) : nullptr;
      wc.zp = n.inputs.size() > 2 && !n.inputs[2].empty() ? initializer(q, n.inputs[2]) : nullptr;
      wc.axis = n.attr_int("axis", 1);
      wc.block = n.attr_int("block_size", 0);
      wc.name = n.outputs[0];
      auto h = weight_histogram(wc, *w, bins);
      if (!h) continue;
      auto r = first_reader.find(n.outputs[0]);
      h->node = r == first_reader.end() ? "" : r->second;
      order.emplace_back(false, out.size());
      out.push_back(std::move(*h));
    }
  }
  if (samples && !activations.empty() && max_samples > 0) {
    const int64_t quota = std::max<int64_t>(1, kKeptValues / max_samples);
    ReferenceExecutor exec(fp32);
    exec.set_observer([&](const Node& node, const std::vector<Tensor>& outputs) {
      for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
        auto a = activation_index.find(node.outputs[i]);
        if (a == activation_index.end() || !outputs[i].defined() || outputs[i].dtype() != DType::kFloat32) continue;
        activations[a->second].add(outputs[i].data<float>(), outputs[i].numel(), quota);
      }
    });
    samples->reset();
    for (int64_t s = 0; s < max_samples; ++s) {
      auto feed = samples->next();
      if (!feed) break;
      for (const auto& [name, t] : *feed) {
        auto a = activation_index.find(name);
        if (a != activation_index.end() && t.dtype() == DType::kFloat32)
          activations[a->second].add(t.data<float>(), t.numel(), quota);
      }
      exec.run(*feed);
    }
  }
  std::vector<RangeHistogram> ordered;
  for (const auto& [activation, i] : order) {
    if (!activation) {
      ordered.push_back(std::move(out[i]));
      continue;
    }
    Collector& c = activations[i];
    if (c.h.values == 0) continue;  // not reached by the samples
    fill_bins(c.h, c.kept.data(), c.kept.size(), bins);
    ordered.push_back(std::move(c.h));
  }
  return ordered;
}

}  // namespace kvant
