// The evaluation set of `kvant eval`, `kvant sensitivity` and `kvant quantize
// --accuracy-target`: DATA (io/dataset.h) opened for the model's inputs, and
// its class labels (--labels FILE, else the label file beside an IDX image
// file). Opening it reads the first file, so data that does not fit the
// model, and labels of another length than the data, are errors here,
// before any long work.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"

namespace kvant::cli {

struct EvalData {
  std::unique_ptr<SampleSource> source;
  std::vector<int64_t> labels;  // empty: none
  std::string labels_path;
  int64_t samples = -1;  // the samples that will be used (with the limit); -1: unknown
};

// `preprocess`: the --preprocess spec (may be empty); `limit` -1: all
// samples. With a known number of samples, labels must be as many (with a
// limit: at least as many); else Error "the labels (FILE) hold N entries for
// M samples of DATA".
EvalData open_eval_data(const std::string& data, const std::vector<ValueInfo>& inputs, const std::string& preprocess,
                        int64_t limit, const std::string& labels);

// The graph's inputs that are not initializers: what a sample feeds.
std::vector<ValueInfo> sample_inputs(const Graph& graph);

}  // namespace kvant::cli
