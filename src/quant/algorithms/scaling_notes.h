// The report notes of the weight rewrites `kvant quantize` and the API's
// quantize_* run before quantizing (AWQ, SmoothQuant, cross-layer
// equalization): one wording for both, so their reports agree.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "quant/algorithms/awq.h"
#include "quant/algorithms/equalize.h"
#include "quant/algorithms/smooth_quant.h"

namespace kvant {

std::vector<std::string> awq_notes(const AwqResult& result);
// `alpha`: the one asked for; nullopt: searched per layer input.
std::vector<std::string> smooth_quant_notes(const SmoothQuantResult& result, std::optional<double> alpha);
// Pairs, sweeps, and why pairs were skipped (counted per reason).
std::vector<std::string> equalize_notes(const EqualizeResult& result);

}  // namespace kvant
