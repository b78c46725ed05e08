// The report notes of the weight rewrites that run before quantization
// (scaling_notes.h).
#include "quant/algorithms/scaling_notes.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <map>
#include <sstream>

namespace kvant {

namespace {

// "LayerNormalization \"ln\" (3), explicit Mul (2)": how many groups each
// way, the first example of each.
std::string scaling_ways(const std::vector<ScaleApplied>& applied) {
  int folded = 0, explicit_mul = 0;
  std::string fold_example, mul_example;
  for (const ScaleApplied& s : applied) {
    if (s.folded) {
      if (folded++ == 0) fold_example = s.into;
    } else if (explicit_mul++ == 0) {
      mul_example = s.into;
    }
  }
  std::string out = std::to_string(folded) + " folded into the op before" +
                    (folded ? " (e.g. " + fold_example + ")" : std::string()) + ", " + std::to_string(explicit_mul) +
                    " by an explicit Mul" + (explicit_mul ? " (e.g. " + mul_example + ")" : std::string());
  return out;
}

}  // namespace

std::vector<std::string> awq_notes(const AwqResult& r) {
  std::vector<ScaleApplied> applied;
  double rtn = 0, awq = 0;
  int64_t layers = 0;
  for (const AwqGroupResult& g : r.groups) {
    if (g.search.alpha > 0) {
      applied.push_back(g.applied);
      layers += g.layers;
    }
    rtn += g.search.rtn_error;
    awq += g.search.error;
  }
  std::ostringstream ratio;
  ratio << std::setprecision(3) << (rtn > 0 ? awq / rtn : 1.0);
  const size_t unscaled = r.groups.size() - applied.size();
  return {"AWQ: " + std::to_string(applied.size()) + " of " + std::to_string(r.groups.size()) +
              " layer inputs scaled (" + std::to_string(layers) + " layers" +
              (unscaled ? "; " + std::to_string(unscaled) + " best left unscaled" : std::string()) + "); " +
              scaling_ways(applied),
          "AWQ: summed layer output error on the calibration data " + ratio.str() + "x round to nearest's"};
}

std::vector<std::string> smooth_quant_notes(const SmoothQuantResult& r, std::optional<double> alpha) {
  std::vector<ScaleApplied> applied;
  double worst_before = 0, worst_after = 0, error = 0, error_at_half = 0;
  double lo = 1, hi = 0;
  for (const SmoothQuantGroup& g : r.groups) {
    applied.push_back(g.applied);
    worst_before = std::max(worst_before, g.outlier_ratio_before);
    worst_after = std::max(worst_after, g.outlier_ratio_after);
    lo = std::min(lo, g.alpha);
    hi = std::max(hi, g.alpha);
    error += g.error;
    error_at_half += g.error_at_half;
  }
  std::ostringstream text;
  text << std::setprecision(3) << "SmoothQuant (alpha ";
  if (alpha) {
    text << *alpha;
  } else {
    text << "searched per layer input: " << lo << " to " << hi << ", W8A8 error on sampled rows "
         << (error_at_half > 0 ? error / error_at_half : 1.0) << "x alpha 0.5's";
  }
  text << "): " << r.groups.size() << " layer inputs smoothed; largest max/median channel range " << worst_before
       << " -> " << worst_after << "; " << scaling_ways(applied);
  return {text.str()};
}

std::vector<std::string> equalize_notes(const EqualizeResult& r) {
  std::vector<std::string> notes;
  std::ostringstream last;
  last << std::setprecision(2) << 100 * (std::exp(r.last_change) - 1);
  notes.push_back("cross-layer equalization: " + std::to_string(r.pairs.size()) + " layer pair(s) equalized in " +
                  std::to_string(r.sweeps) + " sweep(s) (the last changed a scale by at most " + last.str() + "%)");
  std::map<std::string, std::pair<int, std::string>> why;  // reason -> (count, first pair)
  for (const auto& [pair, reason] : r.skipped) {
    auto& w = why[reason];
    if (w.first++ == 0) w.second = pair;
  }
  for (const auto& [reason, w] : why) {
    notes.push_back("cross-layer equalization skipped " + std::to_string(w.first) + " pair(s) (e.g. " + w.second +
                    "): " + reason);
  }
  return notes;
}

}  // namespace kvant
