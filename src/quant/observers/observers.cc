#include <algorithm>
#include <cmath>

#include "kvant/status.h"
#include "quant/observers/observer.h"

namespace kvant {

namespace {

void check_finite(const float* values, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) {
      throw Error(ErrorCode::kInvalidArgument, "value " + std::to_string(values[i]) + " at index " + std::to_string(i) +
                                                   " is not finite (NaN or Inf)");
    }
  }
}

[[noreturn]] void nothing_observed(const char* name) {
  throw Error(ErrorCode::kInvalidArgument, std::string(name) + " observer saw no values");
}

class MinMaxObserver : public Observer {
 public:
  void observe(const float* values, int64_t n) override {
    check_finite(values, n);
    for (int64_t i = 0; i < n; ++i) {
      if (!any_) {
        range_ = {values[i], values[i]};
        any_ = true;
      }
      range_.min = std::min(range_.min, values[i]);
      range_.max = std::max(range_.max, values[i]);
    }
  }
  Range range() const override {
    if (!any_) nothing_observed(name());
    return range_;
  }
  const char* name() const override { return "minmax"; }

 private:
  Range range_;
  bool any_ = false;
};

// m <- m + c * (batch_m - m), per observe() call (one calibration batch).
class MovingAverageObserver : public Observer {
 public:
  explicit MovingAverageObserver(float c) : c_(c) {}
  void observe(const float* values, int64_t n) override {
    if (n <= 0) return;
    check_finite(values, n);
    const auto [lo, hi] = std::minmax_element(values, values + n);
    if (!any_) {
      range_ = {*lo, *hi};
      any_ = true;
      return;
    }
    range_.min += c_ * (*lo - range_.min);
    range_.max += c_ * (*hi - range_.max);
  }
  Range range() const override {
    if (!any_) nothing_observed(name());
    return range_;
  }
  const char* name() const override { return "moving-average"; }

 private:
  float c_;
  Range range_;
  bool any_ = false;
};

class HistogramObserver : public Observer {
 public:
  explicit HistogramObserver(const ObserverOptions& o) : options_(o), histogram_(o.num_bins) {}
  void observe(const float* values, int64_t n) override { histogram_.add(values, n); }
  Range range() const override {
    if (histogram_.empty()) nothing_observed(name());
    const bool one_sided = histogram_.min_seen() >= 0 || histogram_.max_seen() <= 0;
    float t = 0;
    switch (options_.method) {
      case CalibrationMethod::kPercentile: t = histogram_.abs_percentile(options_.percentile / 100.0); break;
      // One-signed data uses all 2^bits levels on its side; signed data half per side.
      case CalibrationMethod::kEntropy:
        if (one_sided) {
          t = histogram_.entropy_threshold(options_.bits + 1);
        } else {
          // Each side its own threshold, with the levels an affine range
          // over [min, max] gives it: folding |x| would let the spike of one
          // side (an image's background) clip the other side's tail.
          const double lo = -histogram_.min_seen(), hi = histogram_.max_seen();
          const double total_levels = std::ldexp(1.0, options_.bits);
          const auto pos = static_cast<size_t>(std::max(16.0, std::round(total_levels * hi / (lo + hi))));
          const auto neg = static_cast<size_t>(std::max(16.0, total_levels - static_cast<double>(pos)));
          return Range{std::max(-histogram_.entropy_threshold_levels(neg, -1), histogram_.min_seen()),
                       std::min(histogram_.entropy_threshold_levels(pos, +1), histogram_.max_seen())};
        }
        break;
      case CalibrationMethod::kMse:
        t = one_sided ? histogram_.mse_threshold(options_.bits + 1) : histogram_.mse_threshold(options_.bits);
        break;
      default: break;
    }
    Range r{std::max(-t, histogram_.min_seen()), std::min(t, histogram_.max_seen())};
    if (histogram_.min_seen() >= 0) r.min = 0;
    if (histogram_.max_seen() <= 0) r.max = 0;
    return r;
  }
  const char* name() const override {
    switch (options_.method) {
      case CalibrationMethod::kPercentile: return "percentile";
      case CalibrationMethod::kEntropy: return "entropy";
      default: return "mse";
    }
  }

 private:
  ObserverOptions options_;
  Histogram histogram_;
};

}  // namespace

std::unique_ptr<Observer> make_observer(const ObserverOptions& options) {
  switch (options.method) {
    case CalibrationMethod::kMinMax: return std::make_unique<MinMaxObserver>();
    case CalibrationMethod::kMovingAverage: return std::make_unique<MovingAverageObserver>(options.averaging_constant);
    case CalibrationMethod::kPercentile:
      if (!(options.percentile > 0 && options.percentile <= 100)) {
        throw Error(ErrorCode::kInvalidArgument,
                    "percentile must be in (0, 100], got " + std::to_string(options.percentile));
      }
      return std::make_unique<HistogramObserver>(options);
    case CalibrationMethod::kEntropy:
    case CalibrationMethod::kMse: return std::make_unique<HistogramObserver>(options);
  }
  return nullptr;
}

CalibrationMethod parse_calibration_method(const std::string& name) {
  if (name == "minmax") return CalibrationMethod::kMinMax;
  if (name == "moving-average") return CalibrationMethod::kMovingAverage;
  if (name == "percentile") return CalibrationMethod::kPercentile;
  if (name == "entropy") return CalibrationMethod::kEntropy;
  if (name == "mse") return CalibrationMethod::kMse;
  throw Error(ErrorCode::kInvalidArgument,
              "unknown calibrator \"" + name + "\" (choose minmax, moving-average, percentile, entropy or mse)");
}

}  // namespace kvant
