// `kvant quantize --accuracy-target`'s printing (accuracy_target.h).
#include "cli/accuracy_target.h"

#include <cstdio>

#include "cli/sensitivity_cli.h"

namespace kvant::cli {

void print_frontier(std::ostream& log, const TargetSearch& s, const TargetOptions& o) {
  std::vector<std::vector<std::string>> rows = {
      {"step", "kept FP32", "INT8", "moved", "size (serialized)", "metric", "output SQNR", "ms/sample"}};
  for (size_t i = 0; i < s.steps.size(); ++i) {
    const FrontierStep& st = s.steps[i];
    char ms_text[32];
    std::snprintf(ms_text, sizeof ms_text, "%.2f", st.ms_per_sample);
    rows.push_back({std::to_string(i) + (i == s.chosen ? " *" : ""), std::to_string(st.kept.size()),
                    std::to_string(st.int8.size()), st.moved.empty() ? std::string("-") : st.moved,
                    std::to_string(st.bytes) + " B", format_target_value(o, st.value),
                    format_metric(TaskMetric::kSqnr, st.scores.sqnr_db()), ms_text});
  }
  log << "frontier (* written):\n";
  print_table(log, rows);
}

Json target_json(const TargetSearch& s, const TargetOptions& o) {
  Json j = Json::object();
  j.set("metric", o.custom ? "metric-cmd" : task_metric_name(o.metric));
  j.set("drop", o.drop);
  j.set("threshold", s.threshold);
  j.set("met", s.met);
  j.set("fp32", scores_json(s.fp32, o.metric));
  j.set("fp32_value", s.fp32_value);
  j.set("chosen_step", static_cast<int64_t>(s.chosen));
  Json ranking = Json::array();
  for (const auto& n : s.ranking) ranking.push(n);
  j.set("ranking", ranking);
  Json steps = Json::array();
  for (size_t i = 0; i < s.steps.size(); ++i) {
    const FrontierStep& st = s.steps[i];
    Json x = Json::object();
    x.set("step", static_cast<int64_t>(i));
    Json kept = Json::array();
    for (const auto& n : st.kept) kept.push(n);
    x.set("kept_fp32", kept);
    Json int8 = Json::array();
    for (const auto& name : st.int8) int8.push(name);
    x.set("int8", int8);
    x.set("moved", st.moved);
    x.set("bytes", st.bytes);
    x.set("metric", st.value);
    x.set("scores", scores_json(st.scores, o.metric));
    x.set("ms_per_sample", st.ms_per_sample);
    x.set("meets", st.meets);
    steps.push(x);
  }
  j.set("frontier", steps);
  return j;
}

}  // namespace kvant::cli
