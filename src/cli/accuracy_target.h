// `kvant quantize --accuracy-target DROP`'s printing: the frontier table and
// the report's JSON. The search itself: quant/accuracy_target.h.
#pragma once

#include <ostream>

#include "cli/json.h"
#include "quant/accuracy_target.h"

namespace kvant::cli {

// The frontier walked, a row per step, the written one marked "*".
void print_frontier(std::ostream& os, const TargetSearch& search, const TargetOptions& options);

Json target_json(const TargetSearch& search, const TargetOptions& options);

}  // namespace kvant::cli
