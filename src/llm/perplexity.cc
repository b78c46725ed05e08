#include "llm/perplexity.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kvant/status.h"

namespace kvant::llm {

std::vector<Window> strided_windows(int64_t n, int64_t context, int64_t stride) {
  auto fail = [](const std::string& m) { throw Error(ErrorCode::kInvalidArgument, m); };
  if (context < 2) fail("--context must be at least 2, got " + std::to_string(context));
  if (stride < 1 || stride > context) {
    fail("--stride must lie in [1, --context " + std::to_string(context) + "], got " + std::to_string(stride));
  }
  if (n < 2) fail("perplexity needs at least 2 tokens, got " + std::to_string(n));
  std::vector<Window> windows;
  int64_t prev_end = 0;
  for (int64_t begin = 0;; begin += stride) {
    const int64_t end = std::min(begin + context, n);
    windows.push_back({begin, end, std::max(prev_end, begin + 1)});
    prev_end = end;
    if (end == n) break;
  }
  return windows;
}

}  // namespace kvant::llm
