#include "quant/calibration_run.h"

#include <algorithm>
#include <cmath>

#include "kvant/status.h"

namespace kvant {

int64_t run_calibration_samples(ReferenceExecutor& exec, SampleSource& calibration, const QuantizeOptions& options,
                                const std::function<void(const std::string&, const Tensor&)>& on_input) {
  calibration.reset();
  int64_t done = 0;
  const int64_t total = calibration.size() < 0 ? -1 : std::min(calibration.size(), options.max_samples);
  while (done < options.max_samples) {
    auto feed = calibration.next();
    if (!feed) break;
    for (const auto& [name, t] : *feed) {
      if (t.dtype() == DType::kFloat32) {
        const float* p = t.data<float>();
        for (int64_t i = 0; i < t.numel(); ++i) {
          if (!std::isfinite(p[i])) {
            throw Error(ErrorCode::kInvalidArgument, "calibration sample " + std::to_string(done) + ": input \"" +
                                                         name + "\" has a non-finite value at index " +
                                                         std::to_string(i));
          }
        }
      }
      on_input(name, t);
    }
    try {
      exec.run(*feed);
    } catch (const Error& e) {
      throw Error(e.code(), "calibration sample " + std::to_string(done) + ": " + e.what());
    }
    ++done;
    if (options.progress) options.progress(done, total);
  }
  if (done == 0) throw Error(ErrorCode::kInvalidArgument, "the calibration data holds no samples");
  return done;
}

}  // namespace kvant
