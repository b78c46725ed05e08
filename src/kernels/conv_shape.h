// One 2-D NCHW convolution layer's geometry, shared by the FP32 (sconv.h) and
// INT8 (qconv.h) conv kernels. Output pixel (oy, ox) reads input rows
// oy * stride_h - pad_top + ky * dil_h and columns ox * stride_w - pad_left +
// kx * dil_w; positions outside the input read zero, so bottom/right padding
// is implied by h_out / w_out.
#pragma once

namespace kvant {

struct ConvShape {  // one conv layer, 2-D, NCHW
  int batch = 1, c_in = 0, h_in = 0, w_in = 0;
  int c_out = 0, h_out = 0, w_out = 0;
  int kh = 1, kw = 1, stride_h = 1, stride_w = 1, dil_h = 1, dil_w = 1;
  int pad_top = 0, pad_left = 0;  // bottom/right padding is implied by h_out/w_out
  int group = 1;
};

// Throws kInvalidArgument "<who>: ..." for a geometry no kernel takes: a
// size, kernel, stride or dilation below 1, negative padding, or a group
// that does not divide both channel counts (defined in sconv.cc).
void validate_conv_shape(const ConvShape& s, const char* who);

}  // namespace kvant
