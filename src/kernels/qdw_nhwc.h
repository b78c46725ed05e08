// INT8 depthwise convolution in NHWC (qconv.h has the math: group == c_in ==
// c_out), vectorised across channels:
//
//   acc[p, c] = bias[c] + sum_t (x[tap t of pixel p, c] - x_zp) * (w[c, t] - w_zp[c])
//   y[p, c]   = clamp(nearbyint(float(acc) * mult[c]) + y_zp, lo, hi)
//
// The kernels multiply raw input values and take the zero point from the
// bias: QDwArgs::bias is bias[c] - x_zp * sum_t (w[c, t] - w_zp[c]) (see
// qdw_nhwc_bias). A tap outside the input reads a row of x_zp values, whose
// products that correction cancels, so the inner loop has no branch. Taps go
// in pairs: each product pair is one vpmaddwd (or vpdpwssd) on int16 values
// (x in [-128, 255], w - w_zp in [-255, 255]: exact in int32). Each table
// entry packs the (w - w_zp) pairs in the order its unpacks produce.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/conv_shape.h"
#include "kernels/cpu_features.h"

namespace kvant {

constexpr int kQDwMaxTaps = 64;  // larger kernels take the GEMM path

struct QDwArgs {
  const uint8_t* x;    // one image, NHWC (uint8, or int8 when x_signed)
  const ConvShape* s;  // c_in == c_out == group
  bool x_signed, y_signed;
  int32_t x_zp;             // in x's own type
  const int16_t* packed_w;  // the entry's layout
  const int32_t* bias;      // c values
  const float* mult;        // c values
  int32_t y_zp, lo, hi;     // lo/hi in the output type
  const uint8_t* zp_row;    // c bytes (or more), each x_zp's own byte
  uint8_t* y;               // one image, NHWC
  int row_begin, row_end;   // output rows to compute
};

struct QDwKernel {
  Isa isa;
  const char* name;
  int channel_block;  // channels per vector step (packing granularity)
  // Only for uint8 inputs and weights with every w - w_zp in [-128, 127]:
  // packed as int8 quads of taps (vpdpbusd), see pack_qdw_nhwc.
  bool u8s8;
  void (*run)(const QDwArgs& args);
};

std::span<const QDwKernel> qdw_nhwc_kernels();
// The first entry `allowed` permits that takes these inputs and weights
// (u8s8 entries also need 48 channels or more: below, half their 64-channel
// step is padding and the 32-channel entries are faster).
const QDwKernel& pick_qdw_nhwc(Isa allowed, bool x_signed, bool weights_fit_s8, int channels);

// (w - w_zp) of weights [c, kh * kw] as the entry's packed pairs, channels
// padded with zero weights to whole blocks: per block of B = channel_block
// channels, per tap pair (t0, t1) (the last one's t1 zero for an odd count),
// B int16 "lo" then B "hi", as vpunpck{l,h}wd interleave them per 128-bit lane
// L: lo = (w[8L+i, t0], w[8L+i, t1]) for i = 0..3, hi the same for i = 4..7.
// The reference entry (B = 1) keeps [c][tap]. u8s8 entries (B = 64) hold
// bytes in the int16 storage: per block, per quad of taps q (missing taps
// zero), four vectors k = 0..3 of 16 int32 lanes, lane e the 4 bytes
// w'[c, 4q..4q+3] of channel c = 16 * (e / 4) + 4 * k + e % 4 (the order
// vpunpck{l,h}bw then vpunpck{l,h}wd give the input bytes).
std::vector<int16_t> pack_qdw_nhwc(const QDwKernel& kernel, const int8_t* weights, const int32_t* w_zp, int channels,
                                   int taps);

// bias[c] - x_zp * sum_t (w[c, t] - w_zp[c]), wrapping like the accumulators.
std::vector<int32_t> qdw_nhwc_bias(const int32_t* bias, const int8_t* weights, const int32_t* w_zp, int32_t x_zp,
                                   int channels, int taps);

void qdw_nhwc_avx2(const QDwArgs& args);
void qdw_nhwc_avx512(const QDwArgs& args);
void qdw_nhwc_avx512vnni(const QDwArgs& args);
void qdw_nhwc_u8s8_avx512vnni(const QDwArgs& args);

}  // namespace kvant
