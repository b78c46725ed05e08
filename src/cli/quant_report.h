// The report `kvant quantize` prints (and writes as JSON with --report):
// what was quantized, what it weighs on disk, and how far each quantized
// layer's output moved from FP32 (DESIGN.md §6).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "cli/json.h"
#include "quant/quantize.h"

namespace kvant::cli {

struct QuantReport {
  std::string mode;
  std::string input, output;
  int64_t fp32_bytes = 0, quantized_bytes = 0;
  QuantizeSummary summary;
  std::vector<LayerError> layers;  // worst first
  int64_t layer_samples = 0;
  std::vector<std::string> notes;
  double seconds = 0;
};

// Size of a model file plus the external-data files it references (the
// files beside it that the model's initializers name).
int64_t model_bytes_on_disk(const std::string& path);

void print_quant_report(std::ostream& os, const QuantReport& report);
Json quant_report_json(const QuantReport& report);

// Writes `json` to `path` atomically (temporary file + rename). Throws Error.
void write_json_file(const std::string& path, const Json& json);

}  // namespace kvant::cli
