// Printing shared by `kvant sensitivity` and `kvant quantize
// --accuracy-target`: metric values, tables, JSON, a progress line.
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/json.h"
#include "quant/sensitivity.h"

namespace kvant::cli {

// format_metric and format_delta: quant/task_metric.h.
// Columns padded to their widest cell, two spaces apart.
void print_table(std::ostream& os, const std::vector<std::vector<std::string>>& rows);
Json scores_json(const OutputScores& scores, TaskMetric metric);
Json sensitivity_json(const SensitivityResult& result);
// A progress line on stderr with the time left: on a terminal rewritten in
// place at most 5 times a second, else a line every 10 s.
std::function<void(const SensitivityProgress&)> progress_printer(const std::string& what);

}  // namespace kvant::cli
