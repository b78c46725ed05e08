// The calibration loop shared by static quantization and GPTQ.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "io/sample_source.h"
#include "quant/quantize.h"
#include "runtime/executor.h"

namespace kvant {

// Runs `exec` on at most options.max_samples samples of `calibration` (reset
// first). Each sample's float32 inputs are checked for NaN/Inf (an Error
// naming the sample, the input and the index) and passed to `on_input`
// before the run; a run that fails is an Error naming the sample;
// options.progress is called after each. Returns how many samples ran;
// throws when the data holds none.
int64_t run_calibration_samples(ReferenceExecutor& exec, SampleSource& calibration, const QuantizeOptions& options,
                                const std::function<void(const std::string&, const Tensor&)>& on_input);

}  // namespace kvant
