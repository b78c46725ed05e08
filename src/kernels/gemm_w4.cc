// 4-bit-weight GEMM: the portable entries (the references), the tables and
// the drivers (gemm_w4.h has the math and the layout).
#include "kernels/gemm_w4.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm_w4_kernels.h"
#include "kernels/kernel_table.h"
#include "kvant/status.h"

namespace kvant {

namespace {

int code_at(const uint8_t* row, int k) { return (row[(k / 32) * 16 + k % 16] >> (k % 32 < 16 ? 0 : 4)) & 15; }

// Row n's code k in the interleaved layout (codes8, gemm_w4.h).
int code8_at(const W4View& w, int n, int k) {
  const size_t chunk = static_cast<size_t>(n / 8) * static_cast<size_t>(w.k_padded / 8) + static_cast<size_t>(k / 8);
  const uint8_t byte = w.codes8[chunk * 32 + static_cast<size_t>((n % 8) * 4 + k % 4)];
  return (byte >> (k % 8 < 4 ? 0 : 4)) & 15;
}

size_t param_index(const W4View& w, int row, int b) {
  return (static_cast<size_t>(row / 8) * static_cast<size_t>(w.k_blocks) + static_cast<size_t>(b)) * 8 +
         static_cast<size_t>(row % 8);
}

W4View view_of(const W4Matrix& w) {
  return W4View{w.codes.empty() ? nullptr : w.codes.data(),
                w.codes8.empty() ? nullptr : w.codes8.data(),
                w.scale.data(),
                w.zero.data(),
                w.n,
                w.k_blocks,
                w.k_padded,
                w.block};
}

}  // namespace

// Sums k in 16 lane-parallel partial sums (lane k % 16), then the lanes.
void gemm_w4a32_generic(const W4A32Args& a) {
  const W4View& w = a.w;
  for (int m = 0; m < a.m; ++m) {
    const float* x = a.x + m * a.ldx;
    for (int n = a.n0; n < a.n1; ++n) {
      const uint8_t* row = w.codes + static_cast<size_t>(n) * static_cast<size_t>(w.k_padded / 2);
      float lanes[16] = {};
      for (int k = 0; k < w.k_padded; ++k) {
        const int b = std::min(k / w.block, w.k_blocks - 1);  // past the last block: x is 0
        const size_t p = param_index(w, n, b);
        const float wv = static_cast<float>(code_at(row, k) - w.zero[p]) * w.scale[p];
        lanes[k % 16] += x[k] * wv;
      }
      float sum = 0.0f;
      for (float l : lanes) sum += l;
      a.y[m * a.ldy + n] = a.bias ? sum + a.bias[n] : sum;
    }
  }
}

void gemm_w4a8_generic(const W4A8Args& a) {
  const W4View& w = a.w;
  for (int m = 0; m < a.m; ++m) {
    const int8_t* xq = a.xq + static_cast<int64_t>(m) * w.k_padded;
    for (int n = a.n0; n < a.n1; ++n) {
      float acc = 0.0f;
      for (int b = 0; b < w.k_blocks; ++b) {
        const size_t p = param_index(w, n, b);
        int32_t dot = 0;
        for (int k = b * w.block; k < (b + 1) * w.block; ++k) dot += int32_t{xq[k]} * (code8_at(w, n, k) - w.zero[p]);
        const float fs = a.xs[m * w.k_blocks + b] * w.scale[p];
        acc = std::fma(static_cast<float>(dot), fs, acc);
      }
      a.y[m * a.ldy + n] = a.bias ? acc + a.bias[n] : acc;
    }
  }
}

namespace {

// Best first (kernel_table.h). gemm_w4a32_avx512 was written on a machine
// without AVX-512 and has not yet run its tests on one: it joins the table
// only in builds with -DKVANT_UNVERIFIED_KERNELS until it has (the W4A8
// VNNI entries share gemm_w4a8_body.inc with the tested AVX2 entry and
// differ in the one exact dot-product instruction).
constexpr GemmW4A32Kernel kGemmW4A32Kernels[] = {
#if defined(__x86_64__)
#if defined(KVANT_UNVERIFIED_KERNELS)
    {Isa::kAvx512, "gemm_w4a32_avx512", gemm_w4a32_avx512},
#endif
    {Isa::kAvx2, "gemm_w4a32_avx2", gemm_w4a32_avx2},
#endif
    {Isa::kRef, "gemm_w4a32_generic", gemm_w4a32_generic},
};

constexpr GemmW4A8Kernel kGemmW4A8Kernels[] = {
#if defined(__x86_64__)
    {Isa::kAvx512Vnni, "gemm_w4a8_avx512vnni", 32, gemm_w4a8_avx512vnni},
    {Isa::kAvxVnni, "gemm_w4a8_avxvnni", 32, gemm_w4a8_avxvnni},
    {Isa::kAvx2, "gemm_w4a8_avx2", 32, gemm_w4a8_avx2},
#endif
    {Isa::kRef, "gemm_w4a8_generic", 16, gemm_w4a8_generic},
};

}  // namespace

std::span<const GemmW4A32Kernel> gemm_w4a32_kernels() { return kGemmW4A32Kernels; }
std::span<const GemmW4A8Kernel> gemm_w4a8_kernels() { return kGemmW4A8Kernels; }

const GemmW4A32Kernel& gemm_w4a32_pick(Isa allowed) {
  return *pick_kernel(gemm_w4a32_kernels(), allowed, [](const GemmW4A32Kernel&) { return true; });
}
const GemmW4A8Kernel& gemm_w4a8_pick(Isa allowed, int block) {
  return *pick_kernel(gemm_w4a8_kernels(), allowed, [&](const GemmW4A8Kernel& e) { return block >= e.min_block; });
}
const char* gemm_w4_name(const GemmW4A32Kernel& kernel) { return kernel.name; }
const char* gemm_w4_name(const GemmW4A8Kernel& kernel) { return kernel.name; }

void w4_interleave(W4Matrix& w, bool keep_rows) {
  if (w.codes.empty()) {
    if (!w.codes8.empty()) return;  // already interleaved
    throw Error(ErrorCode::kInvalidArgument, "w4_interleave: the matrix has no codes");
  }
  const int groups = (w.n + 7) / 8, chunks = w.k_padded / 8;
  w.codes8.assign(static_cast<size_t>(groups) * static_cast<size_t>(chunks) * 32, 0);
  for (int n = 0; n < groups * 8; ++n) {
    const uint8_t* row = n < w.n ? w.codes.data() + static_cast<size_t>(n) * w.row_bytes() : nullptr;
    for (int k = 0; k < w.k_padded; ++k) {
      const int b = std::min(k / w.block, w.k_blocks - 1);
      const int c = row != nullptr ? code_at(row, k) : w.zero[w.param_index(n, b)];
      const size_t chunk = static_cast<size_t>(n / 8) * static_cast<size_t>(chunks) + static_cast<size_t>(k / 8);
      uint8_t& byte = w.codes8[chunk * 32 + static_cast<size_t>((n % 8) * 4 + k % 4)];
      byte = static_cast<uint8_t>(byte | (c << (k % 8 < 4 ? 0 : 4)));
    }
  }
  if (!keep_rows) std::vector<uint8_t>().swap(w.codes);
}

const float* w4_pad_x(const W4Matrix& w, const float* x, int64_t ldx, int m, float* out, int64_t& ld) {
  if (w.k == w.k_padded) {
    ld = ldx;
    return x;
  }
  for (int r = 0; r < m; ++r) {
    float* dst = out + static_cast<int64_t>(r) * w.k_padded;
    std::memcpy(dst, x + r * ldx, static_cast<size_t>(w.k) * sizeof(float));
    std::fill(dst + w.k, dst + w.k_padded, 0.0f);
  }
  ld = w.k_padded;
  return out;
}

void w4_quantize_x(const W4Matrix& w, const float* x, int64_t ldx, int m, int8_t* xq, float* xs, int32_t* xsum) {
  for (int r = 0; r < m; ++r) {
    const float* xr = x + r * ldx;
    int8_t* q = xq + static_cast<int64_t>(r) * w.k_padded;
    std::fill(q, q + w.k_padded, int8_t{0});
    for (int b = 0; b < w.k_blocks; ++b) {
      const int k0 = b * w.block, k1 = std::min(w.k, k0 + w.block);
      float amax = 0.0f;
      for (int k = k0; k < k1; ++k) amax = std::max(amax, std::fabs(xr[k]));
      const float scale = amax / 127.0f;
      const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
      int32_t sum = 0;
      for (int k = k0; k < k1; ++k) {
        const float v = std::nearbyint(xr[k] * inv);
        const int32_t qi = static_cast<int32_t>(std::clamp(v, -127.0f, 127.0f));
        q[k] = static_cast<int8_t>(qi);
        sum += qi;
      }
      xs[r * w.k_blocks + b] = scale;
      xsum[r * w.k_blocks + b] = sum;
    }
  }
}

void gemm_w4a32(const GemmW4A32Kernel& kernel, const W4Matrix& w, const float* x, int64_t ldx, int m, float* y,
                int64_t ldy, const float* bias, int n0, int n1) {
  if (w.codes.empty())
    throw Error(ErrorCode::kInvalidArgument,
                "gemm_w4a32: the weight has no row-layout codes (w4_interleave dropped them)");
  W4A32Args a;
  a.w = view_of(w);
  a.x = x;
  a.ldx = ldx;
  a.m = m;
  a.y = y;
  a.ldy = ldy;
  a.bias = bias;
  a.n0 = n0;
  a.n1 = n1;
  kernel.run(a);
}

void gemm_w4a8(const GemmW4A8Kernel& kernel, const W4Matrix& w, const int8_t* xq, const float* xs, const int32_t* xsum,
               int m, float* y, int64_t ldy, const float* bias, int n0, int n1) {
  if (w.codes8.empty())
    throw Error(ErrorCode::kInvalidArgument, "gemm_w4a8: the weight is not interleaved (call w4_interleave first)");
  W4A8Args a;
  a.w = view_of(w);
  a.xq = xq;
  a.xs = xs;
  a.xsum = xsum;
  a.m = m;
  a.y = y;
  a.ldy = ldy;
  a.bias = bias;
  a.n0 = n0;
  a.n1 = n1;
  kernel.run(a);
}

}  // namespace kvant
