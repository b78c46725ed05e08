// `--metric-cmd "CMD {outputs}"`: a user's own metric. kvant writes the
// scored output of every evaluation sample of one model variant to a .npy
// file (float32 [samples, values per sample]), runs CMD through /bin/sh with
// {outputs} replaced by that file's quoted path, and reads one number from
// the last non-empty line CMD prints on stdout. A CMD that exits non-zero or
// whose last line is not a number is an error naming it.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace kvant::cli {

using MetricFn = std::function<double(const std::vector<std::vector<float>>& outputs, const std::string& variant)>;

// Throws Error when `command` lacks {outputs}.
MetricFn metric_command(const std::string& command);

}  // namespace kvant::cli
