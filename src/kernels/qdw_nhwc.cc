// The INT8 NHWC depthwise table, its packing and the reference entry; the
// math is in qdw_nhwc.h.
#include "kernels/qdw_nhwc.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernel_table.h"

namespace kvant {

namespace {

void qdw_nhwc_ref(const QDwArgs& a) {
  const ConvShape& s = *a.s;
  const int c_count = s.c_out, taps = s.kh * s.kw;
  for (int oy = a.row_begin; oy < a.row_end; ++oy) {
    for (int ox = 0; ox < s.w_out; ++ox) {
      uint8_t* out = a.y + (static_cast<int64_t>(oy) * s.w_out + ox) * c_count;
      for (int c = 0; c < c_count; ++c) {
        uint32_t acc = static_cast<uint32_t>(a.bias[c]);  // wraps like the SIMD accumulators
        for (int t = 0; t < taps; ++t) {
          const int iy = oy * s.stride_h - s.pad_top + (t / s.kw) * s.dil_h;
          const int ix = ox * s.stride_w - s.pad_left + (t % s.kw) * s.dil_w;
          int32_t xv = a.x_zp;  // outside: the zero point, cancelled by the bias
          if (iy >= 0 && iy < s.h_in && ix >= 0 && ix < s.w_in) {
            const uint8_t raw = a.x[(static_cast<int64_t>(iy) * s.w_in + ix) * c_count + c];
            xv = a.x_signed ? int32_t{static_cast<int8_t>(raw)} : int32_t{raw};
          }
          acc += static_cast<uint32_t>(xv * a.packed_w[static_cast<int64_t>(c) * taps + t]);
        }
        const float q =
            std::nearbyint(static_cast<float>(static_cast<int32_t>(acc)) * a.mult[c]) + static_cast<float>(a.y_zp);
        out[c] = static_cast<uint8_t>(
            static_cast<int32_t>(std::clamp(q, static_cast<float>(a.lo), static_cast<float>(a.hi))));
      }
    }
  }
}

constexpr QDwKernel kQDwKernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512Vnni, "qdw_nhwc_u8s8_avx512vnni_64c", 64, true, qdw_nhwc_u8s8_avx512vnni},
    {Isa::kAvx512Vnni, "qdw_nhwc_avx512vnni_32c", 32, false, qdw_nhwc_avx512vnni},
    {Isa::kAvx512, "qdw_nhwc_avx512_32c", 32, false, qdw_nhwc_avx512},
    {Isa::kAvx2, "qdw_nhwc_avx2_16c", 16, false, qdw_nhwc_avx2},
#endif
    {Isa::kRef, "qdw_nhwc_ref", 1, false, qdw_nhwc_ref},
};

}  // namespace

std::span<const QDwKernel> qdw_nhwc_kernels() { return kQDwKernels; }

const QDwKernel& pick_qdw_nhwc(Isa allowed, bool x_signed, bool weights_fit_s8, int channels) {
  return *pick_kernel(qdw_nhwc_kernels(), allowed,
                      [&](const QDwKernel& k) { return !k.u8s8 || (!x_signed && weights_fit_s8 && channels >= 48); });
}

std::vector<int32_t> qdw_nhwc_bias(const int32_t* bias, const int8_t* weights, const int32_t* w_zp, int32_t x_zp,
                                   int channels, int taps) {
  std::vector<int32_t> out(static_cast<size_t>(channels));
  for (int c = 0; c < channels; ++c) {
    int64_t sum = 0;
    for (int t = 0; t < taps; ++t) sum += weights[static_cast<int64_t>(c) * taps + t] - w_zp[c];
    out[static_cast<size_t>(c)] =
        static_cast<int32_t>(static_cast<uint32_t>(bias[c]) - static_cast<uint32_t>(x_zp * sum));
  }
  return out;
}

std::vector<int16_t> pack_qdw_nhwc(const QDwKernel& kernel, const int8_t* weights, const int32_t* w_zp, int channels,
                                   int taps) {
  auto w = [&](int c, int t) -> int16_t {
    if (c >= channels || t >= taps) return 0;
    return static_cast<int16_t>(weights[static_cast<int64_t>(c) * taps + t] - w_zp[c]);
  };
  const int b = kernel.channel_block;
  if (kernel.u8s8) {
    const int blocks = (channels + b - 1) / b, quads = (taps + 3) / 4;
    std::vector<int16_t> out((static_cast<size_t>(blocks) * quads * 256 + 1) / 2);
    auto* bytes = reinterpret_cast<int8_t*>(out.data());
    size_t at = 0;
    for (int j = 0; j < blocks; ++j) {
      for (int q = 0; q < quads; ++q) {
        for (int k = 0; k < 4; ++k) {
          for (int e = 0; e < 16; ++e) {
            const int c = j * b + 16 * (e / 4) + 4 * k + e % 4;
            for (int t = 0; t < 4; ++t) bytes[at++] = static_cast<int8_t>(w(c, 4 * q + t));
          }
        }
      }
    }
    return out;
  }
  if (b == 1) {
    std::vector<int16_t> out(static_cast<size_t>(channels) * taps);
    for (int c = 0; c < channels; ++c) {
      for (int t = 0; t < taps; ++t) out[static_cast<size_t>(c) * taps + t] = w(c, t);
    }
    return out;
  }
  const int blocks = (channels + b - 1) / b;
  const int pairs = (taps + 1) / 2;
  std::vector<int16_t> out(static_cast<size_t>(blocks) * pairs * 2 * b);
  size_t at = 0;
  for (int j = 0; j < blocks; ++j) {
    for (int p = 0; p < pairs; ++p) {
      for (int half = 0; half < 2; ++half) {
        for (int lane = 0; lane < b / 8; ++lane) {
          for (int i = 0; i < 4; ++i) {
            const int c = j * b + 8 * lane + 4 * half + i;
            out[at++] = w(c, 2 * p);
            out[at++] = w(c, 2 * p + 1);
          }
        }
      }
    }
  }
  return out;
}

}  // namespace kvant
