// Per-layer error of a quantized model (DESIGN.md §6): both models run on the
// same samples; a quantized layer's output tensor has the same name in both
// (quant/qdq.h), so they are compared directly.
//   SQNR   = 10 log10( sum x^2 / sum (x - y)^2 )   (dB; higher is better)
//   cosine = sum x y / (|x| |y|)
// accumulated over all samples. Worst (lowest SQNR) first.
#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "kvant/status.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {

namespace {

struct Sums {
  double signal = 0, noise = 0, dot = 0, norm_x = 0, norm_y = 0;
};

std::unordered_map<std::string, std::vector<float>> capture(ReferenceExecutor& exec,
                                                            const std::unordered_map<std::string, std::string>& wanted,
                                                            const std::map<std::string, Tensor>& feed) {
  std::unordered_map<std::string, std::vector<float>> out;
  exec.set_observer([&](const Node& node, const std::vector<Tensor>& outputs) {
    for (size_t i = 0; i < outputs.size() && i < node.outputs.size(); ++i) {
      if (wanted.count(node.outputs[i]) && outputs[i].defined() && is_float(outputs[i].dtype())) {
        out[node.outputs[i]] = outputs[i].to_float_vector();
      }
    }
  });
  exec.run(feed);
  return out;
}

}  // namespace

std::vector<LayerError> compare_layers(const Model& fp32, const Model& quantized,
                                       const std::vector<std::pair<std::string, std::string>>& layers,
                                       SampleSource& samples, int64_t max_samples) {
  std::unordered_map<std::string, std::string> wanted;  // tensor -> node
  for (const auto& [node, tensor] : layers) wanted[tensor] = node;
  ReferenceExecutor a(fp32), b(quantized);
  std::unordered_map<std::string, Sums> sums;
  samples.reset();
  for (int64_t s = 0; s < max_samples; ++s) {
    auto feed = samples.next();
    if (!feed) break;
    auto x = capture(a, wanted, *feed);
    auto y = capture(b, wanted, *feed);
    for (const auto& [tensor, xv] : x) {
      auto it = y.find(tensor);
      if (it == y.end() || it->second.size() != xv.size()) continue;
      Sums& acc = sums[tensor];
      for (size_t i = 0; i < xv.size(); ++i) {
        const double xi = xv[i], yi = it->second[i];
        acc.signal += xi * xi;
        acc.noise += (xi - yi) * (xi - yi);
        acc.dot += xi * yi;
        acc.norm_x += xi * xi;
        acc.norm_y += yi * yi;
      }
    }
  }
  std::vector<LayerError> out;
  for (const auto& [node, tensor] : layers) {
    auto it = sums.find(tensor);
    if (it == sums.end()) continue;
    const Sums& s = it->second;
    LayerError e{node, tensor, 0, 0};
    e.sqnr_db = s.noise == 0 ? std::numeric_limits<double>::infinity() : 10 * std::log10(s.signal / s.noise);
    e.cosine =
        (s.norm_x == 0 || s.norm_y == 0) ? (s.norm_x == s.norm_y ? 1.0 : 0.0) : s.dot / std::sqrt(s.norm_x * s.norm_y);
    out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const LayerError& l, const LayerError& r) { return l.sqnr_db < r.sqnr_db; });
  return out;
}

}  // namespace kvant
