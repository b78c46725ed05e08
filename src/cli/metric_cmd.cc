#include "cli/metric_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cerrno>
#include <cmath>
#include <filesystem>
#include <memory>

#include "io/npy.h"
#include "kvant/status.h"

namespace kvant::cli {

namespace {

[[noreturn]] void fail(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// A temporary folder removed with its files when the last copy goes.
struct TempDir {
  std::string path;
  TempDir() {
    const char* base = getenv("TMPDIR");
    std::string pattern = std::string(base && *base ? base : "/tmp") + "/kvant-metric-XXXXXX";
    if (!mkdtemp(pattern.data())) fail("--metric-cmd: cannot create a temporary folder in " + pattern);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

MetricFn metric_command(const std::string& command) {
  if (command.find("{outputs}") == std::string::npos) {
    fail("--metric-cmd must contain {outputs} (replaced by the .npy file of the outputs), got \"" + command + "\"");
  }
  auto dir = std::make_shared<TempDir>();
  return [command, dir](const std::vector<std::vector<float>>& outputs, const std::string& variant) -> double {
    if (outputs.empty()) fail("--metric-cmd: no outputs to score");
    const auto per_sample = static_cast<int64_t>(outputs[0].size());
    Tensor t(DType::kFloat32, Shape{static_cast<int64_t>(outputs.size()), per_sample});
    for (size_t i = 0; i < outputs.size(); ++i) {
      if (static_cast<int64_t>(outputs[i].size()) != per_sample) fail("--metric-cmd: outputs differ in size");
      std::copy(outputs[i].begin(), outputs[i].end(), t.data<float>() + static_cast<int64_t>(i) * per_sample);
    }
    const std::string file = dir->path + "/outputs.npy";
    const Status st = write_npy(file, t);
    if (!st.ok()) fail("--metric-cmd: " + st.message());
    std::string cmd = command;
    for (size_t pos; (pos = cmd.find("{outputs}")) != std::string::npos;) cmd.replace(pos, 9, shell_quote(file));
    FILE* pipe = popen(cmd.c_str(), "r");
    if (!pipe) fail("--metric-cmd: cannot run \"" + command + "\"");
    std::string text;
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;) text.append(buf, n);
    const int status = pclose(pipe);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      fail("--metric-cmd \"" + command + "\" failed on the " + variant + " outputs (exit status " +
           (WIFEXITED(status) ? std::to_string(WEXITSTATUS(status)) : std::string("by a signal")) + ")");
    }
    std::string last;
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      const std::string line = trim(text.substr(start, end - start));
      if (!line.empty()) last = line;
      start = end + 1;
    }
    errno = 0;
    char* rest = nullptr;
    const double v = std::strtod(last.c_str(), &rest);
    if (last.empty() || errno != 0 || (rest && *rest != '\0') || !std::isfinite(v)) {
      fail("--metric-cmd \"" + command + "\" printed no number on its last line for the " + variant + " outputs" +
           (last.empty() ? std::string(" (it printed nothing)") : " (it printed \"" + last.substr(0, 80) + "\")"));
    }
    return v;
  };
}

}  // namespace kvant::cli
