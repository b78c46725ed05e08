// The FP32 conv kernel tables' entries (sconv.h has the math and the
// driver): the depthwise plane kernels, and the im2col tile packers that feed
// the GEMM micro-kernels (sgemm_kernels.h). Included by kernels/sconv.cc and
// the per-ISA files, so declarations and plain structs only (no inline code:
// the ISA files are compiled with their own -m flags, CMakeLists.txt).
//
// Depthwise, one plane: out[oy * w_out + ox] = act(bias + sum_{ky, kx} w[ky * kw + kx] *
//   plane[(oy * sh + ky * dh) * wp + ox * sw + kx * dw])
// where `plane` is the zero-padded input (padding already applied), wide
// enough that every vector of the entry's `pixels` outputs may read whole:
// wp >= round_up(w_out, pixels) * sw + (kw - 1) * dw + 1. Taps are summed in
// order ky, kx ascending (one FMA chain from zero per output), then the bias
// is added and the activation applied (max, then min for clip).
//
// An entry with `in_place` reads the unpadded input plane instead: `plane`
// is x's [h_in, w_in] channel and (py, px) of the padded plane above is
// x[py - pad_top, px - pad_left], zero outside; it reads no float outside the
// plane's rows other than from [lo_bound, hi_bound) (the whole input
// tensor), and `zero_row` (w_in zero floats, with zero margins of
// dw_zero_margin() floats before and after) may stand in for a row above or
// below it. Same taps in the same order, so the same results.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/cpu_features.h"
#include "kernels/sgemm.h"

namespace kvant {

struct DwPlane {
  const float* plane = nullptr;
  int wp = 0;
  int h_out = 0, w_out = 0;
  int kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  const float* w = nullptr;
  float bias = 0.0f;
  SgemmActivation act;
  float* out = nullptr;
  // in_place entries only:
  int h_in = 0, w_in = 0, pad_top = 0, pad_left = 0;
  const float* zero_row = nullptr;
  const float* lo_bound = nullptr;
  const float* hi_bound = nullptr;
};

// The zero row's margin for an in_place entry: every column a vector load
// of `pixels` outputs may read left of 0 (pad_left) or right of w_in.
int dw_zero_margin(int w_in, int w_out, int pad_left, int kw, int dil_w, int stride_w, int pixels);

struct DwConvKernel {
  Isa isa;
  const char* name;                          // "dwconv_f32_<isa>"
  bool (*accepts)(int stride_w, int w_out);  // the shapes it takes (and pays on)
  int pixels;                                // output pixels per vector (the plane padding above)
  void (*plane)(const DwPlane& p);
  bool in_place = false;  // reads the unpadded plane (above)
};

// The table, best first (kernel_table.h): SConv picks the first entry that
// the allowed level, the CPU and the entry's predicate accept.
std::span<const DwConvKernel> dwconv_kernels();

// kernels/sconv.cc: portable, any stride.
void dwconv_plane_generic(const DwPlane& p);
// x86_avx2/sconv_dw_avx2.cc: 8 pixels per ymm, stride_w 1 or 2; padded, and
// in place.
void dwconv_plane_avx2(const DwPlane& p);
void dwconv_plane_inplace_avx2(const DwPlane& p);
// x86_avx512/sconv_dw_avx512.cc: 16 pixels per zmm, stride_w 1 or 2.
void dwconv_plane_avx512(const DwPlane& p);

// One im2col tile: rows [k0, k0 + kl) of the im2col matrix of one image's
// group, for output pixels [n0, n0 + nc), as kl x 16 panels (panel p at
// dst + p * 16 * kl, element (k, c) at k * 16 + c % 16), zero past nc up to
// the next multiple of 16. Row k is the tap (channel ch, ky, kx); column c,
// in output-row piece g (c in [seg_c0[g], seg_c0[g + 1])), is the output pixel
// whose ky = kx = 0 tap reads input row seg_iy[g] and column
// seg_ix[g] + (c - seg_c0[g]) * stride_w. Element (k, c) is
//   x[row_off[k] + seg_iy[g] * w_in + seg_ix[g] + (c - seg_c0[g]) * stride_w]
// where row_off[k] = ch * h_in * w_in + row_dy[k] * w_in + row_dx[k], or zero
// when input row seg_iy[g] + row_dy[k] or column ... + row_dx[k] falls outside
// the input (the padding).
struct Im2colTile {
  const float* x = nullptr;  // the image's group, channel 0
  int h_in = 0, w_in = 0, stride_w = 1;
  int kl = 0;
  const int* row_dy = nullptr;  // ky * dil_h per row
  const int* row_dx = nullptr;  // kx * dil_w per row
  const int64_t* row_off = nullptr;
  int segs = 0;
  const int* seg_c0 = nullptr;  // segs + 1 values, the last nc
  const int* seg_iy = nullptr;
  const int* seg_ix = nullptr;
  int nc = 0;
  float* dst = nullptr;
};

struct Im2colKernel {
  Isa isa;
  const char* name;  // "im2col_f32_<isa>"
  int max_stride_w;  // the largest stride_w it takes (0: any)
  void (*pack)(const Im2colTile& tile);
};

std::span<const Im2colKernel> im2col_kernels();

// kernels/sconv.cc: portable, any stride.
void im2col_pack_generic(const Im2colTile& tile);
// x86_avx2/sconv_im2col_avx2.cc: the generic packer compiled with AVX2.
void im2col_pack_avx2(const Im2colTile& tile);
// x86_avx512/sconv_im2col_avx512.cc: masked loads and stores, stride_w 1 or 2.
void im2col_pack_avx512(const Im2colTile& tile);

}  // namespace kvant
