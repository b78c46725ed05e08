// The channels-last FP32 depthwise conv table's entries (sconv_nhwc.h has the
// driver). Declarations and plain structs only (the ISA files are compiled
// with their own -m flags, CMakeLists.txt).
//
// One call computes output rows [oy0, oy1) of one image:
//   out[(oy * w_out + ox) * c + ch] = act(bias[ch] + sum_{ky, kx} w[(ky * kw + kx) * c + ch] *
//                                         x[(iy * w_in + ix) * c + ch])
// with iy = oy * sh - pad_top + ky * dh, ix = ox * sw - pad_left + kx * dw;
// taps outside the input are skipped. The taps are summed in order ky, kx
// ascending, one FMA chain from zero per output (the portable entry: multiply
// then add), then the bias is added and the activation applied (max, then min
// for clip): SConv's depthwise order (sconv_kernels.h), so for finite weights
// (a skipped tap adds w * 0 there) the same bits.
#pragma once

#include <span>

#include "kernels/cpu_features.h"
#include "kernels/sgemm.h"

namespace kvant {

struct DwNhwcRows {
  const float* x = nullptr;  // the image, [h_in, w_in, c]
  float* out = nullptr;      // the image, [h_out, w_out, c]
  int c = 0;
  int h_in = 0, w_in = 0, h_out = 0, w_out = 0;
  int kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1, pad_top = 0, pad_left = 0;
  const float* w = nullptr;     // [kh * kw][c]
  const float* bias = nullptr;  // c floats (zeros when the conv has none)
  SgemmActivation act;
  int oy0 = 0, oy1 = 0;
};

struct DwNhwcKernel {
  Isa isa;
  const char* name;  // "dwconv_nhwc_f32_<isa>"
  void (*rows)(const DwNhwcRows& r);
};

// Best first (kernel_table.h).
std::span<const DwNhwcKernel> dwconv_nhwc_kernels();

// kernels/sconv_nhwc.cc: portable.
void dwconv_nhwc_rows_generic(const DwNhwcRows& r);
// x86_avx2/sconv_dw_nhwc_avx2.cc: 8 channels per ymm (masked tail), 4 pixels.
void dwconv_nhwc_rows_avx2(const DwNhwcRows& r);

}  // namespace kvant
