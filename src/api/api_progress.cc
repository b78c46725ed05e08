// ProgressCallback (kvant.h) as the library's progress hooks: the caller's
// callback is called with a Progress, and a false return (cancel) becomes
// Error(kCancelled), which ends the call at the API edge (guarded()).
#include <string>

#include "api/api_internal.h"
#include "quant/sensitivity.h"

namespace kvant {

const char* progress_stage_name(ProgressStage stage) {
  switch (stage) {
    case ProgressStage::kCalibration: return "calibration";
    case ProgressStage::kAwq: return "awq";
    case ProgressStage::kSmoothQuant: return "smooth_quant";
    case ProgressStage::kGptq: return "gptq";
    case ProgressStage::kSensitivity: return "sensitivity";
    case ProgressStage::kAccuracyTarget: return "accuracy_target";
  }
  return "unknown";
}

void report_progress(const ProgressCallback& callback, const Progress& progress) {
  if (!callback || callback(progress)) return;
  std::string at = std::to_string(progress.done);
  if (progress.total >= 0) at += "/" + std::to_string(progress.total);
  throw Error(ErrorCode::kCancelled, std::string("cancelled by the progress callback (") +
                                         progress_stage_name(progress.stage) + " " + at + ")");
}

std::function<void(int64_t, int64_t)> sample_progress(const ProgressCallback& callback, ProgressStage stage) {
  if (!callback) return nullptr;
  return [&callback, stage](int64_t done, int64_t total) {
    Progress p;
    p.stage = stage;
    p.done = done;
    p.total = total;
    report_progress(callback, p);
  };
}

std::function<void(const SensitivityProgress&)> sensitivity_progress(const ProgressCallback& callback) {
  if (!callback) return nullptr;
  return [&callback](const SensitivityProgress& s) {
    Progress p;
    p.stage = ProgressStage::kSensitivity;
    p.done = s.done;
    p.total = s.total;
    p.layer = s.layer;
    report_progress(callback, p);
  };
}

}  // namespace kvant
