// Depthwise conv over one channel plane, AVX2+FMA (see kernels/sconv.h).
#pragma once

#include "kernels/sgemm.h"

namespace kvant {

// One channel: out[oy * w_out + ox] = act(bias + sum_{ky, kx} w[ky * kw + kx] *
//   plane[(oy * sh + ky * dh) * wp + ox * sw + kx * dw])
// where `plane` is the zero-padded input (padding already applied), wide
// enough that every 8-pixel vector may read whole: wp >= round_up(w_out, 8) *
// sw + (kw - 1) * dw + 1. Taps are summed in order ky, kx ascending, then the
// bias is added. Stride sw must be 1 or 2 (sh is free).
struct DwPlane {
  const float* plane = nullptr;
  int wp = 0;
  int h_out = 0, w_out = 0;
  int kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  const float* w = nullptr;
  float bias = 0.0f;
  SgemmActivation act;
  float* out = nullptr;
};

void sconv_dw_plane_avx2(const DwPlane& p);

}  // namespace kvant
