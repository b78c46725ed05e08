#include "cli/eval_data.h"

#include <algorithm>

#include "io/dataset.h"
#include "kvant/status.h"

namespace kvant::cli {

std::vector<ValueInfo> sample_inputs(const Graph& graph) {
  std::vector<ValueInfo> out;
  for (const auto& in : graph.inputs) {
    if (!graph.initializers.count(in.name)) out.push_back(in);
  }
  return out;
}

EvalData open_eval_data(const std::string& data, const std::vector<ValueInfo>& inputs, const std::string& preprocess,
                        int64_t limit, const std::string& labels) {
  EvalData e;
  DatasetOptions dopt;
  if (!preprocess.empty()) dopt.preprocess = parse_preprocess(preprocess);
  dopt.limit = limit;
  e.source = open_dataset(data, inputs, dopt);
  e.labels_path = labels;
  if (e.labels_path.empty()) {
    if (auto sibling = sibling_labels(data)) e.labels_path = *sibling;
  }
  if (!e.labels_path.empty()) e.labels = read_labels(e.labels_path);
  int64_t available = e.source->size();
  if (available < 0 && !e.labels.empty()) {  // a folder read lazily: count its samples now (reading, not running)
    available = 0;
    while (e.source->next()) ++available;
    e.source->reset();
  }
  e.samples = available;
  if (e.samples >= 0 && limit >= 0) e.samples = std::min(e.samples, limit);
  if (!e.labels.empty() && e.samples >= 0) {
    const auto count = static_cast<int64_t>(e.labels.size());
    const bool limited = limit >= 0;  // more labels than the samples used is fine then
    if (limited ? count < e.samples : count != e.samples) {
      throw Error(ErrorCode::kInvalidArgument, "the labels (" + e.labels_path + ") hold " + std::to_string(count) +
                                                   " entries for " + std::to_string(e.samples) + " samples of " + data);
    }
  }
  return e;
}

}  // namespace kvant::cli
