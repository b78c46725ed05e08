// Task metrics (task_metric.h has the definitions).
#include "quant/task_metric.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>

#include "kvant/status.h"

namespace kvant {

TaskMetric parse_task_metric(const std::string& name) {
  if (name == "top1") return TaskMetric::kTop1;
  if (name == "top5") return TaskMetric::kTop5;
  if (name == "agreement") return TaskMetric::kAgreement;
  if (name == "sqnr") return TaskMetric::kSqnr;
  if (name == "mse") return TaskMetric::kMse;
  if (name == "miou") return TaskMetric::kMiou;
  if (name == "perplexity") return TaskMetric::kPerplexity;
  throw Error(ErrorCode::kInvalidArgument,
              "--metric must be top1, top5, agreement, sqnr, mse, miou or perplexity, got \"" + name + "\"");
}

const char* task_metric_name(TaskMetric metric) {
  switch (metric) {
    case TaskMetric::kTop1: return "top1";
    case TaskMetric::kTop5: return "top5";
    case TaskMetric::kAgreement: return "agreement";
    case TaskMetric::kSqnr: return "sqnr";
    case TaskMetric::kMse: return "mse";
    case TaskMetric::kMiou: return "miou";
    case TaskMetric::kPerplexity: return "perplexity";
  }
  return "?";
}

bool higher_is_better(TaskMetric metric) { return metric != TaskMetric::kMse && metric != TaskMetric::kPerplexity; }
bool needs_labels(TaskMetric metric) { return metric == TaskMetric::kTop1 || metric == TaskMetric::kTop5; }
bool needs_classifier(TaskMetric metric) { return needs_labels(metric) || metric == TaskMetric::kAgreement; }

bool needs_class_map(TaskMetric metric) { return metric == TaskMetric::kMiou; }
bool needs_tokens(TaskMetric metric) { return metric == TaskMetric::kPerplexity; }

double token_nll(const float* row, int64_t vocab, int64_t target) {
  double top = row[0];
  for (int64_t i = 1; i < vocab; ++i) top = std::max(top, static_cast<double>(row[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(row[i]) - top);
  return std::log(sum) + top - static_cast<double>(row[target]);
}

TokenIds token_ids_of(const std::map<std::string, Tensor>& feed) {
  const Tensor* ids = nullptr;
  if (auto it = feed.find("input_ids"); it != feed.end() && it->second.dtype() == DType::kInt64) {
    ids = &it->second;
  } else {
    for (const auto& [name, t] : feed) {
      if (t.dtype() != DType::kInt64 || t.rank() < 1) continue;
      if (ids != nullptr) return {};  // two candidates: which is meant is not known
      ids = &t;
    }
  }
  if (ids == nullptr || ids->rank() < 1 || ids->numel() == 0) return {};
  TokenIds t;
  t.ids.assign(ids->data<int64_t>(), ids->data<int64_t>() + ids->numel());
  t.seq = ids->shape().back();
  return t;
}

ClassMap class_map_of(const Tensor& y) {
  if (y.rank() < 4 || y.shape()[1] < 2 || y.numel() == 0) return {};
  return {y.shape()[1], y.numel() / (y.shape()[0] * y.shape()[1])};
}

bool is_classifier_output(const Tensor& y) { return y.rank() >= 1 && y.numel() == y.shape().back() && y.numel() > 1; }

int64_t argmax(const float* v, int64_t n) { return static_cast<int64_t>(std::max_element(v, v + n) - v); }

void OutputScores::add(const float* ref, const float* y, int64_t n, bool classifier, int64_t label, ClassMap map,
                       const TokenIds* tokens) {
  ++samples;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(ref[i]) - y[i];
    signal += static_cast<double>(ref[i]) * ref[i];
    noise += d * d;
  }
  elements += n;
  if (map.classes > 1 && map.inner > 0 && n % (map.classes * map.inner) == 0) {
    ++map_samples;
    const auto classes = static_cast<size_t>(map.classes);
    if (intersection.size() < classes) {
      intersection.resize(classes, 0);
      union_.resize(classes, 0);
    }
    // Argmax over the class axis of each pixel, first of equal scores.
    auto pixel_class = [&](const float* v, int64_t base, int64_t p) {
      int64_t best = 0;
      for (int64_t c = 1; c < map.classes; ++c) {
        if (v[base + c * map.inner + p] > v[base + best * map.inner + p]) best = c;
      }
      return best;
    };
    for (int64_t base = 0; base < n; base += map.classes * map.inner) {
      for (int64_t p = 0; p < map.inner; ++p) {
        const int64_t a = pixel_class(ref, base, p), b = pixel_class(y, base, p);
        ++union_[static_cast<size_t>(a)];
        if (a == b) {
          ++intersection[static_cast<size_t>(a)];
        } else {
          ++union_[static_cast<size_t>(b)];
        }
      }
    }
  }
  if (tokens != nullptr && !tokens->ids.empty() && tokens->seq > 0 &&
      n % static_cast<int64_t>(tokens->ids.size()) == 0) {
    // Row r of the logits predicts id r + 1 within its sequence.
    const auto count = static_cast<int64_t>(tokens->ids.size());
    const int64_t vocab = n / count;
    for (int64_t r = 0; vocab > 1 && r + 1 < count; ++r) {
      if ((r + 1) % tokens->seq == 0) continue;  // the next row starts another sequence
      const int64_t next = tokens->ids[static_cast<size_t>(r + 1)];
      if (next < 0 || next >= vocab) continue;
      nll += token_nll(y + r * vocab, vocab, next);
      ++scored_tokens;
    }
  }
  if (!classifier) return;
  ++classifier_rows;
  const int64_t top = argmax(y, n);
  agree += top == argmax(ref, n);
  if (label < 0) return;
  ++labelled_rows;
  correct1 += top == label;
  // The label is in the top 5 when fewer than 5 scores rank above it: a
  // higher score, or an equal one earlier (argmax's first-of-equal rule, so
  // that top5 >= top1).
  int64_t above = 0;
  for (int64_t i = 0; i < n; ++i) above += y[i] > y[label] || (y[i] == y[label] && i < label);
  correct5 += above < 5;
}

namespace {
double share(int64_t a, int64_t b) { return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0; }
}  // namespace

double OutputScores::top1() const { return share(correct1, labelled_rows); }
double OutputScores::top5() const { return share(correct5, labelled_rows); }
double OutputScores::agreement() const { return share(agree, classifier_rows); }
double OutputScores::sqnr_db() const {
  return noise > 0 ? 10 * std::log10(signal / noise) : std::numeric_limits<double>::infinity();
}
double OutputScores::miou() const {
  double sum = 0;
  int64_t classes = 0;
  for (size_t c = 0; c < union_.size(); ++c) {
    if (union_[c] == 0) continue;
    sum += static_cast<double>(intersection[c]) / static_cast<double>(union_[c]);
    ++classes;
  }
  return classes > 0 ? sum / static_cast<double>(classes) : 1.0;
}
double OutputScores::perplexity() const {
  return scored_tokens > 0 ? std::exp(nll / static_cast<double>(scored_tokens))
                           : std::numeric_limits<double>::quiet_NaN();
}
double OutputScores::mse() const { return elements > 0 ? noise / static_cast<double>(elements) : 0.0; }

double OutputScores::value(TaskMetric metric) const {
  switch (metric) {
    case TaskMetric::kTop1: return top1();
    case TaskMetric::kTop5: return top5();
    case TaskMetric::kAgreement: return agreement();
    case TaskMetric::kSqnr: return sqnr_db();
    case TaskMetric::kMse: return mse();
    case TaskMetric::kMiou: return miou();
    case TaskMetric::kPerplexity: return perplexity();
  }
  return 0;
}

namespace {

std::string fixed_digits(double v, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

bool is_share(TaskMetric m) {
  return m == TaskMetric::kTop1 || m == TaskMetric::kTop5 || m == TaskMetric::kAgreement || m == TaskMetric::kMiou;
}

}  // namespace

std::string format_metric(TaskMetric metric, double value) {
  if (is_share(metric)) return fixed_digits(100 * value, 2) + "%";
  if (metric == TaskMetric::kSqnr) return std::isfinite(value) ? fixed_digits(value, 1) + " dB" : std::string("exact");
  if (metric == TaskMetric::kPerplexity) return fixed_digits(value, 4);
  std::ostringstream s;
  s << std::scientific << std::setprecision(3) << value;
  return s.str();
}

std::string format_delta(TaskMetric metric, double value, double base) {
  if (is_share(metric)) {
    std::ostringstream s;
    s << std::showpos << std::fixed << std::setprecision(2) << 100 * (value - base) << " points";
    return s.str();
  }
  if (metric == TaskMetric::kSqnr) return std::isfinite(value) ? fixed_digits(value, 1) + " dB" : std::string("exact");
  if (metric == TaskMetric::kPerplexity) {
    std::ostringstream s;
    s << std::showpos << std::fixed << std::setprecision(2) << 100 * (value / base - 1) << "%";
    return s.str();
  }
  std::ostringstream s;
  s << std::showpos << std::scientific << std::setprecision(2) << value - base;
  return s.str();
}

}  // namespace kvant
