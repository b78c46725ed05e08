// FP32 2-D MaxPool and AveragePool, channels last (NHWC): x [batch, h_in,
// w_in, c] -> y [batch, h_out, w_out, c], the window of output (oy, ox) being
//   iy = oy * stride_h - pad_top + ky * dil_h,  ky in [0, kh)
//   ix = ox * stride_w - pad_left + kx * dil_w, kx in [0, kw)
// and only the taps inside the input taking part (the padding is not read):
//   MaxPool:     y = the first in-range tap, then for each later one in order
//                (ky outer, kx inner) y = x > y ? x : y; -inf when no tap is
//                in range. That is the reference's rule (ops/pool.cc) to the
//                bit, NaN included: a NaN first tap stays, a later one is
//                skipped.
//   AveragePool: y = (0 + the in-range taps in the same order, in float) /
//                float(row_count[oy] * col_count[ox]), 0 when that is 0; the
//                counts (in-range taps, or with count_include_pad the taps
//                inside the padded extent) are given per output row and
//                column, as the window is separable. The same float
//                additions and one IEEE division: the reference's bits.
// Both are vectorised across channels (8 per ymm on AVX2, a masked tail), so
// every output is computed by the same operations in the same order as the
// reference, for any kernel, stride, padding, dilation and ceil_mode (the
// caller gives the output size and pads; ops/op_util.h's window_geometry).
// Work is split across the pool by output rows, so any pool size gives the
// same bits. run() allocates nothing.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/cpu_features.h"

namespace kvant {

class ThreadPool;

// One call computes output rows [oy0, oy1) of one image.
struct PoolNhwcRows {
  const float* x = nullptr;  // the image, [h_in, w_in, c]
  float* out = nullptr;      // the image, [h_out, w_out, c]
  int c = 0;
  int h_in = 0, w_in = 0, h_out = 0, w_out = 0;
  int kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1, pad_top = 0, pad_left = 0;
  const int32_t* row_count = nullptr;  // average: h_out divisor factors
  const int32_t* col_count = nullptr;  // average: w_out divisor factors
  int oy0 = 0, oy1 = 0;
};

struct PoolNhwcKernel {
  Isa isa;
  const char* name;  // "pool_nhwc_f32_<isa>"
  void (*max_rows)(const PoolNhwcRows& r);
  void (*avg_rows)(const PoolNhwcRows& r);
};

// Best first (kernel_table.h).
std::span<const PoolNhwcKernel> pool_nhwc_kernels();

// kernels/pool_nhwc.cc: portable.
void maxpool_nhwc_rows_generic(const PoolNhwcRows& r);
void avgpool_nhwc_rows_generic(const PoolNhwcRows& r);
// x86_avx2/pool_nhwc_avx2.cc: 8 channels per ymm, 4 ymm per pass.
void maxpool_nhwc_rows_avx2(const PoolNhwcRows& r);
void avgpool_nhwc_rows_avx2(const PoolNhwcRows& r);

struct PoolNhwcShape {
  int batch = 1, c = 1;
  int h_in = 1, w_in = 1, h_out = 1, w_out = 1;
  int kh = 1, kw = 1, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;  // bottom / right: count_include_pad's extent
};

class PoolNhwc {
 public:
  // average: AveragePool (with count_include_pad), else MaxPool. Throws
  // kInvalidArgument for sizes below 1 or negative pads.
  PoolNhwc(const PoolNhwcShape& shape, bool average, bool count_include_pad, Isa allowed);

  // x [batch, h_in, w_in, c] -> y [batch, h_out, w_out, c].
  void run(const float* x, float* y, ThreadPool* pool) const;

  const char* kernel_name() const { return kernel_->name; }
  const PoolNhwcShape& shape() const { return shape_; }

 private:
  PoolNhwcShape shape_;
  bool average_;
  const PoolNhwcKernel* kernel_;
  std::vector<int32_t> rows_, cols_;  // average: taps counted per output row / column
};

}  // namespace kvant
