// Which output and input channel each element of a Conv/Gemm/MatMul weight
// belongs to (used by cross-layer equalization and bias correction).
//   Conv   W [O, I/g, k...] (group g): element (o, i, ...) is output channel
//          o, input channel (o div O/g) * I/g + i; depthwise (g = I = O):
//          both are o.
//   Gemm   B [N, K] (transB 1): (n, k); B [K, N] (transB 0): (k, n).
//   MatMul B [K, N]: (k, n).
#pragma once

#include <cstdint>

#include "ir/graph.h"

namespace kvant {

struct WeightChannels {
  bool valid = false;
  bool conv = false;
  int64_t out_channels = 0;
  int64_t in_channels = 0;
  int64_t per_filter = 0;  // Conv: I/g * kernel elements
  int64_t kernel = 0;      // Conv: kernel elements per input channel
  int64_t in_per_group = 0;
  int64_t out_per_group = 0;
  bool rows_are_outputs = false;  // Gemm with transB: B [N, K]

  // Output channel o and input channel c of element e.
  void channels(int64_t e, int64_t& o, int64_t& c) const {
    if (conv) {
      o = e / per_filter;
      c = (o / out_per_group) * in_per_group + (e % per_filter) / kernel;
    } else if (rows_are_outputs) {
      o = e / in_channels;
      c = e % in_channels;
    } else {
      c = e / out_channels;
      o = e % out_channels;
    }
  }
};

// The map for `node` (Conv, Gemm or MatMul) with weight `w`; valid false for
// any other node or a weight of the wrong rank.
inline WeightChannels weight_channels(const Node& node, const Tensor& w) {
  WeightChannels m;
  if (node.op_type == "Conv") {
    const int64_t group = node.attr_int("group", 1);
    if (w.rank() < 3 || group < 1 || w.dim(0) % group != 0 || w.numel() == 0) return m;
    m.conv = true;
    m.out_channels = w.dim(0);
    m.in_per_group = w.dim(1);
    m.in_channels = w.dim(1) * group;
    m.out_per_group = w.dim(0) / group;
    m.per_filter = w.numel() / w.dim(0);
    m.kernel = m.per_filter / w.dim(1);
  } else if (node.op_type == "Gemm" || node.op_type == "MatMul") {
    if (w.rank() != 2 || w.numel() == 0) return m;
    m.rows_are_outputs = node.op_type == "Gemm" && node.attr_int("transB", 0) != 0;
    m.out_channels = m.rows_are_outputs ? w.dim(0) : w.dim(1);
    m.in_channels = m.rows_are_outputs ? w.dim(1) : w.dim(0);
  } else {
    return m;
  }
  m.valid = true;
  return m;
}

}  // namespace kvant
