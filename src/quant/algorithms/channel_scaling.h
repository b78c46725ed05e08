// Per-input-channel scaling of linear layers, shared by AWQ (awq.cc) and
// SmoothQuant (smooth_quant.cc).
//
// The MatMul/Gemm layers y_i = x W_i that read the same float tensor
// x [.., K] form a group (W_i a constant [K, N_i]; Gemm: transA 0, B [K, N]
// or [N, K] with transB). For any s_k > 0
//   x W_i = (x diag(1/s)) (diag(s) W_i)
// so row k of every W_i is multiplied by s_k and x is divided by s_k. The
// division is folded, exactly, into what produces x where it can be:
//   x = LayerNormalization(z, gamma, beta), axis -1   gamma / s, beta / s
//   x = Mul(y, g), g a constant [K]                   g / s   (RMSNorm's and a decomposed LayerNorm's gamma)
//   x = Add(y, c), c a constant [K]                   c / s, then y / s the same way (LayerNorm's beta, a bias)
//   x = MatMul(a, V) / Gemm(a, V, c), V constant      V's output column k / s_k (and c_k / s_k)
//   x = Relu(y) or LeakyRelu(y)                       y / s the same way (positively homogeneous)
//   x = Mul(a, b), both computed (SwiGLU)             b / s, else a / s, the same way
// Legal only when every reader of x (and of each y up the chain) is a layer
// of the group or reads only its shape (Shape, Size), none of them is a graph
// output, and each constant is a float32 initializer that is not also a
// graph input. Otherwise x / s is an explicit Mul(x, 1/s) in front of the
// group's layers: exact too, at one elementwise multiply per run.
//
// A constant or weight that other nodes read too is copied under a new name
// before it is changed, and changed tensors are new tensors, so a Model that
// shares initializer storage with the graph is left as it was.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"
#include "quant/gptq.h"
#include "quant/quantize.h"

namespace kvant {

struct ScaleGroup {
  std::string input;           // the tensor x the layers read
  std::vector<size_t> layers;  // indices of the MatMul/Gemm nodes in graph.nodes, ascending
};

// The groups of `graph`'s main graph: MatMul and Gemm (transA 0) nodes whose
// input 0 is not a constant and whose input 1 is a float32 rank-2 initializer
// (not a graph input), except the nodes named in `excluded`; in node order
// of each group's first layer.
std::vector<ScaleGroup> find_scale_groups(const Graph& graph, const std::set<std::string>& excluded);

// K (the weight's reduction length) of group layer `node`.
int64_t layer_in_features(const Graph& graph, const Node& node);

// The weight of group layer `node` as [K, N] row-major (Gemm's [N, K] B
// transposed).
std::vector<float> layer_weight_kn(const Graph& graph, const Node& node, int64_t* n);

// Statistics of a layer input x [.., K] per channel k over the calibration
// rows (all but the last axis).
struct ChannelStats {
  int64_t k = 0;
  int64_t rows = 0;
  std::vector<double> abs_sum;  // sum |x_k|
  std::vector<double> abs_max;  // max |x_k|
  InputMoment moment;           // sum x x^T, when asked for (k = 0 otherwise)
  // Up to the asked number of rows [n, K], a uniform sample of all rows
  // (reservoir sampling, fixed seed), when asked for.
  std::vector<float> sample;
};

// Runs `model` on at most options.max_samples samples of `calibration` and
// gathers the statistics of each tensor named in `tensors` (graph inputs or
// node outputs), with their second moments when `moments` and a sample of
// at most `sample_rows` rows. Throws Error naming a tensor that is never
// computed as float32, or that changes its last dimension, and the sample
// that fails.
std::map<std::string, ChannelStats> collect_channel_stats(const Model& model, SampleSource& calibration,
                                                          const std::set<std::string>& tensors, bool moments,
                                                          const QuantizeOptions& options, int64_t sample_rows = 0);

// How a group's x / s was done: folded (into = the node, e.g.
// `LayerNormalization "ln1"` or `Mul "/ln/Mul"`), or an explicit Mul (into
// = why it could not be folded).
struct ScaleApplied {
  bool folded = false;
  std::string into;
};

// For each group g (scales[g]: K values > 0): multiplies row k of each of
// its layers' weights by scales[g][k] and divides x by it, folded where legal
// (see the top of the file), else through a new Mul named after x and `tag`.
// Groups must have distinct inputs (as find_scale_groups gives them).
std::vector<ScaleApplied> apply_input_scales(Graph& graph, const std::vector<ScaleGroup>& groups,
                                             const std::vector<std::vector<double>>& scales, const std::string& tag);

}  // namespace kvant
