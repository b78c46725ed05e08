// Round to nearest with MSE-optimal clipping (mse_clip.h).
#include "quant/mse_clip.h"

#include <cmath>

namespace kvant {

void mse_clip_range(const float* values, int64_t count, int64_t stride, DType storage, Symmetry symmetry, float* lo,
                    float* hi) {
  const QuantRange range = quant_range(storage);
  const float lo0 = *lo, hi0 = *hi;
  double best = -1.0;
  for (int step = 0; step <= 25; ++step) {
    const float r = 1.0f - 0.02f * static_cast<float>(step);
    float scale = 1.0f;
    int32_t zp = 0;
    choose_qparams(r * lo0, r * hi0, storage, symmetry, false, &scale, &zp);
    double err = 0.0;
    for (int64_t i = 0; i < count; ++i) {
      const float v = values[i * stride];
      if (!std::isfinite(v)) continue;
      const float dq = static_cast<float>(quantize_value(v, scale, zp, range) - zp) * scale;
      const double d = static_cast<double>(v) - dq;
      err += d * d;
    }
    if (best < 0.0 || err < best) {
      best = err;
      *lo = r * lo0;
      *hi = r * hi0;
    }
  }
}

}  // namespace kvant
