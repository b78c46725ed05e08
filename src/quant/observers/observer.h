// Observers watch the values a tensor takes during calibration and choose the
// real range [min, max] that its quantization parameters cover.
//
// All observers stream: memory does not grow with the number of samples.
//   MinMax          the extreme values seen.
//   MovingAverage   min/max per batch, smoothed: m <- m + c (batch_m - m).
//   Percentile      the p-th percentile of |x| (or of x for one-signed data)
//                   from a histogram.
//   Entropy         TensorRT's KL-divergence calibration: the clipping
//                   threshold whose 2^bits-level quantized distribution is
//                   closest (KL) to the observed one.
//   Mse             the clipping threshold that minimises the expected squared
//                   error (clipping error + rounding error step^2 / 12).
// Histogram-based observers keep 2048 bins over [-a, a]; when a value outside
// the range arrives, a doubles and pairs of bins merge, so earlier samples
// keep their (coarser) place without being stored.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvant {

struct Range {
  float min = 0;
  float max = 0;
};

class Observer {
 public:
  virtual ~Observer() = default;
  // Sees n more values. Non-finite values throw Error(kInvalidArgument)
  // naming `what` (the tensor), since they would poison the range.
  virtual void observe(const float* values, int64_t n) = 0;
  // The chosen range; throws Error if nothing was observed.
  virtual Range range() const = 0;
  virtual const char* name() const = 0;
};

enum class CalibrationMethod { kMinMax, kMovingAverage, kPercentile, kEntropy, kMse };

struct ObserverOptions {
  CalibrationMethod method = CalibrationMethod::kMinMax;
  double percentile = 99.99;         // kPercentile
  float averaging_constant = 0.01f;  // kMovingAverage
  int bits = 8;                      // kEntropy / kMse: levels = 2^bits
  int num_bins = 4096;               // histogram observers (signed; 2048 per sign)
};

std::unique_ptr<Observer> make_observer(const ObserverOptions& options);
// Parses "minmax", "moving-average", "percentile", "entropy", "mse".
CalibrationMethod parse_calibration_method(const std::string& name);

// A symmetric histogram over [-limit, limit] that grows by doubling; public so
// that tests can check the threshold searches on known histograms.
class Histogram {
 public:
  explicit Histogram(int num_bins);
  void add(const float* values, int64_t n);
  // Sets the contents directly (tests): counts over [-limit, limit].
  void assign(std::vector<double> counts, float limit);

  const std::vector<double>& counts() const { return counts_; }
  float limit() const { return limit_; }
  float min_seen() const { return min_seen_; }
  float max_seen() const { return max_seen_; }
  double total() const;
  bool empty() const { return total() == 0; }
  float bin_width() const { return 2 * limit_ / static_cast<float>(counts_.size()); }

  // Threshold t over |x| such that a fraction `p` (0..1] of the mass is within [-t, t].
  float abs_percentile(double p) const;
  // Clipping threshold for |x| minimising KL(P || Q) with 2^(bits-1) levels per
  // sign (TensorRT's entropy calibration).
  float entropy_threshold(int bits) const;
  // The same over one side only (side +1: x >= 0, -1: -x for x < 0, 0: |x|)
  // with `levels` levels on that side: for two-signed data whose sides differ
  // (a normalized image spans [-0.8, 2.0]), each side gets its own threshold.
  float entropy_threshold_levels(size_t levels, int side) const;
  // Counts of x (side +1), of -x (side -1) or of |x| (side 0) in num_bins/2 bins over [0, limit].
  std::vector<double> side_counts(int side) const;
  // Clipping threshold minimising expected squared error with 2^bits levels
  // over [-t, t].
  float mse_threshold(int bits) const;
  // Counts of |x| in num_bins/2 bins over [0, limit].
  std::vector<double> abs_counts() const;

 private:
  void grow_to(float value);

  std::vector<double> counts_;
  float limit_ = 0;  // 0 until the first non-zero value
  double zeros_before_range_ = 0;
  float min_seen_ = 0;
  float max_seen_ = 0;
  bool any_ = false;
};

}  // namespace kvant
