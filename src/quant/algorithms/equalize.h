// Cross-layer equalization (equalize.cc has the math): rescales consecutive
// Conv/Gemm/MatMul layers so that each channel's weight range is the same in
// both, without changing what the FP32 model computes. Run on the prepared
// FP32 model (after BatchNorm folding), before quantization.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"

namespace kvant {

struct EqualizeOptions {
  int max_sweeps = 100;     // passes over all pairs at most
  double tolerance = 1e-4;  // stop when no scale of a sweep moved by more than this (|log s|)
};

// One pair: layer 1 (node index) -> [activation] -> layer 2.
struct EqualizePair {
  size_t first = 0;
  size_t second = 0;
  std::string activation;  // "" when layer 1 feeds layer 2 directly
};

struct EqualizeResult {
  std::vector<EqualizePair> pairs;  // the pairs equalized
  int sweeps = 0;                   // sweeps run
  double last_change = 0;           // largest |log s| of the last sweep
  // Layer pairs left alone, each (layer 1 name -> layer 2 name, why).
  std::vector<std::pair<std::string, std::string>> skipped;
};

// Finds the pairs that may be equalized in `graph` (its main graph only);
// appends the structurally matching pairs that may not, with why, to `skipped`.
std::vector<EqualizePair> find_equalize_pairs(const Graph& graph,
                                              std::vector<std::pair<std::string, std::string>>* skipped);

// Equalizes every pair find_equalize_pairs returns, sweeping until the scales
// settle. Weights and biases it changes are replaced by new tensors (a weight
// another node also reads is first copied under a new name), so a Model that
// shares initializer storage with `graph` is not changed.
EqualizeResult equalize_cross_layer(Graph& graph, const EqualizeOptions& options = {});

// max |w| per output channel of layer `node` (Conv: W[o]; Gemm/MatMul: the
// output column / row), and per input channel (Conv: the channel that group's
// filters read; depthwise: W[c]). Empty when the node is no such layer with a
// constant float weight. For tests and reports.
std::vector<double> output_channel_ranges(const Graph& graph, const Node& node);
std::vector<double> input_channel_ranges(const Graph& graph, const Node& node);

}  // namespace kvant
