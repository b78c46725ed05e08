// Shared by `kvant sensitivity` and `kvant quantize` (both on the public
// API): metric values, tables, JSON, progress lines, and the glue from the
// command line's data and metric command to the API's types.
#pragma once

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "api/api_internal.h"
#include "cli/json.h"
#include "io/sample_source.h"
#include "kvant/kvant.h"
#include "quant/sensitivity.h"

namespace kvant::cli {

// format_metric and format_delta: quant/task_metric.h.
// Columns padded to their widest cell, two spaces apart.
void print_table(std::ostream& os, const std::vector<std::vector<std::string>>& rows);
// The API's scores and ranking (include/kvant/kvant.h) as `kvant
// sensitivity --json` and `kvant quantize --report` write them.
Json scores_json(const MetricScores& scores);
Json sensitivity_json(const SensitivityReport& report);
// The API's progress as the commands show it on stderr: a "calibrating
// 12/500" line (and AWQ / SmoothQuant / GPTQ statistics) on a terminal,
// and the sensitivity ranking's progress_printer lines.
ProgressCallback api_progress_printer();
// A progress line on stderr with the time left: on a terminal rewritten in
// place at most 5 times a second, else a line every 10 s.
std::function<void(const SensitivityProgress&)> progress_printer(const std::string& what);

// --calibrator NAME as the API's Calibrator.
Calibrator public_calibrator(const std::string& name);
// --metric-cmd's runner (cli/metric_cmd.h) as the API's metric callback.
MetricCallback public_metric_callback(
    const std::function<double(const std::vector<std::vector<float>>&, const std::string&)>& custom);

// A dataset (io/dataset.h: --calib / --eval) as the API's reader: the
// samples are shared, not copied, and it rewinds.
class DatasetReader : public CalibrationDataReader {
 public:
  explicit DatasetReader(SampleSource& source) : source_(source) {}
  std::optional<Tensors> get_next() override;
  bool rewind() override;
  int64_t size() override;

 private:
  SampleSource& source_;
};

}  // namespace kvant::cli
