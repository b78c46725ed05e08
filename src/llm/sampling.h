// Choosing the next token from one row of logits.
//
//   temperature 0: argmax (greedy; ties go to the lowest id), no randomness.
//   temperature T > 0: softmax(logits / T) restricted to
//     - the top_k largest logits (top_k 0: all), then
//     - the smallest prefix of those, sorted by probability, whose mass
//       reaches top_p (nucleus sampling; top_p 1: all),
//   renormalized, and one id drawn with a uniform number from the sampler's
//   own generator (a 64-bit Mersenne twister turned into [0, 1) with its top
//   53 bits, so a seed gives the same tokens on every platform).
//
// Ties in the sort are broken by the lower id, so the candidate order, and
// with it the draw, depends only on the logits and the seed.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace kvant::llm {

struct SamplingOptions {
  float temperature = 0.0f;  // 0: greedy
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // 1: no limit
  uint64_t seed = 0;
};

// Throws Error naming the option when a value is out of range (temperature
// < 0 or not finite, top_k < 0, top_p outside (0, 1]).
void check_sampling_options(const SamplingOptions& options);

// Index of the largest value; the lowest index among equals. n > 0.
int64_t argmax(const float* logits, int64_t n);

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options);
  // The next token id for one row of `vocab` logits. A NaN logit is an
  // error naming the position (a broken model, not a token to pick).
  int64_t sample(const float* logits, int64_t vocab);

 private:
  double uniform();  // [0, 1)
  SamplingOptions options_;
  std::mt19937_64 rng_;
  std::vector<int64_t> order_;   // candidate ids, reused between calls
  std::vector<double> weights_;  // their unnormalized probabilities
};

}  // namespace kvant::llm
