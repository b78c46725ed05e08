// The HTML form of a report (html_report.h). Every number on the page is
// read from the report's JSON, so the two files cannot disagree. Plots are
// inline SVG drawn here: horizontal bars (per-layer error, sensitivity),
// histograms with the chosen range (calibration), a line (the accuracy
// target's frontier).
#include "cli/html_report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <iomanip>
#include <limits>
#include <sstream>
#include <vector>

#include "cli/cli_common.h"
#include "io/atomic_file.h"

namespace kvant::cli {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string esc(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string num(double v, int digits) {
  if (std::isnan(v)) return "n/a";
  if (std::isinf(v)) return v > 0 ? "exact" : "-inf";
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

// Short general form for axis labels and histogram ranges (3 significant digits).
std::string g3(double v) {
  if (!std::isfinite(v)) return num(v, 0);
  std::ostringstream s;
  s << std::setprecision(3) << v;
  return s.str();
}

// SVG coordinates with one decimal.
std::string px(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << v;
  return s.str();
}

double get(const Json& j, const std::string& key) {
  const Json* v = j.find(key);
  return v ? v->number() : kNaN;
}

std::string get_str(const Json& j, const std::string& key) {
  const Json* v = j.find(key);
  return v ? v->str() : std::string();
}

const std::vector<Json>& get_items(const Json& j, const std::string& key) {
  static const std::vector<Json> kEmpty;
  const Json* v = j.find(key);
  return v && v->kind() == Json::Kind::kArray ? v->items() : kEmpty;
}

std::string bytes_text(double b) { return std::isnan(b) ? "n/a" : format_bytes(static_cast<int64_t>(b)); }

// Truncates a label to `n` characters, marking the cut.
std::string clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n - 1) + "~"; }

// Round tick values (1, 2 or 5 times a power of ten apart) inside [lo, hi].
std::vector<double> nice_ticks(double lo, double hi) {
  const double raw = (hi - lo) / 4;
  if (!(raw > 0) || !std::isfinite(raw)) return {lo};
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = raw / p < 1.5 ? p : raw / p < 3.5 ? 2 * p : raw / p < 7.5 ? 5 * p : 10 * p;
  std::vector<double> ticks;
  for (double v = std::ceil(lo / step) * step; v <= hi + 1e-9 * step && ticks.size() < 12; v += step)
    ticks.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  return ticks;
}

// A tick value with as many decimals as the tick spacing needs.
std::string tick_text(double v, const std::vector<double>& ticks) {
  if (ticks.size() < 2) return g3(v);
  const double step = ticks[1] - ticks[0];
  const int decimals = std::clamp(static_cast<int>(std::ceil(-std::log10(step) - 1e-9)), 0, 8);
  return num(v, decimals);
}

// A task metric's value: classifier scores as percentages.
std::string metric_text(const std::string& metric, double v) {
  if (metric == "top1" || metric == "top5" || metric == "agreement") return num(100 * v, 2) + "%";
  return g3(v);
}

struct Scale {
  double lo = 0, hi = 1;
  void fit(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
};

// Horizontal bars: one row per label, one bar per series (NaN and
// infinities are drawn as a note, not a bar). `refs` are vertical lines.
struct BarChart {
  std::string id, unit;
  std::vector<std::string> series;  // names, in colour order
  std::vector<std::pair<std::string, std::vector<double>>> rows;
  std::vector<std::pair<double, std::string>> refs;
};

const char* const kColours[] = {"#2b6cb0", "#a0c4e8", "#c05621"};

std::string render_bars(const BarChart& c) {
  bool any_ref = false;
  for (const auto& r : c.refs) any_ref = any_ref || std::isfinite(r.first);
  const double label_w = 230, plot_w = 470, right = 60, top = any_ref ? 46 : 28;
  const double bar_h = c.series.size() > 1 ? 6 : 10, row_h = bar_h * static_cast<double>(c.series.size()) + 4;
  const double height = top + row_h * static_cast<double>(c.rows.size()) + 24;
  Scale s;
  s.lo = s.hi = 0;
  for (const auto& [label, vals] : c.rows) {
    for (double v : vals) s.fit(v);
  }
  for (const auto& [v, label] : c.refs) s.fit(v);
  if (s.hi - s.lo <= 0) s.hi = s.lo + 1;
  const double pad = 0.04 * (s.hi - s.lo);
  if (s.lo < 0) s.lo -= pad;
  s.hi += pad;
  auto x = [&](double v) { return label_w + (v - s.lo) / (s.hi - s.lo) * plot_w; };
  std::ostringstream o;
  o << "<svg id=\"" << esc(c.id) << "\" class=\"chart\" width=\"" << px(label_w + plot_w + right) << "\" height=\""
    << px(height) << "\" viewBox=\"0 0 " << px(label_w + plot_w + right) << " " << px(height)
    << "\" role=\"img\" aria-label=\"" << esc(c.id) << "\">\n";
  // legend
  double lx = label_w;
  for (size_t k = 0; k < c.series.size(); ++k) {
    o << "<rect x=\"" << px(lx) << "\" y=\"6\" width=\"10\" height=\"10\" fill=\"" << kColours[k % 3] << "\"/>"
      << "<text x=\"" << px(lx + 14) << "\" y=\"15\">" << esc(c.series[k]) << "</text>\n";
    lx += 16 + 7.0 * static_cast<double>(c.series[k].size()) + 20;
  }
  lx = label_w;
  for (const auto& [v, label] : c.refs) {  // reference lines are named in a second legend row
    if (!std::isfinite(v)) continue;
    const std::string text = label + " " + g3(v);
    o << "<line class=\"ref\" x1=\"" << px(lx) << "\" y1=\"24\" x2=\"" << px(lx) << "\" y2=\"34\"/>"
      << "<text class=\"reflabel\" x=\"" << px(lx + 5) << "\" y=\"33\">" << esc(text) << "</text>\n";
    lx += 5 + 6.5 * static_cast<double>(text.size()) + 20;
  }
  const std::vector<double> ticks = nice_ticks(s.lo, s.hi);
  for (double v : ticks) {
    o << "<line class=\"grid\" x1=\"" << px(x(v)) << "\" y1=\"" << px(top - 4) << "\" x2=\"" << px(x(v)) << "\" y2=\""
      << px(height - 20) << "\"/><text class=\"tick\" x=\"" << px(x(v)) << "\" y=\"" << px(height - 6)
      << "\" text-anchor=\"middle\">" << esc(tick_text(v, ticks)) << "</text>\n";
  }
  o << "<text class=\"tick\" x=\"" << px(label_w + plot_w + right - 4) << "\" y=\"" << px(height - 6)
    << "\" text-anchor=\"end\">" << esc(c.unit) << "</text>\n";
  for (size_t r = 0; r < c.rows.size(); ++r) {
    const double y0 = top + row_h * static_cast<double>(r);
    o << "<text class=\"label\" x=\"" << px(label_w - 6) << "\" y=\"" << px(y0 + row_h / 2 + 3)
      << "\" text-anchor=\"end\">" << esc(clip(c.rows[r].first, 34)) << "<title>" << esc(c.rows[r].first)
      << "</title></text>\n";
    for (size_t k = 0; k < c.rows[r].second.size(); ++k) {
      const double v = c.rows[r].second[k];
      const double y = y0 + 2 + bar_h * static_cast<double>(k);
      if (!std::isfinite(v)) {
        o << "<text class=\"tick\" x=\"" << px(x(0) + 3) << "\" y=\"" << px(y + bar_h - 1) << "\">"
          << (std::isnan(v) ? "n/a" : num(v, 0)) << "</text>\n";
        continue;
      }
      const double a = std::min(x(0), x(v)), b = std::max(x(0), x(v));
      o << "<rect class=\"bar\" x=\"" << px(a) << "\" y=\"" << px(y) << "\" width=\"" << px(std::max(b - a, 0.5))
        << "\" height=\"" << px(bar_h - 1) << "\" fill=\"" << kColours[k % 3] << "\"><title>"
        << esc(c.rows[r].first + " (" + c.series[k] + "): " + g3(v) + " " + c.unit) << "</title></rect>\n";
    }
  }
  for (const auto& [v, label] : c.refs) {
    if (!std::isfinite(v)) continue;
    o << "<line class=\"ref\" x1=\"" << px(x(v)) << "\" y1=\"" << px(top - 4) << "\" x2=\"" << px(x(v)) << "\" y2=\""
      << px(height - 20) << "\"><title>" << esc(label + " " + g3(v)) << "</title></line>\n";
  }
  o << "</svg>\n";
  return o.str();
}

// A histogram with the chosen range shaded and its ends marked.
std::string render_histogram(const Json& h, size_t index) {
  const double w = 300, hgt = 120, left = 6, bottom = 18, top = 4;
  const double plot_lo = get(h, "plot_lo"), plot_hi = get(h, "plot_hi");
  const double lo = get(h, "lo"), hi = get(h, "hi");
  const auto& counts = get_items(h, "counts");
  if (counts.empty() || !(plot_hi > plot_lo)) return "";
  double peak = 0;
  for (const Json& c : counts) peak = std::max(peak, c.number());
  if (peak <= 0) peak = 1;
  auto x = [&](double v) { return left + (v - plot_lo) / (plot_hi - plot_lo) * (w - 2 * left); };
  const double plot_h = hgt - bottom - top;
  std::ostringstream o;
  o << "<svg id=\"hist-" << index << "\" class=\"hist\" width=\"" << px(w) << "\" height=\"" << px(hgt)
    << "\" viewBox=\"0 0 " << px(w) << " " << px(hgt) << "\" role=\"img\" aria-label=\"histogram of "
    << esc(get_str(h, "tensor")) << "\">\n";
  o << "<rect class=\"range\" x=\"" << px(x(lo)) << "\" y=\"" << px(top) << "\" width=\""
    << px(std::max(x(hi) - x(lo), 0.5)) << "\" height=\"" << px(plot_h) << "\"/>\n";
  const double bw = (w - 2 * left) / static_cast<double>(counts.size());
  for (size_t b = 0; b < counts.size(); ++b) {
    const double c = counts[b].number();
    if (!(c > 0)) continue;
    // sqrt scale: the tails (what clipping cuts) stay visible next to the peak
    const double bh = std::max(1.0, std::sqrt(c / peak) * plot_h);
    o << "<rect class=\"hbar\" x=\"" << px(left + bw * static_cast<double>(b)) << "\" y=\"" << px(top + plot_h - bh)
      << "\" width=\"" << px(std::max(bw - 0.5, 0.5)) << "\" height=\"" << px(bh) << "\"/>\n";
  }
  for (double v : {lo, hi}) {
    o << "<line class=\"rangeend\" x1=\"" << px(x(v)) << "\" y1=\"" << px(top) << "\" x2=\"" << px(x(v)) << "\" y2=\""
      << px(top + plot_h) << "\"/>\n";
  }
  o << "<text class=\"tick\" x=\"" << px(left) << "\" y=\"" << px(hgt - 5) << "\">" << esc(g3(plot_lo))
    << "</text><text class=\"tick\" x=\"" << px(w - left) << "\" y=\"" << px(hgt - 5) << "\" text-anchor=\"end\">"
    << esc(g3(plot_hi)) << "</text>\n</svg>\n";
  return o.str();
}

// Metric per frontier step, with the threshold as a dashed line.
std::string render_frontier(const Json& target) {
  const auto& steps = get_items(target, "frontier");
  if (steps.empty()) return "";
  const double w = 700, h = 240, left = 60, right = 20, top = 16, bottom = 36;
  Scale s;
  s.lo = s.hi = get(steps[0], "metric");
  if (!std::isfinite(s.lo)) s.lo = s.hi = 0;
  for (const Json& st : steps) s.fit(get(st, "metric"));
  s.fit(get(target, "threshold"));
  s.fit(get(target, "fp32_value"));
  if (s.hi - s.lo <= 0) s.hi = s.lo + 1;
  const double pad = 0.08 * (s.hi - s.lo);
  s.lo -= pad;
  s.hi += pad;
  const double n = static_cast<double>(std::max<size_t>(steps.size() - 1, 1));
  auto x = [&](double i) { return left + i / n * (w - left - right); };
  auto y = [&](double v) { return top + (s.hi - v) / (s.hi - s.lo) * (h - top - bottom); };
  std::ostringstream o;
  o << "<svg id=\"frontier-chart\" class=\"chart\" width=\"" << px(w) << "\" height=\"" << px(h) << "\" viewBox=\"0 0 "
    << px(w) << " " << px(h) << "\" role=\"img\" aria-label=\"accuracy-target frontier\">\n";
  const std::vector<double> ticks = nice_ticks(s.lo, s.hi);
  for (double v : ticks) {
    o << "<line class=\"grid\" x1=\"" << px(left) << "\" y1=\"" << px(y(v)) << "\" x2=\"" << px(w - right) << "\" y2=\""
      << px(y(v)) << "\"/><text class=\"tick\" x=\"" << px(left - 4) << "\" y=\"" << px(y(v) + 3)
      << "\" text-anchor=\"end\">" << esc(tick_text(v, ticks)) << "</text>\n";
  }
  for (const auto& [key, label] :
       {std::pair<const char*, const char*>{"threshold", "target"}, {"fp32_value", "FP32"}}) {
    const double v = get(target, key);
    if (!std::isfinite(v)) continue;
    o << "<line class=\"ref\" x1=\"" << px(left) << "\" y1=\"" << px(y(v)) << "\" x2=\"" << px(w - right) << "\" y2=\""
      << px(y(v)) << "\"/><text class=\"reflabel\" x=\"" << px(w - right - 4) << "\" y=\"" << px(y(v) - 3)
      << "\" text-anchor=\"end\">" << label << "</text>\n";
  }
  std::string path;
  for (size_t i = 0; i < steps.size(); ++i) {
    const double v = get(steps[i], "metric");
    if (!std::isfinite(v)) continue;
    path += (path.empty() ? "M" : " L") + px(x(static_cast<double>(i))) + " " + px(y(v));
  }
  if (!path.empty()) o << "<path class=\"line\" d=\"" << path << "\"/>\n";
  const double chosen = get(target, "chosen_step");
  for (size_t i = 0; i < steps.size(); ++i) {
    const double v = get(steps[i], "metric");
    if (!std::isfinite(v)) continue;
    const bool meets = steps[i].find("meets") && steps[i].find("meets")->truthy();
    o << "<circle class=\""
      << (static_cast<double>(i) == chosen ? "chosen"
          : meets                          ? "meets"
                                           : "misses")
      << "\" cx=\"" << px(x(static_cast<double>(i))) << "\" cy=\"" << px(y(v)) << "\" r=\"4\"><title>step " << i << ": "
      << esc(metric_text(get_str(target, "metric"), v)) << "</title></circle>\n";
    o << "<text class=\"tick\" x=\"" << px(x(static_cast<double>(i))) << "\" y=\"" << px(h - bottom + 14)
      << "\" text-anchor=\"middle\">" << i << "</text>\n";
  }
  o << "<text class=\"tick\" x=\"" << px((left + w - right) / 2) << "\" y=\"" << px(h - 4)
    << "\" text-anchor=\"middle\">step (layers moved to higher precision)</text>\n</svg>\n";
  return o.str();
}

std::string card(const std::string& title, const std::string& value, const std::string& detail) {
  return "<div class=\"card\"><div class=\"ct\">" + esc(title) + "</div><div class=\"cv\">" + esc(value) +
         "</div><div class=\"cd\">" + esc(detail) + "</div></div>\n";
}

void list_section(std::ostringstream& o, const std::string& cls, const std::vector<Json>& items) {
  if (items.empty()) return;
  o << "<ul class=\"" << cls << "\">\n";
  for (const Json& i : items) o << "<li>" << esc(i.str()) << "</li>\n";
  o << "</ul>\n";
}

const char* const kStyle = R"CSS(
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1a202c;margin:0;background:#f7fafc}
main{max-width:1000px;margin:0 auto;padding:20px 24px 60px}
h1{font-size:22px;margin:8px 0 2px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #cbd5e0;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}.sub{color:#4a5568;margin:0 0 12px;word-break:break-all}
.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:8px 12px;min-width:170px}
.ct{font-size:12px;color:#4a5568}.cv{font-size:20px;font-weight:600}.cd{font-size:12px;color:#4a5568}
table{margin:8px 0;border-collapse:collapse;background:#fff;font-size:13px}td,th{border:1px solid #e2e8f0;padding:3px 8px;text-align:right}
th{background:#edf2f7}td.l,th.l{text-align:left;max-width:380px;word-break:break-all}
.warn li{color:#9b2c2c}.notes li{color:#4a5568}.chart,.hist{background:#fff;border:1px solid #e2e8f0;border-radius:4px}
.grid{stroke:#e2e8f0}.tick,.label,.reflabel{font-size:11px;fill:#4a5568}.label{fill:#1a202c}
.ref{stroke:#c53030;stroke-dasharray:4 3}.reflabel{fill:#c53030}
.range{fill:#c6f6d5}.rangeend{stroke:#2f855a;stroke-width:1.5}.hbar{fill:#2b6cb0}
.line{fill:none;stroke:#2b6cb0;stroke-width:2}.meets{fill:#2f855a}.misses{fill:#c53030}.chosen{fill:#d69e2e;stroke:#1a202c}
figure{margin:0}.hists{display:flex;flex-wrap:wrap;gap:12px}.hcap{font-size:12px;max-width:300px;word-break:break-all}
details{margin:8px 0}summary{cursor:pointer;color:#2b6cb0}
)CSS";

void page_start(std::ostringstream& o, const std::string& title, const std::string& sub) {
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" << esc(title)
    << "</title>\n<style>" << kStyle << "</style>\n</head>\n<body>\n<main>\n<h1>" << esc(title)
    << "</h1>\n<p class=\"sub\">" << esc(sub) << "</p>\n";
}

// ---- quantize ---------------------------------------------------------------

void layer_section(std::ostringstream& o, const Json& r) {
  const auto& layers = get_items(r, "layers");
  if (layers.empty()) return;
  o << "<section id=\"layer-error\">\n<h2>Per-layer error against FP32</h2>\n<p>SQNR in dB on "
    << num(get(r, "layer_error_samples"), 0)
    << " samples; higher is better. <b>Own</b>: the layer alone on FP32 inputs (its own quantization error). "
       "<b>Accumulated</b>: the quantized model up to this layer. Graph order.</p>\n";
  std::vector<const Json*> order;
  for (const Json& l : layers) order.push_back(&l);
  std::stable_sort(order.begin(), order.end(),
                   [](const Json* a, const Json* b) { return get(*a, "order") < get(*b, "order"); });
  BarChart c;
  c.id = "layer-error-chart";
  c.unit = "dB";
  c.series = {"own", "accumulated"};
  for (const Json* l : order) c.rows.push_back({get_str(*l, "node"), {get(*l, "own_sqnr_db"), get(*l, "sqnr_db")}});
  o << render_bars(c);
  o << "<details><summary>Table, worst first (" << layers.size() << " layers)</summary>\n<table id=\"layer-table\">"
    << "<tr><th class=\"l\">layer</th><th class=\"l\">tensor</th><th>own dB</th><th>accumulated dB</th>"
       "<th>cosine</th><th>FP32 std</th><th>note</th></tr>\n";
  for (const Json& l : layers) {
    const bool constant = l.find("near_constant") && l.find("near_constant")->truthy();
    o << "<tr><td class=\"l\">" << esc(get_str(l, "node")) << "</td><td class=\"l\">" << esc(get_str(l, "tensor"))
      << "</td><td>" << num(get(l, "own_sqnr_db"), 1) << "</td><td>" << num(get(l, "sqnr_db"), 1) << "</td><td>"
      << num(get(l, "cosine"), 5) << "</td><td>" << g3(get(l, "fp32_std")) << "</td><td>"
      << (constant ? "near-constant" : "") << "</td></tr>\n";
  }
  o << "</table>\n</details>\n</section>\n";
}

void histogram_group(std::ostringstream& o, const std::vector<Json>& hs, bool weights, size_t& index) {
  bool any = false;
  for (const Json& h : hs) {
    const bool w = h.find("weight") && h.find("weight")->truthy();
    if (w != weights) continue;
    const std::string svg = render_histogram(h, index++);
    if (svg.empty()) continue;
    if (!any) o << "<h3>" << (weights ? "Weights" : "Activations") << "</h3>\n<div class=\"hists\">\n";
    any = true;
    const double values = get(h, "values"), clipped = get(h, "clipped"), ranges = get(h, "ranges");
    o << "<figure class=\"hfig\">" << svg << "<figcaption class=\"hcap\"><b>" << esc(get_str(h, "tensor")) << "</b>"
      << (get_str(h, "node").empty() ? "" : " &rarr; " + esc(get_str(h, "node"))) << "<br>range "
      << esc(g3(get(h, "lo"))) << " .. " << esc(g3(get(h, "hi")))
      << (ranges > 1 ? " (widest of " + num(ranges, 0) + (weights ? " scales)" : ")") : std::string()) << ", values "
      << esc(g3(get(h, "min"))) << " .. " << esc(g3(get(h, "max"))) << "<br>clipped "
      << num(values > 0 ? 100.0 * clipped / values : 0.0, 3) << "% of " << num(values, 0) << " values"
      << (get(h, "binned") < values ? " (plot: " + num(get(h, "binned"), 0) + " sampled)" : std::string())
      << "</figcaption></figure>\n";
  }
  if (any) o << "</div>\n";
}

void histogram_section(std::ostringstream& o, const Json& r) {
  const auto& hs = get_items(r, "histograms");
  if (hs.empty()) return;
  o << "<section id=\"ranges\">\n<h2>Value histograms and chosen ranges</h2>\n<p>Blue: FP32 values (square-root "
       "height, so the tails show). Green band: the range the quantized model represents "
       "(<i>(q<sub>min</sub> &minus; zero point) &times; scale</i> .. <i>(q<sub>max</sub> &minus; zero point) "
       "&times; scale</i>); values outside it are clipped. Activations from the report samples run through the "
       "FP32 model; weights from the FP32 initializers, each clipped against its own channel's range.</p>\n";
  size_t index = 0;
  histogram_group(o, hs, false, index);
  histogram_group(o, hs, true, index);
  o << "</section>\n";
}

void target_section(std::ostringstream& o, const Json& t) {
  const bool met = t.find("met") && t.find("met")->truthy();
  const std::string metric = get_str(t, "metric");
  o << "<section id=\"frontier\">\n<h2>Accuracy target</h2>\n<p>Metric <b>" << esc(metric) << "</b>: FP32 "
    << esc(metric_text(metric, get(t, "fp32_value"))) << ", allowed drop " << g3(get(t, "drop")) << " (threshold "
    << esc(metric_text(metric, get(t, "threshold"))) << "): <b>" << (met ? "met" : "not met") << "</b>, step "
    << num(get(t, "chosen_step"), 0) << " written.</p>\n"
    << render_frontier(t);
  o << "<table id=\"frontier-table\"><tr><th>step</th><th class=\"l\">moved</th><th>metric</th><th>size</th>"
       "<th>ms / sample</th><th>kept FP32</th><th>INT8</th><th>meets</th></tr>\n";
  for (const Json& st : get_items(t, "frontier")) {
    std::string moved;
    const Json* m = st.find("moved");
    if (m && m->kind() == Json::Kind::kString) moved = m->str();
    if (m && m->kind() == Json::Kind::kArray) {
      for (const Json& x : m->items()) moved += (moved.empty() ? "" : ", ") + x.str();
    }
    const bool meets = st.find("meets") && st.find("meets")->truthy();
    o << "<tr><td>" << num(get(st, "step"), 0) << "</td><td class=\"l\">" << esc(moved) << "</td><td>"
      << esc(metric_text(metric, get(st, "metric"))) << "</td><td>" << bytes_text(get(st, "bytes")) << "</td><td>"
      << num(get(st, "ms_per_sample"), 2) << "</td><td>" << get_items(st, "kept_fp32").size() << "</td><td>"
      << get_items(st, "int8").size() << "</td><td>" << (meets ? "yes" : "no") << "</td></tr>\n";
  }
  o << "</table>\n</section>\n";
}

void render_quantize(std::ostringstream& o, const Json& r) {
  page_start(o, "kvant quantize report",
             get_str(r, "input") + " \u2192 " + get_str(r, "output") + " \u00b7 " + get_str(r, "mode"));
  o << "<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n";
  const double fb = get(r, "fp32_bytes"), qb = get(r, "quantized_bytes");
  o << card("Size", bytes_text(qb), "FP32 " + bytes_text(fb) + " (" + num(fb > 0 ? 100 * qb / fb : kNaN, 1) + "%)");
  if (const Json* s = r.find("speed")) {
    const double f = get(*s, "fp32_ms"), q = get(*s, "quantized_ms");
    o << card("Latency, one sample", num(q, 2) + " ms",
              "FP32 " + num(f, 2) + " ms (" + num(q > 0 ? f / q : kNaN, 2) + "x)");
  }
  o << card("Layers", num(get(r, "quantized_nodes"), 0) + " quantized",
            std::to_string(get_items(r, "kept_fp32").size() + get_items(r, "fp32_reasons").size() +
                           get_items(r, "skipped").size()) +
                " compute nodes left in FP32");
  double worst = std::numeric_limits<double>::infinity();
  std::string worst_name;
  for (const Json& l : get_items(r, "layers")) {
    const double v = get(l, "own_sqnr_db");
    if (std::isfinite(v) && v < worst) {
      worst = v;
      worst_name = get_str(l, "node");
    }
  }
  if (!worst_name.empty()) o << card("Worst own layer error", num(worst, 1) + " dB", clip(worst_name, 40));
  if (const Json* t = r.find("accuracy_target")) {
    const bool met = t->find("met") && t->find("met")->truthy();
    o << card("Accuracy target", met ? "met" : "not met",
              get_str(*t, "metric") + " " + metric_text(get_str(*t, "metric"), get(*t, "threshold")) + " or better");
  }
  o << card("Calibration", num(get(r, "calibration_samples"), 0) + " samples",
            "quantized in " + num(get(r, "seconds"), 1) + " s");
  o << "</div>\n";
  list_section(o, "warn", get_items(r, "warnings"));
  list_section(o, "notes", get_items(r, "notes"));
  o << "</section>\n";
  layer_section(o, r);
  histogram_section(o, r);
  if (const Json* t = r.find("accuracy_target")) target_section(o, *t);
  const auto& reasons = get_items(r, "fp32_reasons");
  const auto& kept = get_items(r, "kept_fp32");
  const auto& skipped = get_items(r, "skipped");
  if (!reasons.empty() || !kept.empty() || !skipped.empty()) {
    o << "<section id=\"fp32\">\n<h2>Left in FP32</h2>\n<table><tr><th class=\"l\">node</th><th "
         "class=\"l\">why</th></tr>\n";
    for (const Json& k : kept) o << "<tr><td class=\"l\">" << esc(k.str()) << "</td><td class=\"l\">kept</td></tr>\n";
    for (const Json& k : reasons)
      o << "<tr><td class=\"l\">" << esc(get_str(k, "node")) << "</td><td class=\"l\">" << esc(get_str(k, "reason"))
        << "</td></tr>\n";
    for (const Json& k : skipped)
      o << "<tr><td class=\"l\">" << esc(k.str()) << "</td><td class=\"l\">not quantized by this mode</td></tr>\n";
    o << "</table>\n</section>\n";
  }
}

// ---- sensitivity --------------------------------------------------------------

void render_sensitivity(std::ostringstream& o, const Json& r) {
  const std::string metric = get_str(r, "metric");
  const bool higher = r.find("higher_is_better") && r.find("higher_is_better")->truthy();
  page_start(o, "kvant sensitivity report",
             get_str(r, "model") + " \u00b7 " + (get(r, "bits") == 4 ? "weight-only INT4" : "static INT8") +
                 " \u00b7 " + num(get(r, "samples"), 0) + " samples of " + get_str(r, "data"));
  const double fp32 = r.find("fp32") ? get(*r.find("fp32"), "value") : kNaN;
  const double all = r.find("quantized") ? get(*r.find("quantized"), "value") : kNaN;
  o << "<section id=\"summary\">\n<h2>Summary</h2>\n<div class=\"cards\">\n"
    << card("Metric", metric, higher ? "higher is better" : "lower is better")
    << card("FP32", metric_text(metric, fp32), "") << card("All layers quantized", metric_text(metric, all), "")
    << card("Time", num(get(r, "seconds"), 1) + " s", "") << "</div>\n</section>\n";
  BarChart c;
  c.id = "sensitivity-chart";
  c.unit = metric;
  c.series = {"only this layer quantized"};
  bool leave_one_out = false;
  for (const Json& l : get_items(r, "layers")) leave_one_out = leave_one_out || l.find("all_but");
  if (leave_one_out) c.series.push_back("all but this layer");
  for (const Json& l : get_items(r, "layers")) {
    if (!(l.find("measured") && l.find("measured")->truthy())) continue;
    std::vector<double> v = {l.find("only") ? get(*l.find("only"), "value") : kNaN};
    if (leave_one_out) v.push_back(l.find("all_but") ? get(*l.find("all_but"), "value") : kNaN);
    c.rows.push_back({get_str(l, "node"), v});
  }
  c.refs = {{fp32, "FP32"}, {all, "all quantized"}};
  o << "<section id=\"sensitivity\">\n<h2>Ranking</h2>\n<p>Most sensitive first: the metric with only that layer "
       "quantized"
    << (leave_one_out ? ", and with every layer but that one quantized" : "") << ".</p>\n"
    << render_bars(c);
  o << "<table id=\"sensitivity-table\"><tr><th>rank</th><th class=\"l\">layer</th><th class=\"l\">op</th>"
       "<th>only</th><th>all but</th><th class=\"l\">note</th></tr>\n";
  for (const Json& l : get_items(r, "layers")) {
    o << "<tr><td>" << num(get(l, "rank"), 0) << "</td><td class=\"l\">" << esc(get_str(l, "node"))
      << "</td><td class=\"l\">" << esc(get_str(l, "op")) << "</td><td>"
      << (l.find("only") ? g3(get(*l.find("only"), "value")) : "") << "</td><td>"
      << (l.find("all_but") ? g3(get(*l.find("all_but"), "value")) : "") << "</td><td class=\"l\">"
      << esc(get_str(l, "note")) << "</td></tr>\n";
  }
  o << "</table>\n</section>\n";
}

// ---- eval -----------------------------------------------------------------------

void render_eval(std::ostringstream& o, const Json& r) {
  page_start(
      o, "kvant eval report",
      num(get(r, "samples"), 0) + " samples of " + get_str(r, "data") + " \u00b7 output " + get_str(r, "output"));
  const auto& models = get_items(r, "models");
  BarChart top1, sqnr;
  top1.id = "eval-top1-chart";
  top1.unit = "%";
  top1.series = {"top-1"};
  sqnr.id = "eval-sqnr-chart";
  sqnr.unit = "dB";
  sqnr.series = {"output SQNR vs the first model"};
  for (const Json& m : models) {
    if (std::isfinite(get(m, "top1"))) top1.rows.push_back({get_str(m, "model"), {100 * get(m, "top1")}});
    if (std::isfinite(get(m, "output_sqnr_db"))) sqnr.rows.push_back({get_str(m, "model"), {get(m, "output_sqnr_db")}});
  }
  o << "<section id=\"eval\">\n<h2>Models</h2>\n<table id=\"eval-table\"><tr><th class=\"l\">model</th><th>size</th>"
       "<th>top-1</th><th>top-1 agreement</th><th>output SQNR dB</th></tr>\n";
  for (const Json& m : models) {
    o << "<tr><td class=\"l\">" << esc(get_str(m, "model")) << "</td><td>" << bytes_text(get(m, "bytes")) << "</td><td>"
      << num(100 * get(m, "top1"), 2) << "</td><td>" << num(100 * get(m, "top1_agreement"), 2) << "</td><td>"
      << num(get(m, "output_sqnr_db"), 1) << "</td></tr>\n";
  }
  o << "</table>\n";
  if (!top1.rows.empty()) o << render_bars(top1);
  if (!sqnr.rows.empty()) o << render_bars(sqnr);
  o << "</section>\n";
}

}  // namespace

std::string render_html_report(const Json& report) {
  std::ostringstream o;
  const std::string kind = get_str(report, "report");
  if (kind == "sensitivity") {
    render_sensitivity(o, report);
  } else if (kind == "eval") {
    render_eval(o, report);
  } else {
    render_quantize(o, report);
  }
  o << "<footer><p class=\"sub\">Written by kvant. The same numbers are in the JSON report (--report FILE.json).</p>"
       "</footer>\n</main>\n</body>\n</html>\n";
  return o.str();
}

bool is_html_path(const std::string& path) {
  std::string lower;
  for (char c : path) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  auto ends = [&](const std::string& s) {
    return lower.size() >= s.size() && lower.compare(lower.size() - s.size(), s.size(), s) == 0;
  };
  return ends(".html") || ends(".htm");
}

void write_report_file(const std::string& path, const Json& report) {
  const std::string text = is_html_path(path) ? render_html_report(report) : report.dump() + "\n";
  const Status s = write_file_atomic(path, text);
  if (!s.ok()) throw Error(s.code(), s.message());
}

}  // namespace kvant::cli
