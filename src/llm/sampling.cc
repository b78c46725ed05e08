#include "llm/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "kvant/status.h"

namespace kvant::llm {

namespace {
[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }
}  // namespace

void check_sampling_options(const SamplingOptions& options) {
  if (!(options.temperature >= 0.0f) || !std::isfinite(options.temperature)) {
    fail("--temperature must be a finite number >= 0, got " + std::to_string(options.temperature));
  }
  if (options.top_k < 0) fail("--top-k must be >= 0 (0: no limit), got " + std::to_string(options.top_k));
  if (!(options.top_p > 0.0f && options.top_p <= 1.0f)) {
    fail("--top-p must lie in (0, 1], got " + std::to_string(options.top_p));
  }
}

int64_t argmax(const float* logits, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

Sampler::Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {
  check_sampling_options(options);
}

double Sampler::uniform() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

int64_t Sampler::sample(const float* logits, int64_t vocab) {
  if (vocab <= 0) fail("the model's logits have no vocabulary entries");
  for (int64_t i = 0; i < vocab; ++i) {
    if (std::isnan(logits[i])) fail("the model produced a NaN logit (token id " + std::to_string(i) + ")");
  }
  if (options_.temperature == 0.0f) return argmax(logits, vocab);

  // Candidates: every id, or the top_k largest, sorted by logit (then id).
  order_.resize(static_cast<size_t>(vocab));
  std::iota(order_.begin(), order_.end(), int64_t{0});
  auto higher = [logits](int64_t a, int64_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  size_t keep = order_.size();
  if (options_.top_k > 0 && static_cast<size_t>(options_.top_k) < keep) {
    keep = static_cast<size_t>(options_.top_k);
    std::partial_sort(order_.begin(), order_.begin() + static_cast<std::ptrdiff_t>(keep), order_.end(), higher);
  } else {
    std::sort(order_.begin(), order_.end(), higher);
  }
  // Softmax over the candidates, shifted by the largest for range.
  const double top = logits[order_[0]];
  weights_.resize(keep);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    weights_[i] = std::exp((static_cast<double>(logits[order_[i]]) - top) / options_.temperature);
    total += weights_[i];
  }
  // Nucleus: the shortest prefix whose probability reaches top_p.
  if (options_.top_p < 1.0f) {
    double mass = 0.0;
    size_t n = 0;
    while (n < keep) {
      mass += weights_[n++] / total;
      if (mass >= options_.top_p) break;
    }
    keep = n;
    total = std::accumulate(weights_.begin(), weights_.begin() + static_cast<std::ptrdiff_t>(keep), 0.0);
  }
  const double target = uniform() * total;
  double run = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    run += weights_[i];
    if (target < run) return order_[i];
  }
  return order_[keep - 1];  // rounding left target at the very top
}

}  // namespace kvant::llm
