// The compiled latency of a quantized model against its FP32 original on one
// sample, measured by `kvant quantize` (issue 15, "silent slowdowns"): where
// kvant has no integer kernel for a pattern yet (ConvInteger, INT4 Conv), the
// quantized model runs on reference kernels and can be many times slower than
// FP32. The report says so, naming the operators that fall back.
//
// Each model is compiled, run once (planning), then timed: the minimum of up
// to 5 runs, stopping once 2 s were spent on it. Slower means more than 1.1x
// the FP32 time (timer noise on a shared machine stays well below that).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kvant::cli {

struct SpeedCheck {
  double fp32_ms = 0;
  double quantized_ms = 0;
  int threads = 1;
  // "ConvInteger x20", ...: fallback steps by operator, most first.
  std::vector<std::string> fallbacks;
  int fallback_steps = 0;
  bool slower() const { return quantized_ms > 1.1 * fp32_ms; }
};

// nullopt when either model cannot be compiled or run on `sample` (then
// `why` says why; the quantize command notes it and goes on).
std::optional<SpeedCheck> check_speed(const Model& fp32, const Model& quantized,
                                      const std::map<std::string, Tensor>& sample, std::string& why);

// One sample for models without calibration data: each input of the model's
// dtype and shape, a symbolic leading dim taken as 1, floats uniform in
// [-1, 1) (fixed seed), integers zero. nullopt (with `why`) when an input
// has another unknown dim or an unsupported type.
std::optional<std::map<std::string, Tensor>> synthetic_sample(const Graph& graph, std::string& why);

}  // namespace kvant::cli
