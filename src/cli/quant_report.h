// The report `kvant quantize` prints (and writes as JSON with --report):
// what was quantized, what it weighs on disk, and how far each quantized
// layer's output moved from FP32 (DESIGN.md §6).
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "cli/json.h"
#include "cli/speed_check.h"
#include "quant/quantize.h"
#include "quant/range_histograms.h"

namespace kvant::cli {

struct QuantReport {
  std::string mode;
  std::string input, output;
  int64_t fp32_bytes = 0, quantized_bytes = 0;
  QuantizeSummary summary;
  std::vector<LayerError> layers;  // worst first
  int64_t layer_samples = 0;
  std::vector<std::string> notes;
  // Compute nodes (Conv, Gemm, MatMul, LSTM, ...) the mode left in FP32
  // without being asked to (--exclude lists them under kept_fp32).
  std::vector<std::string> skipped;
  std::optional<SpeedCheck> speed;
  std::vector<std::string> warnings;  // quality and speed findings
  // Values and chosen ranges of the quantized tensors (only with --report).
  std::vector<RangeHistogram> histograms;
  double seconds = 0;
};

// Output SQNR below this is a warning in the summary: at 20 dB the output's
// error is a tenth of its magnitude (RMS), where INT8 models measure 30-45 dB
// and INT4 models that keep their accuracy 15-25 dB (docs/accuracy.md).
inline constexpr double kOutputSqnrWarningDb = 20.0;

// Fills report.skipped (compute nodes of `fp32` neither quantized nor
// excluded) and report.warnings (output SQNR below kOutputSqnrWarningDb, a
// slower quantized model) from what the report already holds.
void add_findings(QuantReport& report, const Model& fp32);

// Size of a model file plus the external-data files it references (the
// files beside it that the model's initializers name).
int64_t model_bytes_on_disk(const std::string& path);

void print_quant_report(std::ostream& os, const QuantReport& report);
Json quant_report_json(const QuantReport& report);

// Writes `json` to `path` atomically (temporary file + rename). Throws Error.
void write_json_file(const std::string& path, const Json& json);

}  // namespace kvant::cli
