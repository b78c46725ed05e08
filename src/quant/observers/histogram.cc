#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "kvant/status.h"
#include "quant/observers/observer.h"

namespace kvant {

Histogram::Histogram(int num_bins) {
  if (num_bins < 16 || num_bins % 4 != 0) {
    throw Error(ErrorCode::kInvalidArgument, "histogram bins must be a multiple of 4 and at least 16");
  }
  counts_.assign(static_cast<size_t>(num_bins), 0.0);
}

double Histogram::total() const { return std::accumulate(counts_.begin(), counts_.end(), 0.0) + zeros_before_range_; }

void Histogram::assign(std::vector<double> counts, float limit) {
  counts_ = std::move(counts);
  limit_ = limit;
  zeros_before_range_ = 0;
  min_seen_ = -limit;
  max_seen_ = limit;
  any_ = true;
}

// Doubles the range until it covers |value|: bin pairs merge, and the old
// bins land in the middle half of the new ones.
void Histogram::grow_to(float value) {
  const float needed = std::fabs(value);
  if (needed <= limit_) return;
  const size_t nb = counts_.size();
  if (limit_ == 0) {
    limit_ = needed;
    counts_[nb / 2] += zeros_before_range_;  // zeros sit just right of the centre
    zeros_before_range_ = 0;
    return;
  }
  while (limit_ < needed) {
    std::vector<double> merged(nb, 0.0);
    for (size_t i = 0; i < nb; ++i) merged[nb / 4 + i / 2] += counts_[i];
    counts_ = std::move(merged);
    limit_ *= 2;
  }
}

void Histogram::add(const float* values, int64_t n) {
  if (n <= 0) return;
  float lo = values[0], hi = values[0];
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(values[i])) {
      throw Error(ErrorCode::kInvalidArgument,
                  "value " + std::to_string(values[i]) + " at index " + std::to_string(i) + " is not finite");
    }
    lo = std::min(lo, values[i]);
    hi = std::max(hi, values[i]);
  }
  if (!any_) {
    min_seen_ = lo;
    max_seen_ = hi;
    any_ = true;
  } else {
    min_seen_ = std::min(min_seen_, lo);
    max_seen_ = std::max(max_seen_, hi);
  }
  grow_to(std::max(std::fabs(lo), std::fabs(hi)));
  if (limit_ == 0) {  // all zeros so far
    zeros_before_range_ += static_cast<double>(n);
    return;
  }
  const int64_t nb = static_cast<int64_t>(counts_.size());
  const double inv_width = static_cast<double>(nb) / (2.0 * limit_);
  for (int64_t i = 0; i < n; ++i) {
    auto bin = static_cast<int64_t>(std::floor((static_cast<double>(values[i]) + limit_) * inv_width));
    counts_[static_cast<size_t>(std::clamp<int64_t>(bin, 0, nb - 1))] += 1;
  }
}

std::vector<double> Histogram::abs_counts() const {
  const size_t half = counts_.size() / 2;
  std::vector<double> out(half);
  for (size_t j = 0; j < half; ++j) out[j] = counts_[half + j] + counts_[half - 1 - j];
  out[0] += zeros_before_range_;
  return out;
}

float Histogram::abs_percentile(double p) const {
  const std::vector<double> abs = abs_counts();
  const double target = std::clamp(p, 0.0, 1.0) * total();
  const float width = bin_width();
  double cumulative = 0;
  for (size_t j = 0; j < abs.size(); ++j) {
    cumulative += abs[j];
    if (cumulative >= target) return static_cast<float>(j + 1) * width;
  }
  return limit_;
}

std::vector<double> Histogram::side_counts(int side) const {
  if (side == 0) return abs_counts();
  const size_t half = counts_.size() / 2;
  std::vector<double> out(half);
  for (size_t j = 0; j < half; ++j) out[j] = side > 0 ? counts_[half + j] : counts_[half - 1 - j];
  out[0] += zeros_before_range_;
  return out;
}

float Histogram::entropy_threshold(int bits) const { return entropy_threshold_levels(size_t{1} << (bits - 1), 0); }

float Histogram::entropy_threshold_levels(size_t levels, int side) const {
  const std::vector<double> abs = side_counts(side);
  const size_t num_bins = abs.size();
  const float width = bin_width();
  if (num_bins <= levels) return limit_;
  // Mass beyond each candidate, so the outlier bin is O(1) per candidate.
  std::vector<double> tail(num_bins + 1, 0.0);
  for (size_t j = num_bins; j-- > 0;) tail[j] = tail[j + 1] + abs[j];

  double best_kl = std::numeric_limits<double>::infinity();
  size_t best_i = num_bins;
  std::vector<double> p, q;
  for (size_t i = levels; i <= num_bins; ++i) {
    // P: the first i bins, with everything beyond folded into the last one.
    p.assign(abs.begin(), abs.begin() + static_cast<std::ptrdiff_t>(i));
    p[i - 1] += tail[i];
    // Q: the first i bins (without the folded outliers) merged into `levels`
    // groups, each group's mass spread evenly over its non-zero bins. The
    // outliers make P and Q differ in the last bin: clipping has a price.
    // Bin 0 holds 0.0, which every scheme here represents exactly: it is
    // its own group, so a spike of zeros (ReLU outputs) is not smeared over
    // its neighbours, which would push the threshold down to the smallest
    // candidate (measured: 6 points of top-1 lost on the demo CNN).
    q.assign(i, 0.0);
    q[0] = abs[0];
    for (size_t g = 0; g < levels; ++g) {
      const size_t begin = std::max<size_t>(g * i / levels, 1);
      const size_t end = (g + 1) * i / levels;
      double mass = 0;
      size_t nonzero = 0;
      for (size_t j = begin; j < end; ++j) {
        mass += abs[j];
        nonzero += abs[j] != 0;
      }
      for (size_t j = begin; j < end; ++j) {
        if (abs[j] != 0) q[j] = mass / static_cast<double>(nonzero);
      }
    }
    const double p_sum = std::accumulate(p.begin(), p.end(), 0.0);
    const double q_sum = std::accumulate(q.begin(), q.end(), 0.0);
    if (p_sum == 0 || q_sum == 0) continue;
    double kl = 0;
    for (size_t j = 0; j < i; ++j) {
      if (p[j] == 0) continue;
      const double pj = p[j] / p_sum;
      // A bin that P fills and Q leaves empty (the folded outlier bin) is
      // smoothed to a tiny mass instead of an infinite divergence.
      const double qj = q[j] > 0 ? q[j] / q_sum : 1e-12;
      kl += pj * std::log(pj / qj);
    }
    if (kl < best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return static_cast<float>(best_i) * width;
}

float Histogram::mse_threshold(int bits) const {
  const std::vector<double> abs = abs_counts();
  const size_t num_bins = abs.size();
  const double width = bin_width();
  const double steps = std::ldexp(1.0, bits) - 1.0;
  double best_err = std::numeric_limits<double>::infinity();
  float best_t = limit_;
  double inside = 0;  // mass of bins fully below the candidate
  for (size_t k = 1; k <= num_bins; ++k) {
    inside += abs[k - 1];
    const double t = static_cast<double>(k) * width;
    const double step = 2 * t / steps;
    double err = inside * step * step / 12.0;
    for (size_t j = k; j < num_bins; ++j) {
      const double centre = (static_cast<double>(j) + 0.5) * width;
      err += abs[j] * (centre - t) * (centre - t);
    }
    if (err < best_err) {
      best_err = err;
      best_t = static_cast<float>(t);
    }
  }
  return best_t;
}

}  // namespace kvant
