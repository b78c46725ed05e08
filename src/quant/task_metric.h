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
//
// top1/top5/agreement count only classifier outputs (one row of scores per
// sample, is_classifier_output). Higher is better for all but mse.
#pragma once

#include <cstdint>
#include <string>

#include "ir/tensor.h"

namespace kvant {

enum class TaskMetric { kTop1, kTop5, kAgreement, kSqnr, kMse };

// "top1", "top5", "agreement", "sqnr", "mse"; throws Error listing them.
TaskMetric parse_task_metric(const std::string& name);
const char* task_metric_name(TaskMetric metric);
bool higher_is_better(TaskMetric metric);
bool needs_labels(TaskMetric metric);
bool needs_classifier(TaskMetric metric);

// One row of scores per sample ([1, C], [C], ...), with C > 1.
bool is_classifier_output(const Tensor& y);

struct OutputScores {
  int64_t samples = 0;
  int64_t classifier_rows = 0;
  int64_t labelled_rows = 0;
  int64_t correct1 = 0, correct5 = 0;  // against the labels
  int64_t agree = 0;                   // same top-1 as the reference
  double signal = 0, noise = 0;        // sum x^2, sum (x - y)^2 against the reference x
  int64_t elements = 0;

  // One sample: `ref` the FP32 model's output, `y` this model's (n values
  // each); `classifier` when the output is a row of scores; label -1: none.
  void add(const float* ref, const float* y, int64_t n, bool classifier, int64_t label);
  double top1() const;
  double top5() const;
  double agreement() const;
  double sqnr_db() const;  // +inf when y equals ref
  double mse() const;
  double value(TaskMetric metric) const;
};

// "97.00%" for shares, "31.2 dB" / "exact" for sqnr, "1.23e-04" for mse.
std::string format_metric(TaskMetric metric, double value);
// The change from `base`: "-1.50 points", "-3.2 dB", "+1.2e-05".
std::string format_delta(TaskMetric metric, double value, double base);

// Index of the largest value (the first of equal ones).
int64_t argmax(const float* v, int64_t n);

}  // namespace kvant
