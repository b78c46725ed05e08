// Value histograms of the tensors a quantized model quantizes, next to the
// range the quantizer chose for each: what the report's range plots show
// (DESIGN.md §6). Names follow quant/qdq.h: an activation t is read by its
// QuantizeLinear as "t/float" (the FP32 model's t), a weight W is
// DequantizeLinear("W/q") -> "W" (the FP32 model's initializer W).
//
//   activation: the FP32 values of t on the samples, and the range its
//               QuantizeLinear can represent, (qmin - zp) * s .. (qmax - zp) * s;
//   weight:     the FP32 initializer W, and the range of its scales: with one
//               scale per channel or block, lo/hi are the widest of them and
//               `clipped` counts each value against its own channel's range.
//
// 7-bit weights (--reduce-range) are recognised by their codes: an int8
// tensor whose codes all lie in [-64, 63] is plotted with that grid.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/sample_source.h"
#include "ir/graph.h"

namespace kvant {

struct RangeHistogram {
  std::string tensor;  // the FP32 model's name
  std::string node;    // the first node of the quantized model that reads it
  bool weight = false;
  double lo = 0, hi = 0;            // the representable range (the widest, with several scales)
  int64_t ranges = 1;               // how many scales: 1 per tensor, else channels/blocks
  double min = 0, max = 0;          // of the FP32 values seen
  double plot_lo = 0, plot_hi = 0;  // what the bins span: [min, max] and [lo, hi] together
  std::vector<int64_t> counts;      // equal-width bins over [plot_lo, plot_hi]
  int64_t values = 0;               // values seen (activations: over all samples)
  int64_t binned = 0;               // values in `counts` (activations: a strided sample of them)
  int64_t clipped = 0;              // values outside their own range
};

// Histograms of every per-tensor-quantized activation (from up to
// `max_samples` samples run through `fp32` on the reference executor; none
// when `samples` is null) and every quantized float weight, in the order of
// the quantized graph's nodes. Tensors inside subgraphs are not included.
std::vector<RangeHistogram> range_histograms(const Model& fp32, const Model& quantized, SampleSource* samples,
                                             int64_t max_samples, int bins = 48);

}  // namespace kvant
