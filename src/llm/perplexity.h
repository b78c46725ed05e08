// Sliding-window perplexity, as Hugging Face's "strided" evaluation does it
// (transformers docs, "Perplexity of fixed-length models"):
//
//   for begin = 0, stride, 2 stride, ...:
//     end = min(begin + context, n)
//     the window feeds tokens [begin, end) and scores the targets in
//     [max(prev_end, begin + 1), end): each target t is predicted from the
//     logits at t - 1, and only targets no earlier window scored count
//     prev_end = end; stop once end == n
//
// So with stride < context every token but the first is scored exactly
// once, each with at least context - stride tokens before it in its window
// (all before it, in the first window). stride == context gives disjoint
// windows, whose first tokens have no context and are not scored.
//
//   NLL  = sum over scored t of -log softmax(logits[t - 1])[id[t]]
//   perplexity = exp(NLL / scored),  bits per byte = NLL / ln 2 / bytes
#pragma once

#include <cstdint>
#include <vector>

#include "quant/task_metric.h"

namespace kvant::llm {

struct Window {
  int64_t begin = 0, end = 0;  // tokens fed: [begin, end)
  int64_t first_target = 0;    // targets scored: [first_target, end)
};

// Throws Error when context < 2, stride < 1, stride > context, or n < 2.
std::vector<Window> strided_windows(int64_t n, int64_t context, int64_t stride);

// -log softmax(row)[target] (quant/task_metric.h: the perplexity metric
// scores with the same function).
using ::kvant::token_nll;

}  // namespace kvant::llm
