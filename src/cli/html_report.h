// `--report FILE.html` of `kvant quantize`, `sensitivity` and `eval`: the
// report's JSON (the numbers `--report FILE.json` writes, nothing else)
// rendered as one self-contained page: inline SVG plots, inline CSS, no
// script, nothing fetched (a Content-Security-Policy of default-src 'none'
// makes any fetch a console error, which the Chromium test checks).
//
// The JSON's "report" key says what it is ("quantize", "sensitivity",
// "eval"); sections appear for the keys present: "layers" (per-layer error),
// "histograms" (value histograms and chosen ranges), "accuracy_target" (the
// frontier), a sensitivity ranking, an eval table.
#pragma once

#include <string>

#include "cli/json.h"

namespace kvant::cli {

std::string render_html_report(const Json& report);

// True when `path` names an HTML file (.html or .htm, any case).
bool is_html_path(const std::string& path);

// Writes `report` to `path` atomically: HTML when is_html_path, else JSON.
// Throws Error when the file cannot be written.
void write_report_file(const std::string& path, const Json& report);

}  // namespace kvant::cli
