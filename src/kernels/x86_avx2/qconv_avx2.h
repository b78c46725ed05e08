// AVX2 pieces of the INT8 convolution (kernels/qconv.h), compiled with
// function-level target attributes so the rest of kvant runs without AVX2.
//
// GEMM scheme, Y[M, N] = W[M, K] x X[K, N] (M output channels, N output
// positions of one tile, K = c_in/group * kh * kw), both operands int16 with
// their zero points already subtracted (values in [-255, 255]):
//   packed W: blocks of kRowBlock rows; per k pair p, per row r: the int16
//             pair (w[r, 2p], w[r, 2p+1]), 4 bytes, broadcast by the kernel.
//   packed X: panels of kCols columns; per k pair p: 32 int16 =
//             (x[2p, n], x[2p+1, n]) for n = 0..15.
// vpmaddwd of a broadcast W pair with 8 X pairs adds two products of at most
// 255 * 255 into each int32 lane: exact, no correction terms.
#pragma once

#include <cstdint>

#include "kernels/qconv.h"

namespace kvant::qconv_avx2 {

constexpr int kRowBlock = 6;  // rows of W per micro-tile (the inline-assembly kernels assume 6 x 16)
constexpr int kCols = 16;     // columns of X per micro-tile

// Requantization of one output channel range; multiplier/bias point at the
// first row. lo/hi are the output bounds minus y_zp (clamping before the
// rounding equals clamping after it, the bounds being integers).
struct Requant {
  const float* multiplier;
  const int32_t* bias;
  int32_t y_zp;
  float lo, hi;
  bool y_signed;
};

// Portable: rows [K = cin_g*kh*kw][ld] of the input values each of the output
// positions [n0, n0 + ncols) reads; positions in the padding get `fill`
// (the zero point's byte). x: the group's first input channel of one image.
void im2col(const uint8_t* x, const ConvShape& s, int cin_g, int n0, int ncols, uint8_t fill, uint8_t* out, int ld);

// Packs X rows [K][ld] (ncols columns used) as int16 pairs minus x_zp into
// out: ceil(ncols/16) panels of ceil(K/2) pairs, tail columns and the odd
// K row zero.
void pack_x(const uint8_t* src, int64_t ld, int K, int ncols, bool x_signed, int32_t x_zp, int16_t* out);

// Rows [block_begin*kRowBlock, min(block_end*kRowBlock, M)) of Y = W x X, requantized and
// stored at y[row * ldy + n], n < ncols. w: the packed blocks of this group.
void gemm_requant(const int16_t* w, int block_begin, int block_end, int M, int pairs, const int16_t* xpack, int ncols,
                  const Requant& rq, uint8_t* y, int64_t ldy);

// 7-bit weight path (every |w - w_zp| <= 64): u8 x s8 with vpmaddubsw, whose
// pair sums (at most 2 * 255 * 64 = 32640) never saturate, then vpmaddwd by
// ones: 4 products per int32 lane. Activations stay raw bytes (int8 ones
// xor 0x80); the caller folds -x_zp' * sum_k w' into the bias.
//   packed W: blocks of kRowBlock rows; per k quad q, per row r: the 4 int8
//             w'[r, 4q..4q+3], broadcast as one int32 by the kernel.
//   packed X: panels of kCols columns; per k quad q: 64 bytes, column n at
//             bytes 4n..4n+3 = x[4q..4q+3, n].
// Packs X rows [K][ld] (ncols used) as raw bytes (xor 0x80 when x_signed);
// rows past K are zero (their weights are zero), tail columns are zero.
void pack_x_u8(const uint8_t* src, int64_t ld, int K, int ncols, bool x_signed, uint8_t* out);

// As gemm_requant, for packed int8 W quads and pack_x_u8 panels.
void gemm_requant_u8(const int8_t* w, int block_begin, int block_end, int M, int quads, const uint8_t* xpack, int ncols,
                     const Requant& rq, uint8_t* y, int64_t ldy);

// Depthwise: fills plane [rows][stride_w][width] with the padded input
// channel minus x_zp, phase q of a row holding its columns q, q+sw, q+2sw...
void depthwise_fill(const uint8_t* x, const ConvShape& s, bool x_signed, int32_t x_zp, int rows, int width,
                    int16_t* plane);

// One output channel: y[oy, ox] = requant(sum over tap pairs of
// plane[oy*sh*row_stride + offset + ox] * w). taps: npairs tap pairs, each an
// int16 weight pair (lo = first tap) in wpairs and two plane offsets.
void depthwise_channel(const int16_t* plane, int64_t row_stride, const int32_t* wpairs, const int32_t* offsets,
                       int npairs, const ConvShape& s, const Requant& rq, uint8_t* y);

// As depthwise_channel with a float epilogue (the dynamic convolution,
// runtime/steps_dynconv.cc): y[oy, ox] = clamp(float(acc) * mult [+ *bias],
// lo, hi), multiply then add. range (null: not wanted): {lo, hi, nan}
// widened by the values stored (nan set to 1 when one is NaN).
void depthwise_channel_f32(const int16_t* plane, int64_t row_stride, const int32_t* wpairs, const int32_t* offsets,
                           int npairs, const ConvShape& s, float mult, const float* bias, float lo, float hi, float* y,
                           float* range);

}  // namespace kvant::qconv_avx2
