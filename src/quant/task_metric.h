// Task metrics of a model's output against its FP32 original's, summed over
// an evaluation set: what `kvant eval` prints and what `kvant sensitivity`
// and `kvant quantize --accuracy-target` rank and steer by.
//
//   top1       share of samples whose top-1 class equals the label
//   top5       share of samples whose label is among the 5 highest scores
//   agreement  share of samples whose top-1 class equals the FP32 model's
//   sqnr       10 log10(sum x^2 / sum (x - y)^2) in dB, x the FP32 output,
//              y this model's, over every element of every sample
//   mse        sum (x - y)^2 / elements
//   miou       mean intersection over union of the per-pixel class map
//              (argmax over axis 1 of an [N, C, H, W, ...] score map) against the
//              FP32 model's map: per class, pixels both maps give it over
//              pixels either gives it, summed over the set, averaged over the
//              classes that occur in either map
//   perplexity exp of the mean negative log-likelihood of each next token
//              under a language model's logits [.., T, V], the tokens being
//              the sample's own ids (token_ids_of); lower is better
//
// top1/top5/agreement count only classifier outputs (one row of scores per
// sample, is_classifier_output), miou only score maps (class_map_of),
// perplexity only samples with token ids. Higher is better for all but mse
// and perplexity.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/tensor.h"

namespace kvant {

enum class TaskMetric { kTop1, kTop5, kAgreement, kSqnr, kMse, kMiou, kPerplexity };

// "top1", "top5", "agreement", "sqnr", "mse", "miou", "perplexity"; throws
// Error listing them.
TaskMetric parse_task_metric(const std::string& name);
const char* task_metric_name(TaskMetric metric);
bool higher_is_better(TaskMetric metric);
bool needs_labels(TaskMetric metric);
bool needs_classifier(TaskMetric metric);
bool needs_class_map(TaskMetric metric);
bool needs_tokens(TaskMetric metric);

// One row of scores per sample ([1, C], [C], ...), with C > 1.
bool is_classifier_output(const Tensor& y);

// A per-pixel score map: rank >= 4 ([N, C, H, W, ...]; a language model's [N, T, V] is not one), axis 1 the classes
// (more than one), the values laid out [outer, classes, inner]. classes == 0: not a map.
struct ClassMap {
  int64_t classes = 0;
  int64_t inner = 0;  // pixels per map
};
ClassMap class_map_of(const Tensor& y);

// -log softmax(row)[target], in double, shifted by the row's max (no
// overflow for large logits): one next token's negative log-likelihood.
double token_nll(const float* row, int64_t vocab, int64_t target);

// A sample's token ids [.., T] (int64), read as each position's next token.
struct TokenIds {
  std::vector<int64_t> ids;  // empty: none
  int64_t seq = 0;           // T: the last dimension; rows restart every seq ids
};
// The feed "input_ids", else the feed's only int64 input of rank >= 1;
// none when neither is there.
TokenIds token_ids_of(const std::map<std::string, Tensor>& feed);

struct OutputScores {
  int64_t samples = 0;
  int64_t classifier_rows = 0;
  int64_t labelled_rows = 0;
  int64_t correct1 = 0, correct5 = 0;  // against the labels
  int64_t agree = 0;                   // same top-1 as the reference
  double signal = 0, noise = 0;        // sum x^2, sum (x - y)^2 against the reference x
  int64_t elements = 0;
  int64_t map_samples = 0;
  std::vector<int64_t> intersection, union_;  // per class of the class maps
  double nll = 0;                             // sum of -log p(next token), this model's logits
  int64_t scored_tokens = 0;                  // next tokens scored

  // One sample: `ref` the FP32 model's output, `y` this model's (n values
  // each); `classifier` when the output is a row of scores; label -1: none;
  // `map` the output's class map layout when it is one.
  // `tokens`: the sample's ids, when `y` holds logits [.., T, V] for them.
  void add(const float* ref, const float* y, int64_t n, bool classifier, int64_t label, ClassMap map = {},
           const TokenIds* tokens = nullptr);
  double top1() const;
  double top5() const;
  double agreement() const;
  double sqnr_db() const;  // +inf when y equals ref
  double mse() const;
  double miou() const;        // 1 when no class occurs (no map scored)
  double perplexity() const;  // NaN when no token was scored
  double value(TaskMetric metric) const;
};

// "97.00%" for shares, "31.2 dB" / "exact" for sqnr, "1.23e-04" for mse.
std::string format_metric(TaskMetric metric, double value);
// The change from `base`: "-1.50 points", "-3.2 dB", "+1.2e-05".
std::string format_delta(TaskMetric metric, double value, double base);

// Index of the largest value (the first of equal ones).
int64_t argmax(const float* v, int64_t n);

}  // namespace kvant
